"""A folder of models trained one at a time, resumably: NCFM's pool, MTT's experts, CV-DD's committee.

The three share one contract, kept here so that they cannot drift apart: a JSON manifest with a format, a version
and an identity (what makes two folders the same); a rerun with another identity is refused with what differs;
every model file is written atomically and the manifest rewritten after each model, listing only the FINISHED
ones, so a stopped build keeps them and a rerun skips them. What a model file holds, how a model is trained and
how it is read back stay in each kind's own module.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, TypeVar

from .._version import __version__
from .._io import save_torch, write_json
from ..errors import CheckpointError, ConfigError
from .._provenance import FILE_STAMP, utc_now

Entry = dict[str, Any]
K = TypeVar("K", bound=Hashable)


def _by_index(entry: Mapping[str, Any]) -> Hashable:
    return int(entry["index"])


@dataclass(frozen=True)
class FolderKind:
    """One kind of model folder: its manifest, and the words its messages use."""

    noun: str  # "pool": "no pool folder at DIR", "not a dsdistill pool manifest"
    article: str  # "a pool": "DIR has no pool.json (not a pool, or its first model never finished)"
    unit: str  # "model": what one file of the folder holds
    holds: str  # "a pool": "DIR already holds a pool " + the differences
    manifest: str  # the manifest's file name, "pool.json"
    format: str  # the manifest's `format`, "dsdistill-pool"
    version: int
    entries: str  # the manifest's list of finished units, "models"
    required: tuple[str, ...]  # the identity keys every manifest of this version has
    differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]  # (manifest, wanted) -> phrases
    key: Callable[[Mapping[str, Any]], Hashable] = _by_index  # which unit an entry is
    ordered: bool = True  # list entries sorted by key (False: in the order they finished)


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
