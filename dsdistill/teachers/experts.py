"""Expert trajectories for trajectory matching (MTT): models trained on the real data, each one's parameters
stored after every epoch, the random start included.

Two training recipes, each a preset of ExpertConfig:
- "mtt" (default): MTT's buffer.py. Plain SGD lr 0.01, no momentum, no weight decay, batch 256, per-sample
  DSA, cross-entropy. Plain SGD on purpose: the student's inner loop is plain SGD too.
- "ast": the smooth/high-quality experts of "Efficient Dataset Distillation through Alignment with Smooth and
  High-Quality Expert Trajectories" (Shen, Yang, Lam; arXiv 2310.10541), as its official code
  (shenjiyuan123/AST-Alignment-with-Smooth-Expert, buffer.py and utils.py) does it: SGD momentum 0.9, weight
  decay 1e-3, lr 0.003 decayed x0.6 after epoch E//2+1 with a fresh optimiser (its code re-creates the SGD, so
  the momentum restarts), the "clipping loss" (the cross-entropy of epochs 0..9
  scaled by 0.5, 0.55, ..., 0.95: a smoother start) and a gradient penalty of weight 2 on the un-augmented
  batch, (||d sum(logits)/dx||_2 - 1)^2 with the norm over channels per pixel, as the code computes it.
See reference/trajectory.md sections 1 and 3.1.

Layout of an expert folder:
    experts.json     manifest: format, version, identity (dataset, zca, normalization, arch, model_options,
                     epochs, seed, train_config, param_count) and `experts` = the FINISHED experts only
    expert-000.pt    {"trajectory": float32 [epochs + 1, P]}: row e is the flat parameter vector after e epochs
                     (row 0 the random init), in model.named_parameters() order
One file per expert (reference/trajectory.md 6: random access and memory-mapped loads, unlike MTT's 10-expert
files). Building is resumable per expert (dsdistill.teachers.folder): every file is written atomically and the manifest
is rewritten after each expert, so a stopped run keeps every finished expert.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._text import count
from .._config import parse_overrides
from ..augment import DSA, DSAConfig, dsa_strategy_for
from ..data import RealData
from ..errors import CheckpointError, ConfigError
from ..train.loop import Augmentation, Data, MicroBatch, train_model
from .folder import (FolderBuild, FolderKind, ModelRequest, OnUnit, load_unit, new_model, open_folder,
                     read_manifest as _read_manifest, register_kind, resolved_options)
from ..train.recipe import MultiStep, Recipe

FORMAT = "dsdistill-experts"
VERSION = 1
MANIFEST = "experts.json"
# ours, CPU-sized (MTT official: 100 experts x 50 epochs of ConvNet-3 width 128): on 2 CPU cores one Fashion-MNIST
# epoch of the width-128 ConvNet takes 3-4 minutes, so 5 experts x 20 epochs would take 5-7 hours. Width 32 cuts
# the two 128->128 convolutions, which hold ~97% of the multiply-adds, 16x: measured on one core, a 256-image batch
# (forward and backward) takes 0.20 s against 1.08 s at width 128 (DSA: 1 ms), about 47 s per epoch, so 5 x 20
# epochs take about an hour (50-80 minutes by how busy the cores are).
DEFAULT_EXPERTS = 5
DEFAULT_EPOCHS = 20
DEFAULT_WIDTH = 32
OFFICIAL_EXPERTS = 100  # MTT buffer.py --num_experts
OFFICIAL_EPOCHS = 50  # MTT buffer.py --train_epochs


@dataclass(frozen=True)
class ExpertConfig:
    """How an expert is trained. Defaults: MTT buffer.py (the "mtt" recipe)."""

    lr: float = 0.01  # MTT --lr_teacher (AST: 0.003)
    momentum: float = 0.0  # MTT --mom (AST SGDMOM: 0.9)
    weight_decay: float = 0.0  # MTT --l2 (AST: 1e-3)
    batch_size: int = 256  # MTT --batch_train (AST: 256)
    decay_factor: float = 1.0  # lr x this after epoch index E//2+1; MTT: 0.1 with --decay (off in the paper
    # runs, so 1.0 here); AST: 0.6, always
    loss_scales: tuple[float, ...] = ()  # AST --loss_decay ("clipping loss"): cross-entropy of epoch e scaled by
    # loss_scales[e] while e < len(loss_scales); AST: 0.5, 0.55, ..., 0.95 for epochs 0..9
    gp_weight: float = 0.0  # AST --gp: weight 2 of the gradient penalty (0 = off, MTT)
    dsa: bool = True  # MTT --dsa True: per-sample DSA on every batch, DSA's strategy (no flip for digits)
    images_per_epoch: int = 0  # ours: train each epoch on a fresh random subset of this many images (0 = all);
    # a further CPU knob, off by default

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError(f"expert training needs lr > 0, batch_size >= 1, momentum >= 0 and weight_decay >= 0; "
                              f"got {self}")
        if self.decay_factor <= 0 or self.gp_weight < 0 or self.images_per_epoch < 0 or any(
                s <= 0 for s in self.loss_scales):
            raise ConfigError("decay_factor and loss_scales must be positive, gp_weight and images_per_epoch >= 0")


RECIPES: dict[str, ExpertConfig] = {
    "mtt": ExpertConfig(),
    "ast": ExpertConfig(lr=0.003, momentum=0.9, weight_decay=1e-3, decay_factor=0.6,
                        loss_scales=tuple(round(0.5 + 0.05 * e, 2) for e in range(10)), gp_weight=2.0),
}


def recipe(name: str, **overrides: Any) -> ExpertConfig:
    if name not in RECIPES:
        raise ConfigError(f"unknown expert recipe {name!r}; valid: {', '.join(RECIPES)}")
    return dataclasses.replace(RECIPES[name], **overrides)


def decay_epoch(epochs: int) -> int:
    """MTT/AST: the lr changes once epoch index train_epochs // 2 + 1 is done."""
    return epochs // 2 + 1


