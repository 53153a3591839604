"""A folder of models trained one at a time, resumably: NCFM's pool, MTT's experts, CV-DD's committee.

The three share one skeleton, kept here so that they cannot drift apart: a JSON manifest with a format, a version
and an identity (what makes two folders the same); a rerun or a load with another identity is refused naming
each key that differs; every model file is written atomically and the manifest rewritten after each model,
listing only the FINISHED ones, so a stopped build keeps them and a rerun skips them; a model file is read back
with one set of errors; a fresh model is made from (arch, options) the same way. A kind declares itself with a
FolderKind (registered, so a folder of another kind is named as such) and its build with a FolderRequest (the
options of its command); what its files hold and how its models are trained stay in its own module.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Hashable, Iterable, Mapping, TypeVar

import torch
from torch import nn

from .._config import parse_overrides
from .._version import __version__
from .._io import check_output, save_torch, write_json
from ..data import RealData
from ..errors import CheckpointError, ConfigError
from .._provenance import FILE_STAMP, utc_now
from .._seed import derive_seed, seeded_init
from ..models import create_model, model_options as arch_options
from ..train.real import test_accuracy

Entry = dict[str, Any]
OnUnit = Callable[[Entry], None]
K = TypeVar("K", bound=Hashable)


def _by_index(entry: Mapping[str, Any]) -> Hashable:
    return int(entry["index"])


# ---------------------------------------------------------------- models: options and fresh models
def resolved_options(arch: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """All of the model's options with the given ones applied, so {} and {"width": 128} name the same folder."""
    defaults = arch_options(arch)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for model {arch!r}; "
                          f"valid: {', '.join(defaults) or '(none)'}")
    return {**defaults, **given}


def parse_model_options(arch: str, pairs: Iterable[str]) -> dict[str, Any]:
    """--set key=value pairs -> model options, typed by each option's default (width=8 -> 8)."""
    fields = [(name, type(default) if default is not None else str) for name, default in arch_options(arch).items()]
    spec = dataclasses.make_dataclass(f"{arch} model options", fields)
    return parse_overrides(spec, pairs)


def new_model(arch: str, real: RealData, options: Mapping[str, Any]) -> nn.Module:
    """A model for `real`; module constructors draw from the global RNG, so they run on a fork of it (every
    weight that matters is then set by seeded_init or a state dict)."""
    with torch.random.fork_rng(devices=[]):
        return create_model(arch, real.channels, real.num_classes, real.image_size, **options)


