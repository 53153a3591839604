"""Run a suite through the public API: make each cell's set (or find it in the store), score it under
each protocol (or find the score), and write one record per completed step.

A rerun skips every stored step. An interrupted distillation resumes from the synthesizer's checkpoint
(next to the set file); an interrupted evaluation resumes at the model it was training (Store.partial). Nothing
is recorded before it is complete.

Under torchrun (`world` sharded) every rank walks the same cells: a distillation splits its classes across the
ranks (Synthesizer.fit(world=)), an evaluation its (architecture x seed) models (evaluate(world=)). Rank 0 alone
reads the store, decides what is stored, makes the selections, and writes sets and records; it broadcasts each
decision and set, so the ranks never disagree about what runs next (a record rank 0 has just written could
otherwise be seen by one rank and not by another). What cannot be split is refused before anything runs: a
method or configuration that couples its classes, soft-label protocols, a prerequisite not yet made.

Under a soft-label protocol a set is scored with its own soft labels when it carries them (CV-DD) and otherwise
labelled by its cell's teacher (a committee folder), online or, with `teacher_labels = "stored"`, once per image
(the set is relabelled in memory, dsdistill.teachers.relabel); the teacher's identity (members by sha256, ensemble
weights, and "stored" when it labels once) is part of the evaluation's store key (Labels).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .._text import count
from .._device import resolve_device
from .._progress import progress
from ..data import RealData, load_dataset
from .._distributed import World, init_world, is_main_process
from ..errors import CheckpointError, ConfigError, DsdistillError
from ..evaluate import Protocol, evaluate, get_protocol
from ..evaluate.soft import load_protocol_teacher, load_stored_teacher, prior_temperature
from ..teachers.committee import KIND as COMMITTEE, committee_command, read_manifest as read_committee
from ..teachers.folder import build_finished, finished_entries
from ..teachers.relabel import relabel
from ..synset import SyntheticSet
from ..synthesizers import Interrupted, create_synthesizer
from ..synthesizers.factory import checkpoint_for
from ..teachers.ensemble import Teacher, prior_weights
from .prerequisites import build_prerequisite
from .store import Store, Usage, eval_key, measure, open_store, provenance, set_labels, teacher_identity, teacher_key
from .suite import Cell, Prerequisite, Suite, load_suite


@dataclass
class Summary:
    made: list[str] = field(default_factory=list)       # distillations/selections run now
    scored: list[str] = field(default_factory=list)     # evaluations run now
    skipped: list[str] = field(default_factory=list)    # steps found in the store
    suite: str = ""                                      # the suite's name (bench_suite)
    store: str = ""                                      # the store's folder (bench_suite)

    def line(self) -> str:
        return (f"{count(len(self.made), 'set')} made, {count(len(self.scored), 'evaluation')} run, "
                f"{count(len(self.skipped), 'step')} already stored")


def select_cells(suite: Suite, only: list[str] | None = None, skip: list[str] | None = None,
                 ipcs: list[int] | None = None, make_only: bool = False) -> list[Cell]:
    """Cells whose label matches any --only pattern and no --skip pattern (fnmatch, e.g. 'dm*'), at the --ipc
    values when given. With make_only a cell keeps its recipe (so its key) but no protocol: the set is made
    and recorded, nothing is scored (a GPU makes the sets, a cheaper machine scores them later)."""
    cells = [c for c in suite.cells
             if (not only or any(fnmatch.fnmatchcase(c.label, p) for p in only))
             and not any(fnmatch.fnmatchcase(c.label, p) for p in (skip or []))
             and (not ipcs or c.ipc in ipcs)]
    if not cells:
        raise ConfigError(f"no cell of {suite.name} matches --only/--skip/--ipc; labels: "
                          f"{', '.join(sorted({c.label for c in suite.cells}))}; IPCs: "
                          f"{', '.join(str(i) for i in sorted({c.ipc for c in suite.cells if c.ipc}))}")
    return [replace(c, protocols=(), teacher=None) for c in cells] if make_only else cells


@dataclass(frozen=True)
class Labels:
    """Where one evaluation's targets come from, and the teacher part of its store key."""
    source: str                              # "hard", "stored" (in the set), "set" (the teacher the set names),
                                             # "given" (the cell's teacher, passed to evaluate), "given-stored"
                                             # (the cell's teacher, stored into the set before evaluate)
    folder: str = ""                         # the committee folder (set, given)
    identity: dict[str, Any] | None = None   # store.teacher_identity of an online teacher (set, given)

    @property
    def key(self) -> str | None:
        return None if self.identity is None else teacher_key(self.identity)

    def record(self) -> dict[str, Any] | None:
        """What the evaluation record says about its teacher."""
        if self.identity is None:
            return None
        return {**self.identity, "path": self.folder, "source": self.source, "key": self.key}


