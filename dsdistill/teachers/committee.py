"""CV-DD's committee (the "squeeze" stage): BatchNorm models trained on the real data, each with a prior.

CV-DD (reference/cvdd_fyi.md A1) trains five architectures from scratch and weights them by a "prior performance"
alpha_m: the top-1 accuracy of a ResNet-18 post-evaluated on a set distilled by member m ALONE (one full SRe2L++
run per member). That costs a distillation and a long soft-label evaluation per member, and it reads the test set.
Ours, documented: alpha_m = member m's accuracy (in percent, as CV-DD's values) on a VALIDATION split held out of
the training set (`holdout` images per class, seeded; the members never train on it). It ranks members by how well
they know the data, it is free, and no weight is chosen on the test set. The reference's prior can still be used:
measure it (`dsdistill distill --method cvdd.single --set members=NAME`, then `dsdistill evaluate --protocol kd`)
and pass the accuracies to the synthesizer with `--set priors=a,b,c`. The test accuracy is stored for information.

A committee is built from a preset (PRESETS; --members, --epochs and --train KEY=VALUE override its parts):
- "cpu" (the default, ours): three small BN nets for 1 epoch with the toolkit's real-data trainer (NCFM's recipe: SGD
  0.01, momentum 0.9, wd 5e-4, batch 128, per-sample DSA and CutMix), about 13 minutes on 2 CPU cores for
  Fashion-MNIST; at that budget the schedule barely matters.
- "paper": CV-DD's committee and squeeze for CIFAR-10/100 (reference A1; official squeeze/squeeze.py and
  scripts/squeeze_cifar10.sh): ResNet-18, ResNet-50, ShuffleNetV2 x0.5, MobileNetV2, DenseNet-121 with small-image
  stems (models/torchvision_nets.py), each 200 epochs with Adam (lr 1e-3, wd 1e-4), batch 512, cosine, RandomCrop
  (padding 4) + flip, cross-entropy, no CutMix (the official Mixup object is built but its call commented out).
  Weeks on 2 CPU cores (docs/methods/cvdd.md): a GPU recipe. On Fashion-MNIST and MNIST (not in the paper) it is
  the same recipe, ours.
- "paper-tiny-imagenet": the same members with CV-DD's Tiny-ImageNet squeeze (scripts/squeeze_tiny_imagenet.sh:
  SGD lr 0.01, momentum 0.9, wd 1e-4, batch 128, 50 epochs, cosine).

A member is "ARCH[:key=value...]": a registered model with BatchNorm and its options, plus two training keys,
`epochs` (overrides --epochs) and `per_class` (train on at most this many images per class: the CPU lever for
ResNet-18, about 10x the cost of ConvNet-3 per image). Layout of a committee folder (resumable per member):
    committee.json     manifest: format, version, identity (dataset, zca, seed, holdout, train_config), provenance,
                       `members` = the FINISHED members (name, arch, options, epochs, per_class, file, sha256, bytes,
                       prior, val_accuracy, test_accuracy, seconds)
    member-NAME.pt     {"format", "arch", "model_options", "dataset", "state_dict", accuracies}; weights_only-safe
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from .._config import parse_overrides
from .._seed import derive_seed, make_generator, seeded_init
from ..data import RealData, Split
from ..errors import CheckpointError, ConfigError
from .folder import (FolderBuild, FolderKind, FolderRequest, OnUnit, fits, load_unit, new_model, open_folder,
                     parse_model_options, read_manifest as _read_manifest, register_kind)
from ..models import has_batch_norm, model_options
from ..train.real import RealTrainConfig, test_accuracy, train_on_real
from .ensemble import RELABEL_TEMPERATURE, Teacher, prior_weights

FORMAT = "dsdistill-committee"
MEMBER_FORMAT = "dsdistill-committee-member"
VERSION = 1
MANIFEST = "committee.json"
# ours, CPU-sized (about 13 minutes on 2 idle cores for Fashion-MNIST, from ConvNet-3's 3-4 min per epoch and the
# FLOP ratios 1 : 3.2 : 9.5 of ConvNet-3 : VGG11 : ResNet-18 at 28 px): three BN architectures so that the pairs
# switch (C(3, 2) = 3 pairs), the expensive ones on a subset. CV-DD: PAPER_MEMBERS, 200 epochs each.
DEFAULT_MEMBERS = "convnet-bn,vgg11-bn:per_class=2000,resnet18-bn:per_class=1000"
DEFAULT_EPOCHS = 1          # ours: CPU-sized (CV-DD squeeze: 200 epochs on CIFAR)
DEFAULT_HOLDOUT = 100       # ours: validation images per class for the prior (1000 of Fashion-MNIST's 60000)
TRAIN_KEYS = ("epochs", "per_class")
# CV-DD's five voters (reference A1), in the order of its priors and of its IPC-10 pair walk (A2: ipc 0 = (R18, R50)
# ... ipc 9 = (MBV2, D121)), so that a committee built in this order walks the same pairs
PAPER_MEMBERS = "tv-resnet18,tv-resnet50,tv-shufflenetv2-0.5,tv-mobilenetv2,tv-densenet121"
# CV-DD squeeze.py for CIFAR-10/100 (scripts/squeeze_cifar10.sh, _cifar100.sh): --epoch 200 --batch-size 512 --lr 0.001
PAPER_EPOCHS = 200
PAPER_TRAIN = RealTrainConfig(
    optimizer="adam",      # squeeze.py: --optimizer Adam (the default)
    lr=1e-3,               # scripts: --lr 0.001
    weight_decay=1e-4,     # squeeze.py: Adam(..., weight_decay=1e-4)
    momentum=0.0,          # unused by Adam
    batch_size=512,        # scripts: --batch-size 512
    schedule="cosine",     # squeeze.py: CosineAnnealingLR(T_max=epochs), stepped per epoch
    crop_flip=4,           # utils_squeeze.py: RandomCrop(size, padding=4) + RandomHorizontalFlip
    dsa=False,             # no other augmentation
    cutmix_prob=0.0,       # squeeze.py: the timm Mixup/CutMix call is commented out; plain cross-entropy
)


@dataclass(frozen=True)
class CommitteePreset:
    """A committee recipe: its members, how long they train, and how."""
    members: str
    epochs: int
    train: RealTrainConfig


PRESETS: dict[str, CommitteePreset] = {
    "cpu": CommitteePreset(DEFAULT_MEMBERS, DEFAULT_EPOCHS, RealTrainConfig()),  # ours: see DEFAULT_MEMBERS
    "paper": CommitteePreset(PAPER_MEMBERS, PAPER_EPOCHS, PAPER_TRAIN),
    # CV-DD scripts/squeeze_tiny_imagenet.sh: --epoch 50 --batch-size 128 --optimizer SGD --lr 0.01; squeeze.py:
    # SGD momentum 0.9, weight_decay 1e-4; the same cosine and crop/flip
    "paper-tiny-imagenet": CommitteePreset(PAPER_MEMBERS, 50, dataclasses.replace(
        PAPER_TRAIN, optimizer="sgd", lr=0.01, momentum=0.9, batch_size=128)),
}
DEFAULT_PRESET = "cpu"  # ours: the paper's is ~2600x the work, weeks on 2 CPU cores (docs/methods/cvdd.md)


def committee_preset(name: str) -> CommitteePreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown committee preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class MemberSpec:
    """One requested member: architecture, its options (all, resolved), and how to train it."""
    arch: str
    options: tuple[tuple[str, Any], ...]
    epochs: int
    per_class: int | None = None

    @property
    def name(self) -> str:
        """ARCH plus the options and training keys that differ from the defaults, e.g. resnet18-bn:per_class=1000."""
        defaults = model_options(self.arch)
        parts = [f"{k}={v}" for k, v in self.options if defaults.get(k) != v]
        if self.per_class is not None:
            parts.append(f"per_class={self.per_class}")
        return ":".join([self.arch, *parts])

    @property
    def file(self) -> str:
        return "member-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.replace(":", "_").replace("=", "-")) + ".pt"

    def identity(self) -> dict[str, Any]:
        return {"arch": self.arch, "model_options": dict(self.options), "epochs": self.epochs,
                "per_class": self.per_class}


def parse_members(text: str | Sequence[str], epochs: int) -> list[MemberSpec]:
    """"convnet-bn,resnet18-bn:per_class=1000" -> specs; unknown models/options and duplicates are errors."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ConfigError("give at least one committee member, e.g. --members convnet-bn,resnet18-bn")
    specs, seen = [], set()
    for item in items:
        arch, *pairs = item.split(":")
        train = {k: v for k, v in (p.split("=", 1) for p in pairs if "=" in p) if k in TRAIN_KEYS}
        model_pairs = [p for p in pairs if p.split("=", 1)[0] not in TRAIN_KEYS]
        options = {**model_options(arch), **parse_model_options(arch, model_pairs)}
        try:
            member_epochs = int(train.get("epochs", epochs))
            per_class = int(train["per_class"]) if "per_class" in train else None
        except ValueError:
            raise ConfigError(f"member {item!r}: epochs and per_class must be integers") from None
        if member_epochs < 1 or (per_class is not None and per_class < 1):
            raise ConfigError(f"member {item!r}: epochs and per_class must be at least 1")
        spec = MemberSpec(arch, tuple(sorted(options.items())), member_epochs, per_class)
        if spec.name in seen:
            raise ConfigError(f"member {spec.name!r} is listed twice; give each member once")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def _new_model(spec: MemberSpec, real: RealData) -> nn.Module:
    model = new_model(spec.arch, real, dict(spec.options))
    if not has_batch_norm(model):
        raise ConfigError(f"committee member {spec.name!r} has no BatchNorm: CV-DD's BN-statistics loss and its "
                          "train-mode (BSSL) soft labels need running statistics; use a BN model such as "
                          "convnet-bn, vgg11-bn, alexnet-bn, resnet18-bn or convnet:norm=batch")
    return model