def fits(state: Mapping[str, torch.Tensor], model: nn.Module) -> bool:
    """Whether a state dict has exactly the model's tensors and shapes."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return {k: tuple(v.shape) for k, v in state.items()} == shapes


# ---------------------------------------------------------------- identity
def _phrase(key: str, value: Any) -> str:
    return ("with ZCA" if value else "without ZCA") if key == "zca" else str(value)


def identity_differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """['dataset mnist, not fashion-mnist', 'model option width=32, not 128', 'without ZCA, not with ZCA', ...]:
    each identity key of `want` that `have` (a manifest) holds otherwise, named with both values. The options of
    another architecture say nothing more than that the architecture differs, so they are left out then."""
    out = []
    other_arch = "arch" in want and have.get("arch") != want["arch"]
    for key, value in want.items():
        theirs = have.get(key)
        if theirs == value or (key == "model_options" and other_arch):
            continue
        if isinstance(value, dict) and isinstance(theirs, dict):
            label = "model option" if key == "model_options" else key
            out += [f"{label} {k}={theirs.get(k, '(unset)')}, not {value.get(k, '(unset)')}"
                    for k in sorted({*value, *theirs}) if theirs.get(k) != value.get(k)]
        elif key == "zca":
            out.append(f"{_phrase(key, theirs)}, not {_phrase(key, value)}")
        else:
            out.append(f"{key} {theirs}, not {value}")
    return out


@dataclass(frozen=True)
class FolderKind:
    """One kind of model folder: its manifest, and the words its messages use."""

    noun: str  # "pool": "no pool folder at DIR", "not a dsdistill pool manifest"
    article: str  # "a pool": "DIR has no pool.json (not a pool, or its first model never finished)"
    unit: str  # "model": what one file of the folder holds
    holds: str  # "a pool with": "DIR already holds a pool with " + the differences
    manifest: str  # the manifest's file name, "pool.json"
    format: str  # the manifest's `format`, "dsdistill-pool"
    version: int
    entries: str  # the manifest's list of finished units, "models"
    required: tuple[str, ...]  # the identity keys every manifest of this version has
    differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] = identity_differences
    # (manifest, wanted) -> phrases naming each differing key
    key: Callable[[Mapping[str, Any]], Hashable] = _by_index  # which unit an entry is
    ordered: bool = True  # list entries sorted by key (False: in the order they finished)


@dataclass(frozen=True, kw_only=True)
class FolderRequest:
    """What every build of a folder is asked (a kind's request adds its own options): where to, on which data,
    from which seed. The fields are the options of the kind's command (dsdistill.teachers.builders)."""

    kind: ClassVar[FolderKind]
    out: str
    dataset: str = "fashion-mnist"
    seed: int = 0
    zca: bool = False

    def __post_init__(self) -> None:
        """What every build must have right before any model trains: a seed we can derive from, and an output
        folder that can be written (a place under a file or without write access is found now, not after the
        first model's hours)."""
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        check_output(self.out, "--out", folder=True)

    def build(self, real: RealData, command: str = "", on_unit: OnUnit | None = None) -> Path:
        """Build (or resume) into self.out on `real`, recording `command`; on_unit(entry) after each new unit."""
        raise NotImplementedError

    def describe(self) -> str:
        """The build in words, for the line that reports it."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class ModelRequest(FolderRequest):
    """A request for models of one architecture: --arch and its options as --set KEY=VALUE, checked when made."""

    arch: str = "convnet"
    set: tuple[str, ...] = ()  # model options, KEY=VALUE

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model_options()

    def model_options(self) -> dict[str, Any]:
        return parse_model_options(self.arch, self.set)


KINDS: dict[str, FolderKind] = {}
"""manifest file name -> kind, so that a folder of another kind is named as such (register_kind)."""


def register_kind(kind: FolderKind) -> FolderKind:
    KINDS[kind.manifest] = kind
    return kind


def read_manifest(kind: FolderKind, path: str | Path, hint: str = "") -> dict[str, Any]:
    """The manifest of the folder `path`; CheckpointError when it is missing, damaged or of another format or
    version, naming `hint` (the command that builds the folder) when given."""
    folder = Path(path)
    build = f"; build one with `{hint}`" if hint else ""
    remedy = f"delete the folder and rerun `{hint}`" if hint else "delete the folder and build it again"
    if not folder.is_dir():
        raise CheckpointError(f"no {kind.noun} folder at {folder}{build}")
    file = folder / kind.manifest
    if not file.is_file():
        other = [k for name, k in KINDS.items() if name != kind.manifest and (folder / name).is_file()]
        if other:
            raise CheckpointError(f"{folder} holds {other[0].article} ({other[0].manifest}), not {kind.article}{build}")
        raise CheckpointError(f"{folder} has no {kind.manifest} (not {kind.article}, or its first {kind.unit} never "
                              f"finished){build}")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{file} is damaged ({type(err).__name__}); {remedy}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != kind.format:
        raise CheckpointError(f"{file} is not a dsdistill {kind.noun} manifest; {remedy}")
    if manifest.get("version") != kind.version:
        raise CheckpointError(f"{file} is {kind.noun} format version {manifest.get('version')!r} and this dsdistill "
                              f"reads version {kind.version}; {remedy}")
    missing = [k for k in (*kind.required, kind.entries) if k not in manifest]
    if missing or not isinstance(manifest[kind.entries], list):
        raise CheckpointError(f"{file} is damaged (missing {', '.join(missing) or kind.entries + ' list'}); {remedy}")
    return manifest


def finished_entries(kind: FolderKind, folder: str | Path, manifest: Mapping[str, Any], rerun: str) -> list[Entry]:
    """The manifest's finished units, in unit order; CheckpointError naming `rerun` when it lists none."""
    entries = manifest[kind.entries]
    if not entries:
        raise CheckpointError(f"the {kind.noun} folder at {folder} lists no finished {kind.unit}; rerun `{rerun}`")
    return sorted(entries, key=kind.key) if kind.ordered else list(entries)


def open_folder(kind: FolderKind, path: str | Path, wanted: Mapping[str, Any], *, hint: str, other: str,
                rerun: Callable[[Mapping[str, Any]], str] | None = None) -> tuple[dict[str, Any], list[Entry], str]:
    """Read a folder for use: its manifest (`hint`: the command that builds it), refused when its identity differs
    from `wanted` (naming each key and `other`, the command for a matching folder). Returns the manifest, its
    finished units and the command that resumes its build (the recorded one, else rerun(manifest), else hint)."""
    manifest = read_manifest(kind, path, hint)
    diffs = kind.differences(manifest, wanted)
    if diffs:
        raise CheckpointError(f"the {kind.noun} folder at {path} does not fit this run: {'; '.join(diffs)}; build a matching "
                              f"one with `{other}`")
    resume = manifest.get("command") or (rerun(manifest) if rerun else hint)
    return manifest, finished_entries(kind, path, manifest, resume), resume


def load_unit(kind: FolderKind, path: Path, rerun: str, *, device: str | torch.device = "cpu",
              mmap: bool = False) -> Any:
    """What torch.save wrote to one unit's file (weights_only); CheckpointError when missing or unreadable, naming
    `rerun` (the command that resumes the build) when given."""
    if not path.is_file():
        again = f"; rerun `{rerun}` to retrain it (building resumes)" if rerun else ""
        raise CheckpointError(f"{kind.unit} file {path} is missing{again}")
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        again = f"; delete it and rerun `{rerun}` to retrain it" if rerun else ""
        raise CheckpointError(f"{kind.unit} file {path} is unreadable ({type(err).__name__}){again}") from None


def build_finished(path: str | Path) -> bool:
    """Whether what a prerequisite `creates` is whole: False only for a model-folder manifest whose build stopped
    before its last planned unit (it lists the finished ones, so it exists from the first); any other path
    (a set file, a manifest written before manifests said so) is whole when it exists."""
    file = Path(path)
    if not file.exists():
        return False
    if file.suffix != ".json" or not file.is_file():
        return True
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError):
        return True   # not a manifest of ours: existence is all we know
    return not (isinstance(manifest, dict) and str(manifest.get("format", "")).startswith("dsdistill-")
                and manifest.get("complete") is False)


