"""The result store: one JSON file per record, written atomically and only when complete, never changed.

Two kinds of record live under the store folder:
- `distill/<recipe key>.json`: a set was made (method, config, budget, seed, the set's payload sha256 and
  file, wall time, peak memory, hardware, versions). The key hashes the recipe (suite.recipe), so a rerun
  finds it before making anything.
- `eval/<set sha256[:16]>-<protocol hash>[-<teacher key>].json`: a set was scored (the evaluator's full report).
  Keyed by what was scored and how, so a set made twice or by two suites is scored once. Under a soft-label
  protocol whose targets come from a teacher labelling online (the suite's committee, or the one the set names),
  the teacher's key (its members' weight sha256 and ensemble weights) joins the key: the set file does not hold
  those labels, so two teachers must never share a record.
A record that exists is never rewritten: the store only grows, and a rerun skips what it holds.
While an evaluation runs, `partial/<eval key>.json` logs its finished models and `partial/<eval key>.json.model.pt`
holds the model in training (dsdistill.evaluate.finished), so an interrupted suite resumes from its last saved
model and epoch; both are removed when the record is written, and never committed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .._version import __version__
from .._io import exclusive_path, file_part, write_json
from .._provenance import hardware, peak_memory, reset_peak_memory, utc_now
from ..errors import ConfigError

DEFAULT_STORE = "benchmarks/results/store"
SCHEMA = 1
KINDS = ("distill", "eval")


def eval_key(set_sha256: str, protocol_hash: str, teacher: str | None = None) -> str:
    """The evaluation record's key; `teacher` is teacher_key() of an online teacher, None otherwise."""
    base = f"{set_sha256[:16]}-{protocol_hash}"
    return base if teacher is None else f"{base}-{teacher}"


def teacher_identity(members: list[dict[str, Any]], weights: list[float]) -> dict[str, Any]:
    """What decides an online teacher's labels beside the protocol (which fixes its BN mode): its members by
    name and weight sha256 (as a set records them, dsdistill.teachers.relabel.teacher_record) and their ensemble weights,
    rounded so that one float32 softmax computed twice agrees."""
    return {"members": [{"name": str(m["name"]), "sha256": str(m["sha256"])} for m in members],
            "weights": [round(float(w), 6) for w in weights]}


def teacher_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def set_labels(synset: Any) -> dict[str, Any]:
    """The soft labels a set carries itself, as its distillation record states them: `soft_labels` "stored" (in the
    file, so its payload sha256 covers them), "online" (`teacher`: the teacher_identity of the committee it names,
    `teacher_path` where it was) or None."""
    named = synset.extra.get("teacher") or {}
    if synset.soft_labels is not None:
        return {"soft_labels": "stored", "teacher": None, "teacher_path": named.get("path", "")}
    if named.get("members"):
        return {"soft_labels": "online", "teacher": teacher_identity(named["members"], named.get("weights") or []),
                "teacher_path": named.get("path", "")}
    return {"soft_labels": None, "teacher": None, "teacher_path": ""}


REQUIRED = {  # what the report, manifest and runner read from every record of a kind
    "distill": ("kind", "key", "method", "dataset", "ipc", "seed", "set_sha256", "set_path", "family", "label"),
    "eval": ("kind", "key", "set_sha256", "protocol", "protocol_hash", "protocol_version", "report", "family",
             "label", "dataset", "ipc"),
}


class RecordRaceError(ConfigError):
    """Two runs finished the same cell at once; the first record stands."""