def gradient_penalty(model: nn.Module, x: Tensor) -> Tensor:
    """AST's penalty: u = d sum(logits) / dx on the un-augmented batch, mean over (b, h, w) of (||u||_2 - 1)^2
    with the norm over the channel axis (per pixel), as the official utils.epoch_gp computes it."""
    x = x.detach().clone().requires_grad_(True)
    u = torch.autograd.grad(model(x).sum(), x, create_graph=True)[0]
    return ((u.norm(2, dim=1) - 1) ** 2).mean()


def flat_parameters(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to("cpu", torch.float32, copy=True)


def expert_recipe(config: ExpertConfig, epochs: int) -> Recipe:
    """SGD whose lr is multiplied by decay_factor once epoch index decay_epoch(epochs) is done. The optimiser starts
    afresh there, momentum buffer cleared: AST's buffer.py (and MTT's, under --decay) re-creates its SGD at the
    decay. MTT's experts have no momentum, so for them this changes nothing."""
    return Recipe(lr=config.lr, batch_size=config.batch_size, momentum=config.momentum,
                  weight_decay=config.weight_decay,
                  schedule=MultiStep((decay_epoch(epochs) + 1,), config.decay_factor, reset=True))


def _expert_loss(config: ExpertConfig) -> Callable[[nn.Module, MicroBatch], Tensor]:
    """Cross-entropy on the augmented batch, scaled per epoch by loss_scales, plus AST's gradient penalty on the
    un-augmented batch."""

    def loss(model: nn.Module, batch: MicroBatch) -> Tensor:
        scale = config.loss_scales[batch.epoch] if batch.epoch < len(config.loss_scales) else 1.0
        value = scale * F.cross_entropy(model(batch.x), batch.y)
        if config.gp_weight > 0:
            value = value + config.gp_weight * gradient_penalty(model, batch.raw)
        return value

    return loss


def train_expert(model: nn.Module, real: RealData, config: ExpertConfig, seed: int, epochs: int,
                 desc: str = "expert") -> Tensor:
    """Train `model` in place; returns its trajectory [epochs + 1, P] (row 0 = the parameters before training)."""
    augment = Augmentation(DSA(DSAConfig(strategy=dsa_strategy_for(real.digits))).per_sample, "expert-aug") \
        if config.dsa else None
    data = Data(real.train.images, real.train.labels, "expert-order", per_epoch=config.images_per_epoch)
    rows = [flat_parameters(model)]
    for _ in train_model(model, data, expert_recipe(config, epochs), seed, epochs, _expert_loss(config),
                         augment=augment, desc=desc):
        rows.append(flat_parameters(model))
    return torch.stack(rows)


# ---------------------------------------------------------------- folder: identity, manifest, loading
def expert_file(index: int) -> str:
    return f"expert-{index:03d}.pt"


def param_count(arch: str, real: RealData, options: Mapping[str, Any]) -> int:
    return sum(p.numel() for p in new_model(arch, real, options).parameters())


def _identity(real: RealData, arch: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """What an expert folder must match to be used for `real` with this student network (as JSON reads back)."""
    ident = {"dataset": real.name, "zca": real.zca is not None,
             "normalization": {"mean": list(real.mean), "std": list(real.std)},
             "arch": arch, "model_options": dict(options)}
    return json.loads(json.dumps(ident))


def experts_command(real: RealData, arch: str, options: Mapping[str, Any], out: str = "DIR", **extra: Any) -> str:
    parts = ["dsdistill experts", f"--dataset {real.name}"]
    parts += [f"--{k} {v}" for k, v in extra.items()]
    if arch != "convnet":
        parts.append(f"--arch {arch}")
    parts += [f"--set {k}={v}" for k, v in options.items() if k in ("width", "depth", "norm")]
    if real.zca is not None:
        parts.append("--zca")
    return " ".join(parts + [f"--out {out}"])


KIND = register_kind(FolderKind(
    noun="expert", article="an expert folder", unit="expert", holds="experts with", manifest=MANIFEST, format=FORMAT,
    version=VERSION, entries="experts",
    required=("dataset", "zca", "normalization", "arch", "model_options", "epochs", "seed", "train_config",
              "param_count")))


def read_manifest(path: str | Path, hint: str = "") -> dict[str, Any]:
    """The manifest of the expert folder `path`; CheckpointError when missing or damaged."""
    return _read_manifest(KIND, path, hint)


def _load_trajectory(path: Path, epochs: int, params: int, rerun: str) -> Tensor:
    """One expert's [epochs + 1, P] trajectory, memory-mapped (only the rows used are read from disk)."""
    blob = load_unit(KIND, path, rerun, mmap=True)
    trajectory = blob.get("trajectory") if isinstance(blob, dict) else None
    again = f"; delete it and rerun `{rerun}` to retrain it" if rerun else ""
    if not isinstance(trajectory, Tensor):
        raise CheckpointError(f"expert file {path} holds no trajectory{again}")
    if tuple(trajectory.shape) != (epochs + 1, params) or trajectory.dtype != torch.float32:
        raise CheckpointError(f"expert file {path} holds a {trajectory.dtype} {tuple(trajectory.shape)} trajectory; "
                              f"the manifest says ({epochs + 1}, {params}) float32{again}")
    return trajectory


@dataclass
class Experts:
    """A loaded expert folder: trajectories[i][e] is expert i's flat parameters after e epochs."""
    path: Path
    manifest: dict[str, Any]
    trajectories: list[Tensor]

    @property
    def epochs(self) -> int:
        return int(self.manifest["epochs"])

    @property
    def model_options(self) -> dict[str, Any]:
        return dict(self.manifest["model_options"])

    def __len__(self) -> int:
        return len(self.trajectories)

    def check_window(self, max_start_epoch: int, expert_epochs: int) -> None:
        """Start epochs 0..max_start_epoch-1 plus expert_epochs must stay within the stored epochs."""
        if expert_epochs < 1 or max_start_epoch < 1:
            raise ConfigError(f"need expert_epochs >= 1 and max_start_epoch >= 1, got {expert_epochs} and "
                              f"{max_start_epoch}")
        if max_start_epoch - 1 + expert_epochs > self.epochs:
            raise ConfigError(
                f"start epoch {max_start_epoch - 1} + expert_epochs {expert_epochs} is beyond the {self.epochs} "
                f"epochs stored in {self.path}; with expert_epochs={expert_epochs} use max_start_epoch in "
                f"1..{self.epochs - expert_epochs + 1}" if expert_epochs <= self.epochs else
                f"expert_epochs {expert_epochs} is more than the {self.epochs} epochs stored in {self.path}; "
                f"use expert_epochs in 1..{self.epochs}")


def load_experts(path: str | Path, real: RealData, arch: str = "convnet",
                 model_options: Mapping[str, Any] | None = None) -> Experts:
    """Read and check the expert folder `path` against the data (dataset, ZCA, normalization) and the student
    network (arch, options): anything that differs is named in the error."""
    folder = Path(path)
    manifest = read_manifest(folder, experts_command(real, arch, resolved_options(arch, model_options)))
    if manifest["arch"] != arch:
        raise CheckpointError(f"the experts in {folder} are {manifest['arch']} networks, not {arch}; train "
                              f"matching ones with `{experts_command(real, arch, resolved_options(arch, model_options))}`")
    options = resolved_options(arch, {**manifest["model_options"], **{k: v for k, v in (model_options or {}).items()
                                                                      if v is not None}})
    manifest, entries, rerun = open_folder(
        KIND, folder, _identity(real, arch, options), hint=experts_command(real, arch, options),
        other=experts_command(real, arch, options),
        rerun=lambda m: experts_command(real, arch, options, str(folder), epochs=m["epochs"]))
    params = param_count(arch, real, options)
    if manifest["param_count"] != params:
        raise CheckpointError(f"the experts in {folder} have {manifest['param_count']} parameters; a {arch} with "
                              f"{options} for {real.name} has {params}")
    trajectories = [_load_trajectory(folder / e["file"], manifest["epochs"], params, rerun) for e in entries]
    return Experts(folder, manifest, trajectories)


def build_experts(real: RealData, out: str | Path, *, experts: int = DEFAULT_EXPERTS, epochs: int = DEFAULT_EPOCHS,
                  arch: str = "convnet", model_options: Mapping[str, Any] | None = None, seed: int = 0,
                  config: ExpertConfig = ExpertConfig(), command: str = "",
                  on_expert: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train `experts` experts for `epochs` epochs each into the folder `out` (resumable per expert).

    Expert i is initialised and trained from seeds derived from (seed, "expert", i): it does not depend on how
    many were asked for or on interruptions. `on_expert(entry)` runs after each newly trained expert.
    """
    if experts < 1 or epochs < 1:
        raise ConfigError(f"need --experts >= 1 and --epochs >= 1, got {experts} and {epochs}")
    options = resolved_options(arch, model_options)
    params = param_count(arch, real, options)
    identity = {**_identity(real, arch, options), "epochs": epochs, "seed": seed,
                "train_config": dataclasses.asdict(config), "param_count": params}
    build = FolderBuild(KIND, out, identity, command=command, on_unit=on_expert,
                        keep=lambda path, _: _load_trajectory(path, epochs, params, "") is not None)  # still loads

    def train(model: nn.Module, expert_seed: int, desc: str) -> dict[str, Tensor]:
        return {"trajectory": train_expert(model, real, config, expert_seed, epochs, desc=desc)}

    return build.train_units(experts, real, arch, options, seed=seed, purpose="expert", train=train, file=expert_file)


# ---------------------------------------------------------------- the build as one request (dsdistill.teachers.builders)

@dataclass(frozen=True, kw_only=True)
class ExpertsRequest(ModelRequest):
    """`dsdistill experts`: MTT's expert trajectories. A ConvNet is DEFAULT_WIDTH wide unless --set width says."""

    kind: ClassVar[FolderKind] = KIND
    experts: int = DEFAULT_EXPERTS
    epochs: int = DEFAULT_EPOCHS
    recipe: str = "mtt"
    train: tuple[str, ...] = ()  # ExpertConfig overrides of the recipe, KEY=VALUE

    def __post_init__(self) -> None:
        super().__post_init__()
        self.config()

    def model_options(self) -> dict[str, Any]:
        options = super().model_options()
        if self.arch == "convnet":
            options.setdefault("width", DEFAULT_WIDTH)  # ours: CPU-sized, see DEFAULT_WIDTH
        return options

    def config(self) -> ExpertConfig:
        return recipe(self.recipe, **parse_overrides(ExpertConfig, self.train))

    def build(self, real: RealData, command: str = "", on_unit: OnUnit | None = None) -> Path:
        return build_experts(real, self.out, experts=self.experts, epochs=self.epochs, arch=self.arch,
                             model_options=self.model_options(), seed=self.seed, config=self.config(),
                             command=command, on_expert=on_unit)

    def describe(self) -> str:
        return (f"{self.arch} {self.model_options()}, {count(self.epochs, 'epoch')}, recipe {self.recipe}, "
                f"seed {self.seed}")