def committee_identity(folder: str, protocol: Protocol, dataset: str) -> dict[str, Any]:
    """The teacher `evaluate(teacher=folder)` builds (dsdistill.teachers.committee.load_teacher), from the committee's
    manifest without loading a weight: every finished member by sha256 (load_committee checks each file against
    it), weighted softmax(prior / the protocol's prior temperature). CheckpointError when it is not built."""
    if Path(folder).is_file():
        raise ConfigError(f"teacher {folder} is one checkpoint; bench takes a committee folder (`dsdistill committee "
                          "--out DIR`), whose manifest names every member by sha256")
    hint = committee_command(dataset, "LIST", folder)
    entries = finished_entries(COMMITTEE, folder, read_committee(folder, hint), hint)
    weights = prior_weights([e["prior"] for e in entries], prior_temperature(protocol))
    return teacher_identity([{"name": e["name"], "sha256": e["sha256"]} for e in entries], weights.tolist())


def own_labels(record: dict[str, Any]) -> dict[str, Any]:
    """The soft labels a stored set carries itself (store.set_labels), from its record or, for a record written
    before records said so, from the set file."""
    if "soft_labels" in record:
        return {"soft_labels": record["soft_labels"], "teacher": record.get("teacher"),
                "teacher_path": record.get("teacher_path", "")}
    if record["family"] == "whole":
        return {"soft_labels": None, "teacher": None, "teacher_path": ""}
    return set_labels(SyntheticSet.load(record["set_path"]))


def labels_for(cell: Cell, record: dict[str, Any], protocol: Protocol) -> Labels:
    """The set's hard labels, its own soft labels, or its cell's teacher (the suite validated that one is given
    where needed)."""
    if protocol.label_mode != "soft":
        return Labels("hard")
    own = own_labels(record)
    if own["soft_labels"] == "stored":
        return Labels("stored")
    if own["teacher"] is not None:
        return Labels("set", own["teacher_path"], own["teacher"])
    if cell.teacher is None:
        raise ConfigError(f"{cell.label}'s set carries no soft labels; give its suite entry a teacher "
                          "(teacher = \"DIR\", a committee folder) to score it under a soft-label protocol")
    identity = committee_identity(cell.teacher, protocol, cell.dataset)
    if cell.teacher_labels == "stored":   # another target than online labels: a key of its own (online keys unchanged)
        return Labels("given-stored", cell.teacher, {**identity, "labels": "stored"})
    return Labels("given", cell.teacher, identity)


def stored_eval(store: Store, cell: Cell, record: dict[str, Any] | None, protocol: Protocol) -> bool:
    """Whether the store already holds this evaluation (False while its teacher is not built)."""
    if record is None:
        return False
    try:
        labels = labels_for(cell, record, protocol)
    except CheckpointError:
        return False
    return store.has("eval", eval_key(record["set_sha256"], protocol.hash, labels.key))


def display_path(path: Path) -> str:
    """Relative to the working directory (the repository root for the shipped suites) when inside it."""
    relative = os.path.relpath(path)
    return str(path.resolve()) if relative.startswith("..") else relative


