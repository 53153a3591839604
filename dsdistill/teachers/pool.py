"""A pool of models trained on the real data, each kept as (random init, trained weights): NCFM's feature
extractor is lam * init + (1 - lam) * trained of a random pool member (DANCE-style interpolation).

NCFM's official pool (pretrain/pretrain_script.py) is 20 ConvNets x 60 epochs per dataset (80 for the ImageNet
subsets). Our CLI default is smaller (DEFAULT_MODELS x DEFAULT_EPOCHS) so that it finishes in about ten minutes on
2 CPU cores for Fashion-MNIST (one epoch of ConvNet-3 on the 60000 images is about 3-4 minutes there, scaled from
a run under load; one such model reaches about 86% test accuracy); pass --models 20 --epochs 60 for the official size.

Layout of a pool folder:
    pool.json        manifest: format, version, identity (dataset, zca, arch, model_options, epochs, seed,
                     train_config), provenance, and `models` = the FINISHED models only
    model-000.pt     {"init": state_dict, "trained": state_dict}, CPU tensors, read with weights_only=True
Building is resumable per model (dsdistill.teachers.folder): every file is written atomically and the manifest is
rewritten after each model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from .._text import count
from ..data import RealData
from ..errors import CheckpointError, ConfigError
from .folder import (FolderBuild, FolderKind, ModelRequest, OnUnit, fits, load_unit, new_model, open_folder,
                     read_manifest as _read_manifest, register_kind, resolved_options)
from ..models import model_options as arch_options
from ..train.real import RealTrainConfig, train_on_real

FORMAT = "dsdistill-pool"
VERSION = 1
MANIFEST = "pool.json"
DEFAULT_MODELS = 3  # ours: CPU-sized (official: 20), about 10 minutes for Fashion-MNIST on 2 cores
DEFAULT_EPOCHS = 1  # ours: CPU-sized (official: 60 for CIFAR/TinyImageNet, 80 for the ImageNet subsets)
OFFICIAL_MODELS = 20  # NCFM official pretrain/pretrain_script.py: model_num
OFFICIAL_EPOCHS = 60  # NCFM official configs: pertrain_epochs (CIFAR-10/100, TinyImageNet)
StateDict = dict[str, Tensor]


def model_file(index: int) -> str:
    return f"model-{index:03d}.pt"


def pool_command(dataset: str, zca: bool, arch: str, options: Mapping[str, Any], *, models: int = DEFAULT_MODELS,
                 epochs: int = DEFAULT_EPOCHS, out: str = "DIR") -> str:
    """The `dsdistill pool` command that builds a pool of this identity (for error messages)."""
    parts = ["dsdistill pool", f"--dataset {dataset}", f"--models {models}", f"--epochs {epochs}"]
    if arch != "convnet":
        parts.append(f"--arch {arch}")
    defaults = arch_options(arch)
    parts += [f"--set {k}={v}" for k, v in options.items() if defaults.get(k) != v]
    if zca:
        parts.append("--zca")
    return " ".join(parts + [f"--out {out}"])


def _identity(real: RealData, arch: str, options: Mapping[str, Any], epochs: int | None = None,
              seed: int | None = None, config: RealTrainConfig | None = None) -> dict[str, Any]:
    """What makes two pools the same, as it reads back from JSON (tuples become lists)."""
    ident: dict[str, Any] = {"dataset": real.name, "zca": real.zca is not None, "arch": arch,
                             "model_options": dict(options)}
    if epochs is not None:
        ident.update(epochs=epochs, seed=seed, train_config=config.identity())
    return json.loads(json.dumps(ident))


KIND = register_kind(FolderKind(
    noun="pool", article="a pool", unit="model", holds="a pool with", manifest=MANIFEST, format=FORMAT,
    version=VERSION, entries="models",
    required=("dataset", "zca", "arch", "model_options", "epochs", "seed", "train_config")))


def read_manifest(path: str | Path, hint: str = "") -> dict[str, Any]:
    """The manifest of the pool folder `path`; CheckpointError when missing or damaged, naming `hint` (the
    command that builds the pool) when given."""
    return _read_manifest(KIND, path, hint)


def _load_model_file(path: Path, device: str | torch.device, rerun: str) -> tuple[StateDict, StateDict]:
    blob = load_unit(KIND, path, rerun, device=device)
    if not isinstance(blob, dict) or not isinstance(blob.get("init"), dict) or not isinstance(blob.get("trained"), dict):
        raise CheckpointError(f"{path} is not a pool model file (needs 'init' and 'trained'); delete it and rerun "
                              f"`{rerun}`")
    return blob["init"], blob["trained"]


@dataclass
class Pool:
    """A loaded pool: the manifest's fields plus every model's init and trained weights."""

    path: Path
    dataset: str
    zca: bool
    arch: str
    model_options: dict[str, Any]
    epochs: int
    seed: int
    train_config: dict[str, Any]
    created_utc: str
    dsdistill_version: str
    command: str
    models: list[dict[str, Any]]
    inits: list[StateDict] = field(repr=False)
    trained: list[StateDict] = field(repr=False)
    accuracies: list[float] = field(default_factory=list)
    format: str = FORMAT
    version: int = VERSION

    def __len__(self) -> int:
        return len(self.trained)

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise ConfigError(f"pool model {index} does not exist; the pool at {self.path} has {len(self)} models")

    def trained_state(self, index: int) -> StateDict:
        """Model `index` after training (NCFM's "model_final", also the calibration model)."""
        self._check(index)
        return self.trained[index]

    def interpolated(self, index: int, lam: float) -> StateDict:
        """lam * init + (1 - lam) * trained for floating tensors; integer buffers (BN's step count) from trained.
        lam = 1 is the random init, lam = 0 the trained model (NCFM draws lam ~ U(0, 1) per iteration)."""
        self._check(index)
        init, trained = self.inits[index], self.trained[index]
        return {k: torch.lerp(v, init[k], lam) if v.is_floating_point() else v for k, v in trained.items()}


def load_pool(path: str | Path, real: RealData, arch: str = "convnet",
              model_options: Mapping[str, Any] | None = None, device: str | torch.device = "cpu") -> Pool:
    """Read the pool at `path` and check that it was built for `real` (dataset, ZCA), `arch` and its options."""
    options = resolved_options(arch, model_options)
    zca = real.zca is not None
    folder = Path(path)
    manifest, entries, resume = open_folder(
        KIND, folder, _identity(real, arch, options), hint=pool_command(real.name, zca, arch, options, out=str(path)),
        other=pool_command(real.name, zca, arch, options),  # --out DIR: this folder is taken
        rerun=lambda m: pool_command(real.name, zca, arch, options, models=len(m["models"]), epochs=m["epochs"],
                                     out=str(path)))
    model = new_model(arch, real, options)
    inits, trained = [], []
    for entry in entries:
        init, final = _load_model_file(folder / entry["file"], device, resume)
        if not (fits(init, model) and fits(final, model)):
            raise CheckpointError(f"{folder / entry['file']} does not fit a {arch} for {real.name} "
                                  f"({real.channels}x{real.image_size}x{real.image_size}, {real.num_classes} "
                                  f"classes); build a matching pool with `{pool_command(real.name, zca, arch, options)}`")
        inits.append(init)
        trained.append(final)
    return Pool(path=folder, dataset=manifest["dataset"], zca=manifest["zca"], arch=manifest["arch"],
                model_options=manifest["model_options"], epochs=manifest["epochs"], seed=manifest["seed"],
                train_config=manifest["train_config"], created_utc=manifest.get("created_utc", ""),
                dsdistill_version=manifest.get("dsdistill_version", ""), command=manifest.get("command", ""),
                models=entries, inits=inits, trained=trained,
                accuracies=[float(m["test_accuracy"]) for m in entries])


def _cpu_state(model: torch.nn.Module) -> StateDict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def build_pool(real: RealData, out: str | Path, *, models: int, epochs: int, arch: str = "convnet",
               model_options: Mapping[str, Any] | None = None, seed: int = 0,
               config: RealTrainConfig = RealTrainConfig(), command: str = "",
               on_model: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train `models` models on real.train for `epochs` epochs each and store them in the folder `out`.

    Resumable: models already listed in out/pool.json (same identity) are kept, the rest trained. Model i is
    initialised and trained from seeds derived from (seed, "pool", i), so a model does not depend on how many
    were asked for or on interruptions. `on_model(entry)` runs after each newly trained model.
    """
    if models < 1 or epochs < 1:
        raise ConfigError(f"need --models >= 1 and --epochs >= 1, got {models} and {epochs}")
    options = resolved_options(arch, model_options)
    build = FolderBuild(KIND, out, _identity(real, arch, options, epochs, seed, config), command=command,
                        keep=lambda path, _: _load_model_file(path, "cpu", "") is not None,  # it still loads
                        on_unit=on_model)

    def train(model: nn.Module, model_seed: int, desc: str) -> dict[str, Any]:
        init = _cpu_state(model)
        train_on_real(model, real.train, config, model_seed, epochs, digits=real.digits, desc=desc)
        return {"init": init, "trained": _cpu_state(model)}

    return build.train_units(models, real, arch, options, seed=seed, purpose="pool", train=train, file=model_file)


# ---------------------------------------------------------------- the build as one request (dsdistill.teachers.builders)

@dataclass(frozen=True, kw_only=True)
class PoolRequest(ModelRequest):
    """`dsdistill pool`: NCFM's pool of (init, trained) models."""

    kind: ClassVar[FolderKind] = KIND
    models: int = DEFAULT_MODELS
    epochs: int = DEFAULT_EPOCHS

    def build(self, real: RealData, command: str = "", on_unit: OnUnit | None = None) -> Path:
        return build_pool(real, self.out, models=self.models, epochs=self.epochs, arch=self.arch,
                          model_options=self.model_options(), seed=self.seed, command=command, on_model=on_unit)

    def describe(self) -> str:
        return f"{self.arch}, {count(self.epochs, 'epoch')}, seed {self.seed}"