def holdout_split(real: RealData, holdout: int, seed: int) -> tuple[list[Tensor], Split]:
    """Per class a seeded permutation of the training indices; the first `holdout` form the validation split.
    Returns (the rest of each class, in permuted order) and the validation split."""
    rest, val = [], []
    for c in range(real.num_classes):
        index = real.train.class_index[c]
        if holdout >= len(index):
            raise ConfigError(f"--holdout {holdout} leaves no training image of class {c} ({len(index)} images); "
                              "use a smaller --holdout")
        perm = index[torch.randperm(len(index), generator=make_generator(seed, "committee-holdout", c)).to(index.device)]
        val.append(perm[:holdout])
        rest.append(perm[holdout:])
    v = torch.cat(val)
    return rest, Split.from_tensors(real.train.images[v], real.train.labels[v], real.num_classes)


def _train_split(real: RealData, rest: list[Tensor], per_class: int | None) -> Split:
    idx = torch.cat([r[:per_class] if per_class is not None else r for r in rest])
    return Split.from_tensors(real.train.images[idx], real.train.labels[idx], real.num_classes)


def state_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 of a state dict's canonical bytes (names, dtypes, shapes, little-endian values). Not of the file:
    torch.save names the archive after the (temporary) file, so equal weights give different file bytes."""
    digest = hashlib.sha256(b"dsdistill-committee-member-v1\n")
    for name in sorted(state):
        array = state[name].detach().cpu().contiguous().numpy()
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str | None:
    """The weights hash of a member file, or None when it is missing or unreadable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return state_sha256(blob["state_dict"])
    except Exception:  # missing, truncated or foreign: not finished
        return None