def folder_bytes(kind: FolderKind, path: str | Path) -> int:
    """Bytes on disk of the manifest and every finished unit's file."""
    folder = Path(path)
    files = [kind.manifest] + [e["file"] for e in read_manifest(kind, folder)[kind.entries]]
    return sum((folder / f).stat().st_size for f in files)


class FolderBuild:
    """One run of a resumable build into a folder: missing() lists the units still to train, save() writes a
    unit's file atomically and finish() records it in the manifest."""

    def __init__(self, kind: FolderKind, out: str | Path, identity: Mapping[str, Any], *, command: str = "",
                 keep: Callable[[Path, Mapping[str, Any]], bool], extra: Mapping[str, Any] | None = None,
                 on_unit: Callable[[Entry], None] | None = None) -> None:
        """Check `out` (a folder, and if it holds a manifest, one of this `identity`) and keep the units it lists
        whose file passes keep(path, entry) (a CheckpointError raised there counts as False). `extra` goes into
        the manifest beside the identity; on_unit(entry) runs after each newly finished unit."""
        self.kind, self.folder, self.on_unit = kind, Path(out), on_unit
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--out {self.folder} is a file; give a folder for {kind.manifest} and the "
                              f"{kind.unit} files")
        identity = json.loads(json.dumps(identity))  # compared as it reads back (tuples become lists)
        self.header = {"format": kind.format, "version": kind.version, **identity, "created_utc": utc_now(FILE_STAMP),
                       "dsdistill_version": __version__, "command": command, **(extra or {})}
        self.finished: dict[Hashable, Entry] = {}
        self.planned: set[Hashable] = set()
        if not (self.folder / kind.manifest).exists():
            return
        manifest = read_manifest(kind, self.folder)
        diffs = kind.differences(manifest, identity)
        if diffs:
            raise ConfigError(f"{self.folder} already holds {kind.holds} {'; '.join(diffs)}; use another --out "
                              f"(or delete that folder)")
        self.header["created_utc"] = manifest.get("created_utc", self.header["created_utc"])
        self.finished = {kind.key(e): e for e in manifest[kind.entries] if self._kept(keep, e)}

    def _kept(self, keep: Callable[[Path, Mapping[str, Any]], bool], entry: Mapping[str, Any]) -> bool:
        try:
            return bool(keep(self.folder / entry["file"], entry))
        except CheckpointError:
            return False

    def missing(self, keys: Iterable[K]) -> list[K]:
        """The units of `keys` (this run's plan) not finished yet, in the given order."""
        keys = list(keys)
        self.planned = set(keys)
        return [k for k in keys if k not in self.finished]

    def save(self, file: str, blob: Any) -> Path:
        """Write one unit's file (torch.save, atomically); returns its path."""
        path = self.folder / file
        save_torch(path, blob)
        return path

    def finish(self, entry: Entry) -> None:
        """Record a unit whose file is saved: rewrite the manifest (atomically), then call on_unit."""
        self.finished[self.kind.key(entry)] = entry
        done = [self.finished[k] for k in sorted(self.finished)] if self.kind.ordered else list(self.finished.values())
        complete = self.planned <= self.finished.keys()   # what a stopped build lacks (see build_finished)
        write_json(self.folder / self.kind.manifest, {**self.header, "complete": complete, self.kind.entries: done})
        if self.on_unit is not None:
            self.on_unit(entry)

    def train_units(self, count: int, real: RealData, arch: str, options: Mapping[str, Any], *, seed: int,
                    purpose: str, train: Callable[[nn.Module, int, str], Any], file: Callable[[int], str]) -> Path:
        """Train every missing unit i of range(count), the loop a pool and experts share: a new `arch` model for
        `real`, initialised from derive_seed(seed, purpose, i) (so a unit depends on neither the count nor an
        interruption) on real's device, then train(model, unit_seed, desc) -> what the unit's file holds. Its
        entry records the accuracy on real.test and the training seconds; returns the folder."""
        for i in self.missing(range(count)):
            unit_seed = derive_seed(seed, purpose, i)
            model = seeded_init(new_model(arch, real, options), unit_seed, "init").to(real.train.images.device)
            start = time.perf_counter()
            blob = train(model, unit_seed, f"{self.kind.unit} {i + 1}/{count}")
            entry = {"file": file(i), "index": i, "test_accuracy": test_accuracy(model, real.test),
                     "seconds": round(time.perf_counter() - start, 3)}
            self.save(entry["file"], blob)
            self.finish(entry)
        return self.folder