def read_record(path: Path, kind: str) -> dict[str, Any]:
    """One stored record, or one line naming the damaged file and what is wrong with it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"store record {path} is damaged ({type(err).__name__}: {err}); restore it "
                          f"(git checkout -- {path}) or delete it and rerun its cell") from None
    missing = [k for k in REQUIRED.get(kind, ()) if not isinstance(record, dict) or k not in record]
    if missing:
        raise ConfigError(f"store record {path} lacks {', '.join(missing)}; it was not written by `dsdistill bench`: "
                          f"restore it (git checkout -- {path}) or delete it")
    return record


def confined(root: Path, *parts: str) -> Path:
    """root/parts..., refused (one line) if it resolves outside root."""
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"{path} lies outside the store folder {root}; names may not climb out of it")
    return path


class Store:
    """Append-only records under `root/<kind>/<key>.json`."""

    def __init__(self, root: str | os.PathLike = DEFAULT_STORE) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        return self.root / kind / f"{key}.json"

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        p = self.path(kind, key)
        return read_record(p, kind) if p.exists() else None

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).exists()

    def put(self, record: dict[str, Any]) -> Path:
        """Write a complete record; an existing one is never replaced (append-only), even by a writer racing this
        one: the record is linked into place, which only one writer can do."""
        p = self.path(record["kind"], record["key"])
        if p.exists():
            raise ConfigError(f"the store already holds {p}; records are never rewritten (delete it to redo that cell)")
        try:
            with exclusive_path(p) as tmp:
                tmp.write_text(json.dumps({"schema": SCHEMA, **record}, indent=2, sort_keys=True) + "\n")
        except FileExistsError:
            raise RecordRaceError(f"another run stored {p} while this one worked on the same cell; its record stands "
                                  f"and nothing needs deleting: rerun to go on with the cells left") from None
        return p

    def supersede(self, record: dict[str, Any]) -> Path:
        """Replace a stored record with a complete one of the same key, the old one kept inside it under
        "supersedes": the one exception to append-only (bench --adopt: a remake that measured what the old
        record could not)."""
        p = self.path(record["kind"], record["key"])
        old = self.get(record["kind"], record["key"])
        if old is None:
            raise ConfigError(f"the store holds no {p} to supersede")
        write_json(p, {**record, "schema": SCHEMA, "supersedes": old})
        return p

    def records(self, kind: str) -> list[dict[str, Any]]:
        folder = self.root / kind
        if not folder.is_dir():
            return []
        return [read_record(p, kind) for p in sorted(folder.glob("*.json"))]

    def partial(self, key: str) -> Path:
        """Where an evaluation logs its progress while it runs (evaluate(resume=); never committed)."""
        return self.root / "partial" / f"{key}.json"

    def set_file(self, dataset: str, stem: str) -> Path:
        """Where a cell's set file lives: sets/<dataset>/<stem>.h5, confined to the store whatever the names hold
        (a dataset name such as imagefolder:../../x is a name here, never a path)."""
        return confined(self.root / "sets", file_part(dataset), file_part(stem) + ".h5")


def open_store(root: str | os.PathLike | None = None, *, existing: bool = False) -> Store:
    """The store at `root` (default DEFAULT_STORE). existing: the store is read (report, manifest), so a missing
    folder is a mistyped path, not an empty benchmark."""
    store = Store(root or DEFAULT_STORE)
    if existing and not store.root.is_dir():
        raise ConfigError(f"no result store at {store.root}; give --store the folder `dsdistill bench` wrote to")
    return store


def provenance(command: str) -> dict[str, Any]:
    """What every record says about how it was made."""
    return {"command": command, "hardware": hardware(features=True), "dsdistill_version": __version__,
            "torch_version": str(torch.__version__), "python": platform.python_version(), "created_utc": utc_now()}


@dataclass
class Usage:
    """Wall time and peak memory of one block (filled in when the block ends)."""
    wall_seconds: float = 0.0
    peak_memory_mib: float | None = None
    memory_kind: str = ""
    _start: float = field(default=0.0, repr=False)


@contextmanager
def measure(device: torch.device) -> Iterator[Usage]:
    """Time a block and record its peak memory: on CUDA the peak allocated by torch, on the CPU the
    process's peak resident size (which includes the loaded dataset). None when it cannot be isolated."""
    usage = Usage()
    isolated = reset_peak_memory(device)  # always on CUDA; on the CPU where Linux lets VmHWM be reset
    start = time.perf_counter()
    yield usage
    if isolated:
        usage.peak_memory_mib, usage.memory_kind = peak_memory(device)
    usage.wall_seconds = time.perf_counter() - start