def _describe(cell: Cell) -> str:
    budget = ""
    if cell.kind == "synthesis":
        budget = (f" ({cell.iterations} it)" if cell.iterations else f" ({cell.minutes} min)" if cell.minutes
                  else " (own schedule)")
    return f"{cell.dataset} {cell.label} IPC {cell.ipc or 'all'} seed {cell.seed}{budget}"


def plan(suite: Suite, store: Store, cells: list[Cell]) -> list[str]:
    """One line per step: stored or to run (for --dry-run)."""
    lines = []
    for cell in cells:
        rec = store.get("distill", cell.key)
        lines.append(f"{'stored' if rec else 'to run':<7} make  {_describe(cell)}")
        for name in cell.protocols:
            protocol = get_protocol(name)
            done = stored_eval(store, cell, rec, protocol)
            stored = ", stored labels" if cell.teacher_labels == "stored" else ""
            by = f" (teacher {cell.teacher}{stored})" if cell.teacher and protocol.label_mode == "soft" else ""
            lines.append(f"{'stored' if done else 'to run':<7} score {_describe(cell)} under {name}{by}")
    return lines


class Runner:
    def __init__(self, suite: Suite, store: Store, *, device: str | torch.device = "auto",
                 data_root: str | None = None, command: str = "", log: Callable[[str], None] = print,
                 world: World | None = None) -> None:
        self.world = world or World()
        self.suite, self.store, self.data_root, self.command = suite, store, data_root, command
        self.log = log if self.world.is_main else (lambda line: None)
        self.device = self.world.device if self.world.sharded else resolve_device(device)
        self._data: dict[tuple[str, bool], RealData] = {}

    def real(self, dataset: str, zca: bool = False) -> RealData:
        """The dataset as a cell makes and scores its set: normalised, or ZCA-whitened (fit on train)."""
        if (dataset, zca) not in self._data:
            self._data[dataset, zca] = load_dataset(dataset, self.data_root, zca=zca, device=self.device)
        return self._data[dataset, zca]

    def shard(self, dataset: str, zca: bool = False) -> RealData:
        """The classes this rank distills (all of them in one process); evaluation needs the whole test split
        and selections the whole train split, so each rank holds the dataset once and keeps its block."""
        real = self.real(dataset, zca)
        return real if not self.world.sharded else real.subset(list(self.world.block(real.num_classes)))

    def from_main(self, read: Callable[[], Any], what: str) -> Any:
        """What rank 0 reads or decides, on every rank."""
        return self.world.broadcast(read() if self.world.is_main else None, what)

    def _device_name(self) -> str:
        world = self.world
        return str(self.device) if not world.sharded else f"{self.device.type} x{world.size} processes ({world.backend})"

    def _peak(self, usage: Usage) -> tuple[float | None, str | None]:
        """The largest process's peak memory (every rank holds a share of the work and the whole dataset)."""
        peaks = self.world.all_gather(usage.peak_memory_mib, "gathering the peak memory")
        known = [p for p in peaks if p is not None]
        return (max(known) if known else None), usage.memory_kind

    def check(self, cells: list[Cell]) -> None:
        """Under torchrun: refuse, before any work, what the ranks cannot split. Each rank checks alone (no
        collective): the store is read before anyone writes, so every rank sees the same."""
        if not self.world.sharded:
            return
        problems, missing = [], set()
        for cell in cells:
            stored = self.store.get("distill", cell.key)
            if stored is None and cell.kind == "synthesis":
                problem = cell.build().shard_problem(self.shard(cell.dataset, cell.zca))
                if problem:
                    problems.append(f"{cell.label} (IPC {cell.ipc}): {problem}")
                missing |= {name for name in cell.requires if not build_finished(self.suite.prerequisites[name].creates)}
            for name in cell.protocols:
                protocol = get_protocol(name)
                if protocol.label_mode == "soft" and not stored_eval(self.store, cell, stored, protocol):
                    problems.append(f"{cell.label} (IPC {cell.ipc}) under {name}: soft-label protocols are not split "
                                    "across processes yet")
        for name in sorted(missing):
            problems.append(f"prerequisite {name!r} has not run (it does not split its work): run "
                            f"`{self.suite.prerequisites[name].command}` first, in one process")
        if problems:
            raise ConfigError(f"under torchrun ({self.world.size} processes) {len(problems)} step(s) of this suite "
                              f"cannot be split: {'; '.join(dict.fromkeys(problems))}. Leave them out with --skip "
                              "LABEL (or --only) and run them in one process, without torchrun")

    def check_teachers(self, cells: list[Cell]) -> None:
        """Before any work: every teacher folder exists or a prerequisite builds it (its manifest says which
        members label, so without it not even a stored score can be found)."""
        missing = sorted({c.teacher for c in cells if c.teacher and not Path(c.teacher).exists()
                          and not self.suite.builds(c.teacher)})
        if missing:
            raise ConfigError(f"no committee at {', '.join(missing)}, and no [[prerequisites]] entry builds it: add one "
                              f"(command = \"dsdistill committee --dataset NAME --out {missing[0]}\", creates = "
                              f"\"{missing[0]}/committee.json\") or build it first")

    def ensure(self, prerequisite: Prerequisite) -> None:
        """Run (or resume) a prerequisite unless what it creates is whole (a stopped committee, pool or experts
        build leaves a manifest of its finished models, which says it is not complete)."""
        if build_finished(prerequisite.creates):
            return
        self.log(f"prerequisite {prerequisite.name}: {prerequisite.command}")
        try:
            build_prerequisite(prerequisite.build, prerequisite.command, data_root=self.data_root, device=self.device)
        except DsdistillError as err:
            raise ConfigError(f"prerequisite {prerequisite.name!r} failed ({err}); run it by hand: "
                              f"{prerequisite.command}") from None
        if not build_finished(prerequisite.creates):
            raise ConfigError(f"prerequisite {prerequisite.name!r} did not create {prerequisite.creates}; run it by "
                              f"hand: {prerequisite.command}")

    def make(self, cell: Cell, summary: Summary) -> tuple[dict[str, Any], SyntheticSet | None]:
        """The cell's distillation record, making (or resuming) the set when the store lacks it."""
        world = self.world
        record = self.from_main(lambda: self.store.get("distill", cell.key), "reading the store")
        if record is not None:
            summary.skipped.append(f"make {cell.label} IPC {cell.ipc} seed {cell.seed}")
            return record, None
        for name in cell.requires:
            self.ensure(self.suite.prerequisites[name])  # under torchrun check() found them made
        method = cell.build()
        path = self.store.set_file(cell.dataset, cell.file_stem())
        ckpt = checkpoint_for(path)
        mine = world.checkpoint_path(ckpt)  # OUT.ckpt, or one per rank under torchrun
        kwargs: dict[str, Any] = {}
        if cell.kind == "synthesis":
            resume = all(world.all_gather(mine.exists(), "comparing the ranks' checkpoints"))
            kwargs = {"budget": cell.budget(), "checkpoint": ckpt, "resume": resume, "world": world}
            if resume:
                self.log(f"resuming {cell.label} IPC {cell.ipc} seed {cell.seed} from {display_path(ckpt)}"
                         + (f" ({world.size} rank checkpoints)" if world.sharded else ""))
        with measure(self.device) as usage:
            if cell.kind == "synthesis":
                synset = method.fit(self.shard(cell.dataset, cell.zca), cell.ipc, seed=cell.seed, **kwargs)
            elif cell.kind == "whole" or world.is_main:  # whole: the data itself, on every rank
                synset = method.fit(self.real(cell.dataset, cell.zca), cell.ipc, seed=cell.seed)
            else:
                synset = None
            if cell.kind != "whole":
                synset = self.from_main(lambda: synset, "sharing the set")
        peak, memory_kind = self._peak(usage)
        summary.made.append(f"{cell.label} IPC {cell.ipc} seed {cell.seed}")
        synset.extra.update(command=self.command, suite=self.suite.name, label=cell.label)
        whole = cell.kind == "whole"
        record = {
            "kind": "distill", "key": cell.key, "recipe": cell.recipe(), "suite": self.suite.name,
            "label": cell.label, "method": synset.method, "spec": cell.method, "family": cell.kind,
            "dataset": cell.dataset, "ipc": cell.ipc, "seed": cell.seed, "zca": cell.zca,
            **set_labels(synset), "method_config": synset.method_config,
            "budget": cell.recipe()["budget"], "set_sha256": synset.payload_sha256(),
            "set_path": f"whole:{cell.dataset}" if whole else display_path(path),
            "stored_images": len(synset.images), "distill_seconds": synset.distill_seconds or usage.wall_seconds,
            "distill_iterations": synset.distill_iterations, "wall_seconds": usage.wall_seconds,
            "peak_memory_mib": peak, "memory_kind": memory_kind, "device": self._device_name(),
            **provenance(self.command),
        }
        if world.is_main:
            if not whole:  # the whole training set is the dataset itself: never copied into the store
                synset.save(path)
            self.store.put(record)
        self.from_main(lambda: True, "recording the set")  # every rank keeps its checkpoint until the record exists
        for done in (mine, Path(f"{mine}.prev")):
            done.unlink(missing_ok=True)
        return record, synset

    def load_set(self, record: dict[str, Any]) -> SyntheticSet:
        """A stored set (read by rank 0 and shared); the whole training set is the data itself, on every rank."""
        if record["family"] == "whole":
            synset = create_synthesizer(record["method"]).fit(self.real(record["dataset"], bool(record.get("zca"))))
        else:
            synset = self.from_main(lambda: SyntheticSet.load(record["set_path"]), "sharing the stored set")
        if synset.payload_sha256() != record["set_sha256"]:
            raise ConfigError(f"{record['set_path']} no longer matches its record (sha256 differs); "
                              f"delete {self.store.path('distill', record['key'])} to make it again")
        return synset

    def labelled(self, synset: SyntheticSet, labels: Labels, protocol: Protocol,
                 data: RealData) -> tuple[SyntheticSet, Teacher | None]:
        """The set and the teacher evaluate gets: the cell's committee (loaded as evaluate would load it, checked
        against the identity in the key) labels online, or is stored into a copy of the set first."""
        if labels.source not in ("given", "given-stored"):
            return synset, None  # hard labels, or the set's own (evaluate finds them in the set)
        stored = labels.source == "given-stored"
        load = load_stored_teacher if stored else load_protocol_teacher
        teacher = load(labels.folder, data, self.device, protocol)
        loaded = teacher_identity([{"name": n, "sha256": h} for n, h in zip(teacher.names, teacher.sha256)],
                                  teacher.weights.tolist())
        if loaded != {k: v for k, v in (labels.identity or {}).items() if k != "labels"}:
            raise ConfigError(f"the committee at {labels.folder} changed while the suite ran (its members or priors "
                              "differ from its manifest); rerun the suite")
        if stored:
            return relabel(synset, teacher, "stored", prior_temperature(protocol)), None
        return synset, teacher

    def score(self, cell: Cell, record: dict[str, Any], synset: SyntheticSet | None, summary: Summary) -> None:
        for name in cell.protocols:
            protocol = get_protocol(name)
            if cell.teacher and protocol.label_mode == "soft":
                for prerequisite in self.suite.builds(cell.teacher):  # the committee, when the suite builds it
                    self.ensure(prerequisite)
            labels = labels_for(cell, record, protocol)  # soft-label protocols run in one process (check())
            key = eval_key(record["set_sha256"], protocol.hash, labels.key)
            if self.from_main(lambda: self.store.has("eval", key), "reading the store"):
                summary.skipped.append(f"score {cell.label} IPC {cell.ipc} seed {cell.seed} under {name}")
                continue
            synset = synset or self.load_set(record)
            data = self.real(cell.dataset, cell.zca)
            with measure(self.device) as usage:
                scored, teacher = self.labelled(synset, labels, protocol, data)
                report = evaluate(scored, protocol, data=data, device=self.device, set_path=record["set_path"],
                                  world=self.world, teacher=teacher, resume=self.store.partial(key))
            peak, memory_kind = self._peak(usage)
            summary.scored.append(f"{cell.label} IPC {cell.ipc} seed {cell.seed} under {name}")
            if not self.world.is_main:
                continue
            self.store.put({
                "kind": "eval", "key": key, "set_sha256": record["set_sha256"], "distill_key": record["key"],
                "protocol": protocol.name, "protocol_version": protocol.version, "protocol_hash": protocol.hash,
                "label_mode": protocol.label_mode, "labels": labels.source, "teacher": labels.record(),
                "teacher_key": labels.key, "dataset": cell.dataset, "zca": cell.zca, "label": cell.label,
                "method": record["method"], "family": record["family"], "ipc": cell.ipc, "seed": cell.seed,
                "report": report.to_json(), "wall_seconds": usage.wall_seconds,
                "peak_memory_mib": peak, "memory_kind": memory_kind,
                "device": self._device_name(), **provenance(self.command),
            })
            r = report.results[0]
            self.log(f"{cell.label} IPC {cell.ipc or 'all'} seed {cell.seed} under {name}: "
                     f"{100 * r.mean:.2f} ± {100 * r.std:.2f}")

    def run(self, cells: list[Cell]) -> Summary:
        self.check(cells)  # under torchrun soft-label scores are refused first, whatever their teacher
        self.check_teachers(cells)
        summary = Summary()
        for cell in progress(cells, desc=f"suite {self.suite.name}", unit="cell"):
            record, synset = self.make(cell, summary)
            self.score(cell, record, synset, summary)
        return summary


