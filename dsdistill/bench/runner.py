"""Run a suite through the public API: make each cell's set (or find it in the store), score it under
each protocol (or find the score), and write one record per completed step.

A rerun skips every stored step. An interrupted distillation resumes from the synthesizer's checkpoint
(next to the set file); an interrupted evaluation starts again. Nothing is recorded before it is complete.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .._device import resolve_device
from .._progress import progress
from ..data import RealData, load_dataset
from ..errors import ConfigError
from ..evaluate import evaluate, get_protocol
from ..synset import SyntheticSet
from .store import Store, eval_key, measure, provenance
from .suite import Cell, Prerequisite, Suite


@dataclass
class Summary:
    made: list[str] = field(default_factory=list)       # distillations/selections run now
    scored: list[str] = field(default_factory=list)     # evaluations run now
    skipped: list[str] = field(default_factory=list)    # steps found in the store

    def line(self) -> str:
        return (f"{len(self.made)} sets made, {len(self.scored)} evaluations run, "
                f"{len(self.skipped)} steps already stored")


def select_cells(suite: Suite, only: list[str] | None = None, skip: list[str] | None = None) -> list[Cell]:
    """Cells whose label matches any --only pattern and no --skip pattern (fnmatch, e.g. 'dm*')."""
    cells = [c for c in suite.cells
             if (not only or any(fnmatch.fnmatchcase(c.label, p) for p in only))
             and not any(fnmatch.fnmatchcase(c.label, p) for p in (skip or []))]
    if not cells:
        raise ConfigError(f"no cell of {suite.name} matches --only/--skip; labels: "
                          f"{', '.join(sorted({c.label for c in suite.cells}))}")
    return cells


def display_path(path: Path) -> str:
    """Relative to the working directory (the repository root for the shipped suites) when inside it."""
    relative = os.path.relpath(path)
    return str(path.resolve()) if relative.startswith("..") else relative


def _describe(cell: Cell) -> str:
    budget = ""
    if cell.kind == "synthesis":
        budget = f" ({cell.iterations} it)" if cell.iterations else f" ({cell.minutes} min)"
    return f"{cell.dataset} {cell.label} IPC {cell.ipc or 'all'} seed {cell.seed}{budget}"


def plan(suite: Suite, store: Store, cells: list[Cell]) -> list[str]:
    """One line per step: stored or to run (for --dry-run)."""
    lines = []
    for cell in cells:
        rec = store.get("distill", cell.key)
        lines.append(f"{'stored' if rec else 'to run':<7} make  {_describe(cell)}")
        for name in cell.protocols:
            done = rec is not None and store.has("eval", eval_key(rec["set_sha256"], get_protocol(name).hash))
            lines.append(f"{'stored' if done else 'to run':<7} score {_describe(cell)} under {name}")
    return lines


class Runner:
    def __init__(self, suite: Suite, store: Store, *, device: str | torch.device = "auto",
                 data_root: str | None = None, command: str = "", log: Callable[[str], None] = print) -> None:
        self.suite, self.store, self.data_root, self.command, self.log = suite, store, data_root, command, log
        self.device = resolve_device(device)
        self._data: dict[str, RealData] = {}

    def real(self, dataset: str) -> RealData:
        if dataset not in self._data:
            self._data[dataset] = load_dataset(dataset, self.data_root, device=self.device)
        return self._data[dataset]

    def ensure(self, prerequisite: Prerequisite) -> None:
        if Path(prerequisite.creates).exists():
            return
        from ..cli import main   # late: the CLI imports this package
        self.log(f"prerequisite {prerequisite.name}: {prerequisite.command}")
        if main(prerequisite.argv()) != 0 or not Path(prerequisite.creates).exists():
            raise ConfigError(f"prerequisite {prerequisite.name!r} failed or did not create {prerequisite.creates}; "
                              f"run it by hand: {prerequisite.command}")

    def make(self, cell: Cell, summary: Summary) -> tuple[dict[str, Any], SyntheticSet | None]:
        """The cell's distillation record, making (or resuming) the set when the store lacks it."""
        record = self.store.get("distill", cell.key)
        if record is not None:
            summary.skipped.append(f"make {cell.label} IPC {cell.ipc} seed {cell.seed}")
            return record, None
        for name in cell.requires:
            self.ensure(self.suite.prerequisites[name])
        real, method = self.real(cell.dataset), cell.build()
        path = self.store.set_file(cell.dataset, cell.file_stem())
        ckpt = Path(f"{path}.ckpt")
        kwargs: dict[str, Any] = {}
        if cell.kind == "synthesis":
            kwargs = {"budget": cell.budget(), "checkpoint": ckpt, "resume": ckpt.exists()}
            if ckpt.exists():
                self.log(f"resuming {cell.label} IPC {cell.ipc} seed {cell.seed} from {display_path(ckpt)}")
        with measure(self.device) as usage:
            synset = method.fit(real, cell.ipc, seed=cell.seed, **kwargs)
        synset.extra.update(command=self.command, suite=self.suite.name, label=cell.label)
        whole = cell.kind == "whole"
        if not whole:      # the whole training set is the dataset itself: never copied into the store
            synset.save(path)
        record = {
            "kind": "distill", "key": cell.key, "recipe": cell.recipe(), "suite": self.suite.name,
            "label": cell.label, "method": synset.method, "spec": cell.method, "family": cell.kind,
            "dataset": cell.dataset, "ipc": cell.ipc, "seed": cell.seed, "method_config": synset.method_config,
            "budget": cell.recipe()["budget"], "set_sha256": synset.payload_sha256(),
            "set_path": f"whole:{cell.dataset}" if whole else display_path(path),
            "stored_images": len(synset.images), "distill_seconds": synset.distill_seconds or usage.wall_seconds,
            "distill_iterations": synset.distill_iterations, "wall_seconds": usage.wall_seconds,
            "peak_memory_mib": usage.peak_memory_mib, "memory_kind": usage.memory_kind, "device": str(self.device),
            **provenance(self.command),
        }
        self.store.put(record)
        ckpt.unlink(missing_ok=True)
        summary.made.append(f"{cell.label} IPC {cell.ipc} seed {cell.seed}")
        return record, synset

    def load_set(self, record: dict[str, Any]) -> SyntheticSet:
        if record["family"] == "whole":
            from ..synthesizers import create_synthesizer
            synset = create_synthesizer("whole").fit(self.real(record["dataset"]))
        else:
            synset = SyntheticSet.load(record["set_path"])
        if synset.payload_sha256() != record["set_sha256"]:
            raise ConfigError(f"{record['set_path']} no longer matches its record (sha256 differs); "
                              f"delete {self.store.path('distill', record['key'])} to make it again")
        return synset

    def score(self, cell: Cell, record: dict[str, Any], synset: SyntheticSet | None, summary: Summary) -> None:
        for name in cell.protocols:
            protocol = get_protocol(name)
            key = eval_key(record["set_sha256"], protocol.hash)
            if self.store.has("eval", key):
                summary.skipped.append(f"score {cell.label} IPC {cell.ipc} seed {cell.seed} under {name}")
                continue
            synset = synset or self.load_set(record)
            with measure(self.device) as usage:
                report = evaluate(synset, protocol, data=self.real(cell.dataset), device=self.device,
                                  set_path=record["set_path"])
            self.store.put({
                "kind": "eval", "key": key, "set_sha256": record["set_sha256"], "distill_key": record["key"],
                "protocol": protocol.name, "protocol_version": protocol.version, "protocol_hash": protocol.hash,
                "label_mode": protocol.label_mode, "dataset": cell.dataset, "label": cell.label,
                "method": record["method"], "family": record["family"], "ipc": cell.ipc, "seed": cell.seed,
                "report": report.to_json(), "wall_seconds": usage.wall_seconds,
                "peak_memory_mib": usage.peak_memory_mib, "memory_kind": usage.memory_kind,
                "device": str(self.device), **provenance(self.command),
            })
            r = report.results[0]
            self.log(f"{cell.label} IPC {cell.ipc or 'all'} seed {cell.seed} under {name}: "
                     f"{100 * r.mean:.2f} ± {100 * r.std:.2f}")
            summary.scored.append(f"{cell.label} IPC {cell.ipc} seed {cell.seed} under {name}")

    def run(self, cells: list[Cell]) -> Summary:
        summary = Summary()
        for cell in progress(cells, desc=f"suite {self.suite.name}", unit="cell"):
            record, synset = self.make(cell, summary)
            self.score(cell, record, synset, summary)
        return summary


def run_suite(suite: Suite, store: Store, *, only: list[str] | None = None, skip: list[str] | None = None,
              **kwargs: Any) -> Summary:
    return Runner(suite, store, **kwargs).run(select_cells(suite, only, skip))