def _header_identity(real: RealData, seed: int, holdout: int, config: RealTrainConfig) -> dict[str, Any]:
    ident = {"dataset": real.name, "zca": real.zca is not None, "seed": seed, "holdout": holdout,
             "train_config": config.identity()}
    return json.loads(json.dumps(ident))


def committee_command(dataset: str, members: str, out: str = "DIR") -> str:
    return f"dsdistill committee --dataset {dataset} --members {members} --out {out}"


def _by_name(entry: Mapping[str, Any]) -> str:
    return entry["name"]


KIND = register_kind(FolderKind(
    noun="committee", article="a committee", unit="member", holds="a committee with", manifest=MANIFEST,
    format=FORMAT, version=VERSION, entries="members", required=(), key=_by_name, ordered=False))


def read_manifest(path: str | Path, hint: str = "dsdistill committee --out DIR") -> dict[str, Any]:
    """The manifest of the committee folder `path`; CheckpointError when missing or damaged, naming `hint`."""
    return _read_manifest(KIND, path, hint)


def build_committee(real: RealData, out: str | Path, members: Sequence[MemberSpec], *, seed: int = 0,
                    holdout: int = DEFAULT_HOLDOUT, config: RealTrainConfig = RealTrainConfig(), command: str = "",
                    on_member: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train every member not yet in `out` and record it. Member m is initialised and trained from seeds derived from
    (seed, "committee", m.name), so it does not depend on the list order, on the other members or on interruptions;
    a finished member whose file still has its recorded sha256 is kept."""
    models = {spec.name: _new_model(spec, real) for spec in members}  # every BN check before any training
    build = FolderBuild(KIND, out, _header_identity(real, seed, holdout, config), command=command,
                        extra={"prior": f"accuracy (%) on {holdout} validation images per class held out of training "
                                        "(ours)"},
                        keep=lambda path, entry: _file_sha256(path) == entry.get("sha256"), on_unit=on_member)
    wanted = {spec.name: spec for spec in members}
    for name, entry in build.finished.items():
        if name in wanted and entry.get("identity") != wanted[name].identity():
            raise ConfigError(f"member {name!r} in {build.folder} was trained differently ({entry.get('identity')}); "
                              "use another --out")
    rest, val = holdout_split(real, holdout, seed)
    device = real.train.images.device
    for name in build.missing(wanted):
        spec = wanted[name]
        member_seed = derive_seed(seed, "committee", spec.name)
        model = seeded_init(models[spec.name], member_seed, "init").to(device)
        train = _train_split(real, rest, spec.per_class)
        start = time.perf_counter()
        train_on_real(model, train, config, member_seed, spec.epochs, digits=real.digits, desc=spec.name)
        seconds = time.perf_counter() - start
        val_acc, test_acc = test_accuracy(model, val), test_accuracy(model, real.test)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        path = build.save(spec.file, {"format": MEMBER_FORMAT, "version": VERSION, "dataset": real.name,
                                      "arch": spec.arch, "model_options": dict(spec.options), "name": spec.name,
                                      "state_dict": state, "prior": 100.0 * val_acc, "val_accuracy": val_acc,
                                      "test_accuracy": test_acc})
        build.finish({"name": spec.name, "identity": spec.identity(), "file": spec.file, "sha256": state_sha256(state),
                      "bytes": path.stat().st_size, "prior": 100.0 * val_acc, "val_accuracy": val_acc,
                      "test_accuracy": test_acc, "train_images": len(train), "seconds": round(seconds, 3)})
    return build.folder


@dataclass
class Member:
    name: str
    model: nn.Module        # eval mode, frozen
    prior: float
    sha256: str
    bytes: int
    test_accuracy: float
    file: Path


@dataclass
class Committee:
    path: Path
    dataset: str
    members: list[Member] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def select(self, names: Sequence[str]) -> "Committee":
        """Only the named members, in the given order; an unknown name lists the valid ones."""
        by_name = {m.name: m for m in self.members}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"committee {self.path} has no member {', '.join(map(repr, unknown))}; "
                              f"members: {', '.join(self.names)}")
        return Committee(self.path, self.dataset, [by_name[n] for n in names])

    def record(self, weights: Sequence[float] | None = None) -> dict[str, Any]:
        """What a set file stores to name these teachers: folder, member names and sha256, weights."""
        out = {"path": str(self.path), "members": [{"name": m.name, "sha256": m.sha256} for m in self.members]}
        if weights is not None:
            out["weights"] = [float(w) for w in weights]
        return out

    def teacher(self, weights: Sequence[float] | Tensor, bn_mode: str) -> Teacher:
        return Teacher([m.model for m in self.members], weights, bn_mode=bn_mode, names=self.names,
                       sha256=[m.sha256 for m in self.members], checkpoint_bytes=sum(m.bytes for m in self.members),
                       source=str(self.path))


def _load_member_file(path: Path, real: RealData, device: str | torch.device,
                      hint: str) -> tuple[dict, nn.Module, str]:
    """(the file's fields, the model in eval mode, the weights' sha256)."""
    blob = load_unit(KIND, path, hint, device=device)
    if not isinstance(blob, dict) or blob.get("format") != MEMBER_FORMAT:
        raise CheckpointError(f"{path} is not a dsdistill committee member checkpoint")
    if blob.get("dataset") != real.name:
        raise CheckpointError(f"committee checkpoint {path} was trained on {blob.get('dataset')!r}, not {real.name!r}; "
                              f"build a committee for {real.name} with `{hint}`")
    spec = MemberSpec(blob["arch"], tuple(sorted(blob["model_options"].items())), 1)
    model = _new_model(spec, real)
    if not fits(blob["state_dict"], model):
        raise CheckpointError(f"committee checkpoint {path} does not fit a {spec.arch} for {real.name} "
                              f"({real.channels}x{real.image_size}px, {real.num_classes} classes)")
    digest = state_sha256(blob["state_dict"])
    model.load_state_dict(blob["state_dict"])
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return blob, model, digest


def load_committee(path: str | Path, real: RealData, device: str | torch.device = "cpu") -> Committee:
    """Every finished member of the committee at `path`, checked: dataset, file sha256, shapes."""
    folder = Path(path)
    wanted = {"dataset": real.name, "zca": real.zca is not None}  # any seed, holdout and training labels as well
    manifest, entries, resume = open_folder(KIND, folder, wanted, hint=committee_command(real.name, "LIST", str(folder)),
                                            other=committee_command(real.name, "LIST"))
    members = []
    for entry in entries:
        file = folder / entry["file"]
        _, model, digest = _load_member_file(file, real, device, resume)
        if digest != entry["sha256"]:
            raise CheckpointError(f"committee checkpoint {file} does not match its recorded sha256 (changed after "
                                  f"training); delete it and rerun `{resume}`")
        members.append(Member(entry["name"], model, float(entry["prior"]), entry["sha256"], int(entry["bytes"]),
                              float(entry["test_accuracy"]), file))
    return Committee(folder, real.name, members)


def load_teacher(source: str | Path | nn.Module, real: RealData, *, bn_mode: str = "train",
                 temperature: float = RELABEL_TEMPERATURE, device: str | torch.device = "cpu",
                 expected: Mapping[str, Any] | None = None) -> Teacher:
    """The one way to a Teacher: a Teacher as it is, any other model as a one-member ensemble (weight 1), a
    committee folder (weighted ensemble, softmax(prior / temperature)) or one member file (weight 1).

    `expected` is what a set recorded (Committee.record): only those members are used, each must have the recorded
    sha256, and the recorded weights are used."""
    if isinstance(source, Teacher):
        return source.to(device)
    if isinstance(source, nn.Module):
        return Teacher([source], [1.0], bn_mode=bn_mode).to(device)
    target = Path(source)
    if target.is_file():
        blob, model, digest = _load_member_file(target, real, device, committee_command(real.name, "LIST"))
        recorded = [m.get("sha256") for m in (expected or {}).get("members", [])]
        if expected is not None and recorded != [digest]:
            raise CheckpointError(f"the checkpoint {target} is not the teacher the set was made with (sha256 "
                                  f"{digest[:12]}); pass --teacher with the right checkpoint")
        return Teacher([model], [1.0], bn_mode=bn_mode, names=[blob.get("name", target.stem)], sha256=[digest],
                       checkpoint_bytes=target.stat().st_size, source=str(target))
    committee = load_committee(target, real, device)
    if expected is None:
        return committee.teacher(prior_weights([m.prior for m in committee.members], temperature), bn_mode)
    names = [m["name"] for m in expected.get("members", [])]
    missing = [n for n in names if n not in committee.names]
    if missing:
        raise CheckpointError(f"the committee at {target} lacks member(s) {', '.join(missing)} that the set was "
                              f"labelled with; pass --teacher with the committee the set was made with")
    chosen = committee.select(names)
    for m, rec in zip(chosen.members, expected["members"]):
        if m.sha256 != rec.get("sha256"):
            raise CheckpointError(f"committee member {m.name} at {m.file} is not the checkpoint the set was made with "
                                  f"(sha256 {m.sha256[:12]} != recorded {str(rec.get('sha256'))[:12]}); pass --teacher "
                                  f"with the right committee")
    weights = expected.get("weights") or prior_weights([m.prior for m in chosen.members], temperature)
    return chosen.teacher(weights, bn_mode)


# ---------------------------------------------------------------- the build as one request (dsdistill.teachers.builders)

@dataclass(frozen=True, kw_only=True)
class CommitteeRequest(FolderRequest):
    """`dsdistill committee`: CV-DD's committee of BatchNorm models, each with a prior."""

    kind: ClassVar[FolderKind] = KIND
    preset: str = DEFAULT_PRESET
    members: str | None = None      # None: the preset's
    epochs: int | None = None       # None: the preset's
    train: tuple[str, ...] = ()     # RealTrainConfig overrides of the preset's training, KEY=VALUE
    holdout: int = DEFAULT_HOLDOUT

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.holdout, int) or self.holdout < 1:
            raise ConfigError(f"--holdout must be at least 1 (validation images per class for the priors), "
                              f"got {self.holdout!r}")
        self.specs()
        self.config()

    def specs(self) -> list[MemberSpec]:
        preset = committee_preset(self.preset)
        return parse_members(preset.members if self.members is None else self.members,
                             preset.epochs if self.epochs is None else self.epochs)

    def config(self) -> RealTrainConfig:
        return dataclasses.replace(committee_preset(self.preset).train, **parse_overrides(RealTrainConfig, self.train))

    def build(self, real: RealData, command: str = "", on_unit: OnUnit | None = None) -> Path:
        return build_committee(real, self.out, self.specs(), seed=self.seed, holdout=self.holdout,
                               config=self.config(), command=command, on_member=on_unit)

    def describe(self) -> str:
        return f"preset {self.preset}, seed {self.seed}, {self.holdout} validation images per class"