def run_suite(suite: Suite, store: Store, *, only: list[str] | None = None, skip: list[str] | None = None,
              ipcs: list[int] | None = None, make_only: bool = False, **kwargs: Any) -> Summary:
    return Runner(suite, store, **kwargs).run(select_cells(suite, only, skip, ipcs, make_only))


def _suite_file(path: str | Path | None) -> Suite:
    if not path:
        raise ConfigError("give a suite file, e.g. dsdistill bench benchmarks/suites/fmnist-cpu.toml")
    return load_suite(path)


def plan_suite(path: str | Path | None, store: str | Path | None = None, *, only: list[str] | None = None,
               skip: list[str] | None = None, ipcs: list[int] | None = None,
               make_only: bool = False) -> list[str] | None:
    """`dsdistill bench SUITE --dry-run`: plan() of the selected cells against the store (default
    DEFAULT_STORE); None on ranks other than 0 under torchrun (rank 0 alone prints)."""
    suite = _suite_file(path)
    if not is_main_process():
        return None
    return plan(suite, open_store(store), select_cells(suite, only, skip, ipcs, make_only))


def bench_suite(path: str | Path | None, store: str | Path | None = None, *, only: list[str] | None = None,
                skip: list[str] | None = None, ipcs: list[int] | None = None, make_only: bool = False,
                device: str | torch.device = "auto", data_root: str | None = None,
                command: str = "") -> Summary | None:
    """`dsdistill bench SUITE`: run_suite of a suite file into the store (default DEFAULT_STORE), under torchrun
    across the processes; the Summary on rank 0, None on the others. An interruption raises Interrupted saying
    which rank stopped; rerunning the same command resumes."""
    suite, target = _suite_file(path), open_store(store)
    stopped: Interrupted | None = None
    with init_world(device) as world:
        try:
            summary = run_suite(suite, target, only=only, skip=skip, ipcs=ipcs, make_only=make_only,
                                device=world.device, data_root=data_root, command=command, world=world)
        except Interrupted as stop:
            stopped = stop  # raised once the block has ended: every rank leaves the process group in step
    if stopped is not None:
        raise Interrupted(f"{world.describe()}: {stopped}" if world.sharded else str(stopped)) from None
    if not world.is_main:
        return None
    summary.suite, summary.store = suite.name, str(target.root)
    return summary
