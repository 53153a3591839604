"""Benchmark suites: a TOML file -> a validated list of cells (method x dataset x IPC x seed x protocols).

A suite names its datasets, IPCs, seeds and protocols once; each `[[methods]]` entry may narrow them and
adds its own options (`set`), budget (`iterations` or `minutes`), FYI flip variants, ZCA whitening (`zca`),
the teacher of its soft-label scores (`teacher`) and prerequisites. The references (random, herding, k-center
and the whole training set) are added to every suite under the same protocols and seeds; a `[[methods]]` entry
naming one (without a label) configures it instead. Every mistake is found here, before anything runs, and said
in one line.

Soft-label protocols (kd) need targets: a method whose sets carry their own (CV-DD: stored logits or the
committee it names) brings them; every other set (random, DM, ...) is labelled online by `teacher`, a committee
folder (`dsdistill committee`), given per entry or once for the suite, as one folder or one per dataset. That
is how the references are scored under the same teacher and seeds as the soft-label method they are compared with.
`teacher_labels = "stored"` (suite or entry) has the teacher label each image once instead of every crop: the
cheap variant, for sets compared with CV-DD sets whose labels are stored too (`set = { relabel = "stored" }`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prerequisites import Build, parse_command
from ..errors import ConfigError
from ..evaluate import get_protocol
from ..synthesizers import Budget, Built, Method, build, resolve_method
from ..synthesizers.base import keyed_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REFERENCES = ("random", "herding", "k-center", "whole")
"""Selection references every suite runs beside its methods, under the same protocols and seeds."""

SUITE_KEYS = {"name", "description", "datasets", "ipcs", "seeds", "protocols", "references", "methods",
              "prerequisites", "teacher", "teacher_labels"}
METHOD_KEYS = {"method", "label", "flip", "zca", "set", "iterations", "minutes", "datasets", "ipcs", "seeds",
               "protocols", "requires", "teacher", "teacher_labels"}
TEACHER_LABELS = ("online", "stored")
"""How `teacher` labels a set under kd: every crop online (CV-DD's FKD labels), or one stored logit vector per
image computed once (eval-mode BN; `dsdistill relabel --mode stored`), about 10x cheaper to score."""
PREREQUISITE_KEYS = {"name", "command", "creates"}


@dataclass(frozen=True)
class Prerequisite:
    """A dsdistill command that must have run before some cells (e.g. `dsdistill pool` for NCFM)."""
    name: str
    command: str          # a dsdistill command line, built in-process (as a library call) when `creates` is missing
    creates: str          # the path whose existence says it has run
    build: Build | None = field(default=None, compare=False)  # the command parsed (dsdistill.bench.prerequisites)

    def __post_init__(self) -> None:
        if self.build is None:
            object.__setattr__(self, "build", parse_command(self.command))


@dataclass(frozen=True)
class Cell:
    """One set to make and the protocols to score it under."""
    dataset: str
    label: str                            # the row name in the leaderboard
    method: str                           # METHOD[.PRESET]
    options: tuple[tuple[str, Any], ...]  # config values beyond the preset
    ipc: int                              # 0 for the whole training set
    seed: int
    protocols: tuple[str, ...]
    iterations: int | None = None         # budget of a synthesizer (None for selections, and for a method that
    minutes: float | None = None          # plans its own length when neither is given: cvdd)
    requires: tuple[str, ...] = ()
    zca: bool = False                     # made and scored in ZCA-whitened space (load_dataset(zca=True))
    teacher: str | None = None            # committee folder labelling this set under soft-label protocols
                                          # (None: no soft-label protocol, or the method's sets carry their own)
    teacher_labels: str = "online"        # how the teacher labels: online per crop, or stored once (TEACHER_LABELS)

    def built(self) -> Built:
        """The method and its budget, through the one factory."""
        return build(self.method, dict(self.options), iterations=self.iterations, minutes=self.minutes)

    def build(self) -> Method:
        return self.built().method

    @property
    def kind(self) -> str:
        """The method's kind, which is its records' family: synthesis, selection or whole."""
        return resolve_method(self.method)[0].kind

    def budget(self) -> Budget | None:
        """None for selections and for a method's own schedule (cvdd: iterations_per_ipc x IPC)."""
        return self.built().budget

    def recipe(self) -> dict[str, Any]:
        """Everything that decides the set's bytes; its hash is the distillation record's key."""
        method = self.build()
        return recipe(self.dataset, method.name, dataclasses.asdict(method.config), self.ipc, self.seed,
                      None if self.kind != "synthesis" else {"iterations": self.iterations, "minutes": self.minutes},
                      zca=self.zca)

    @property
    def key(self) -> str:
        return recipe_key(self.recipe())

    def file_stem(self) -> str:
        """A readable, unique file name for the set."""
        safe = re.sub(r"[^A-Za-z0-9._+=-]", "_", self.label)
        return f"{safe}-ipc{self.ipc}-seed{self.seed}-{self.key[:8]}"


def recipe(dataset: str, method: str, config: dict[str, Any], ipc: int, seed: int,
           budget: dict[str, Any] | None, zca: bool = False) -> dict[str, Any]:
    """The distillation recipe: how often a run checkpoints or logs is not part of it. ZCA whitening enters only
    when on, so the keys of every record made before it existed stay valid."""
    config = keyed_config(config)
    r = {"dataset": dataset, "method": method, "config": config, "ipc": ipc, "seed": seed, "budget": budget}
    return {**r, "zca": True} if zca else r


def recipe_key(r: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cells: tuple[Cell, ...]
    prerequisites: dict[str, Prerequisite]
    path: str = ""

    def builds(self, folder: str) -> list[Prerequisite]:
        """The prerequisites that build `folder` (e.g. the committee a teacher names): what they create lies in it."""
        target = Path(os.path.normpath(folder))
        return [p for p in self.prerequisites.values()
                if Path(os.path.normpath(p.creates)) == target or target in Path(os.path.normpath(p.creates)).parents]


def _unknown(table: dict[str, Any], valid: set[str], where: str) -> None:
    unknown = sorted(set(table) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")


def _list(value: Any, kind: type, key: str, where: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, kind) and not (kind is int and isinstance(v, bool)) for v in values):
        raise ConfigError(f"{where}: {key} must be a non-empty list of {kind.__name__}, got {value!r}")
    return values


def _teachers(spec: Any, datasets: list[str], where: str) -> dict[str, str]:
    """`teacher = "DIR"` or `teacher = { cifar10 = "DIR", ... }` -> the committee folder of each dataset."""
    if isinstance(spec, str) and spec:
        return {d: spec for d in datasets}
    if isinstance(spec, dict) and spec and all(isinstance(v, str) and v for v in spec.values()):
        missing = [d for d in datasets if d not in spec]
        if missing:
            raise ConfigError(f"{where}: teacher names no committee for {', '.join(missing)}; give one per dataset, "
                              f"e.g. teacher = {{ {missing[0]} = \"runs/committee-{missing[0]}\" }}")
        return {d: spec[d] for d in datasets}
    raise ConfigError(f"{where}: teacher must be a committee folder, teacher = \"DIR\", or one per dataset, "
                      f"teacher = {{ fashion-mnist = \"DIR\" }}; got {spec!r}")


def _entry_teachers(entry: dict[str, Any], cls: type, spec: str, protocols: tuple[str, ...], datasets: list[str],
                    default: Any, where: str) -> dict[str, str | None]:
    """Which committee labels the entry's sets online under its soft-label protocols, per dataset (None: none
    needed). A method whose sets carry their own soft labels keeps them; every other needs a teacher."""
    soft = [p for p in protocols if get_protocol(p).label_mode == "soft"]
    own = getattr(cls, "soft_labels", False)
    given = entry.get("teacher")
    if given is not None and not soft:
        raise ConfigError(f"{where}: teacher labels soft-label protocols only, and this entry's protocols "
                          f"({', '.join(protocols)}) are hard-label: add one (protocols = [\"dc\", \"kd\"]) or drop "
                          "teacher")
    if given is not None and own:
        raise ConfigError(f"{where}: {cls.name}'s sets carry their own soft labels (the committee they were made with), "
                          "so teacher does not apply to them; drop it")
    if not soft or own:
        return {d: None for d in datasets}
    if given is None and default is None:
        raise ConfigError(f"{where}: {spec} makes sets without soft labels, so protocol {soft[0]} needs a teacher: "
                          "teacher = \"DIR\" (a committee folder from `dsdistill committee`), in this entry or for "
                          "the whole suite")
    return dict(_teachers(given if given is not None else default, datasets, where))


def _build(spec: str, values: dict[str, Any], entry: dict[str, Any], where: str) -> Built:
    """The entry's method through the factory; a suite names every synthesizer's budget (or takes its preset's, or
    the method's own schedule), since the budget is part of each record's key and a default would move it."""
    try:
        built = build(spec, values, iterations=entry.get("iterations"), minutes=entry.get("minutes"))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if built.source == "the default":
        raise ConfigError(f"{where}: give a budget: iterations = N or minutes = M")
    return built


def _entry_cells(entry: dict[str, Any], defaults: dict[str, Any], where: str,
                 prerequisites: dict[str, Prerequisite]) -> list[Cell]:
    _unknown(entry, METHOD_KEYS, where)
    spec = entry.get("method")
    if not isinstance(spec, str):
        raise ConfigError(f"{where}: give the method, e.g. method = \"dm.fmnist-cpu\"")
    where = f"{where} ({spec})"
    cls = resolve_method(spec)[0]
    options = entry.get("set", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: set must be a table, e.g. set = {{ batch_real = 64 }}")
    flips = _list(entry.get("flip", False), bool, "flip", where)
    zca = entry.get("zca", False)
    if not isinstance(zca, bool):
        raise ConfigError(f"{where}: zca must be true or false, got {zca!r}")
    builts = {flip: _build(spec, {**options, **({"flip": True} if flip else {})}, entry, where) for flip in flips}
    requires = tuple(_list(entry["requires"], str, "requires", where)) if "requires" in entry else ()
    for name in requires:
        if name not in prerequisites:
            raise ConfigError(f"{where}: requires {name!r}, which no [[prerequisites]] entry names; "
                              f"known: {', '.join(prerequisites) or 'none'}")
    datasets = _list(entry.get("datasets", defaults["datasets"]), str, "datasets", where)
    whole = cls.kind == "whole"   # the whole training set: no IPC, and no seed changes it
    ipcs = [0] if whole else _list(entry.get("ipcs", defaults["ipcs"]), int, "ipcs", where)
    if not whole and any(i < 1 for i in ipcs):
        raise ConfigError(f"{where}: ipcs must be positive, got {ipcs}")
    seeds = [0] if whole else _list(entry.get("seeds", defaults["seeds"]), int, "seeds", where)
    if any(s < 0 for s in seeds):
        raise ConfigError(f"{where}: seeds must be non-negative, got {seeds}")
    protocols = tuple(_list(entry.get("protocols", defaults["protocols"]), str, "protocols", where))
    for p in protocols:
        get_protocol(p)
    teachers = _entry_teachers(entry, cls, spec, protocols, datasets, defaults.get("teacher"), where)
    teacher_labels = entry.get("teacher_labels", defaults.get("teacher_labels") or "online")
    if teacher_labels not in TEACHER_LABELS:
        raise ConfigError(f"{where}: teacher_labels must be one of {', '.join(TEACHER_LABELS)}, got {teacher_labels!r}")
    if "teacher_labels" in entry and not any(teachers.values()):     # a suite-wide default may go unused; this may not
        raise ConfigError(f"{where}: teacher_labels says how a teacher labels this entry's sets, and none does "
                          "(no soft-label protocol, or the sets carry their own soft labels); drop it")
    cells = []
    for flip in flips:
        values = {**options, **({"flip": True} if flip else {})}
        budget = builts[flip].budget
        label = entry.get("label") or spec
        if zca:
            label += "+zca"
        if flip:
            label += "+flip=true"
        for dataset in datasets:
            for ipc in ipcs:
                for seed in seeds:
                    cells.append(Cell(dataset=dataset, label=label, method=spec,
                                      options=tuple(sorted(values.items())), ipc=ipc, seed=seed,
                                      protocols=protocols, iterations=budget.iterations if budget else None,
                                      minutes=budget.minutes if budget else None, requires=requires, zca=zca,
                                      teacher=teachers[dataset],
                                      teacher_labels=teacher_labels if teachers[dataset] else "online"))
    return cells


def parse_suite(text: str, path: str = "<suite>") -> Suite:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    _unknown(raw, SUITE_KEYS, path)
    name = raw.get("name") or Path(path).stem
    defaults = {"datasets": raw.get("datasets", ["fashion-mnist"]), "ipcs": raw.get("ipcs"),
                "seeds": raw.get("seeds", [0]), "protocols": raw.get("protocols", ["dc"]),
                "teacher": raw.get("teacher"), "teacher_labels": raw.get("teacher_labels")}
    if defaults["ipcs"] is None:
        raise ConfigError(f"{path}: give the IPCs, e.g. ipcs = [1, 10]")
    prerequisites: dict[str, Prerequisite] = {}
    listed = raw.get("prerequisites", [])
    if not isinstance(listed, list) or not all(isinstance(p, dict) for p in listed):
        raise ConfigError(f"{path}: prerequisites must be [[prerequisites]] tables (name, command, creates), got "
                          f"{listed!r}; a method names the ones it needs with requires = [\"NAME\"]")
    for i, p in enumerate(listed):
        where = f"{path}: prerequisites[{i}]"
        _unknown(p, PREREQUISITE_KEYS, where)
        missing = [k for k in sorted(PREREQUISITE_KEYS) if not isinstance(p.get(k), str) or not p.get(k)]
        if missing:
            raise ConfigError(f"{where}: give {', '.join(missing)} (name, the dsdistill command, the path it creates)")
        try:
            prerequisites[p["name"]] = Prerequisite(p["name"], p["command"], p["creates"])
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    references = _list(raw.get("references", list(REFERENCES)), str, "references", path)
    methods = raw.get("methods", [])
    if not isinstance(methods, list):
        raise ConfigError(f"{path}: methods must be a list of [[methods]] tables, got {methods!r}")
    configured = {m.get("method") for m in methods if isinstance(m, dict) and "label" not in m}
    references = [r for r in references if r not in configured]   # a [[methods]] entry may configure one
    entries = [{"method": r} for r in references] + methods
    cells: list[Cell] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: methods[{i}] must be a table")
        where = f"{path}: reference {entry['method']}" if i < len(references) else \
            f"{path}: methods[{i - len(references)}]"
        cells += _entry_cells(entry, defaults, where, prerequisites)
    seen: dict[tuple, Cell] = {}
    for cell in cells:
        slot = (cell.dataset, cell.label, cell.ipc, cell.seed)
        if slot in seen and seen[slot] != cell:
            raise ConfigError(f"{path}: two entries make {cell.label} at IPC {cell.ipc}, seed {cell.seed}; "
                              "give them distinct labels (label = \"...\")")
        seen[slot] = cell
    if raw.get("teacher") is not None and not any(c.teacher for c in seen.values()):
        raise ConfigError(f"{path}: teacher is given but no entry is scored under a soft-label protocol (kd) with "
                          "it; add \"kd\" to protocols or drop teacher")
    return Suite(name=name, description=raw.get("description", ""), cells=tuple(seen.values()),
                 prerequisites=prerequisites, path=path)


def load_suite(path: str | Path) -> Suite:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no suite file {p}; suites live in benchmarks/suites/*.toml")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text (byte {err.start}); TOML files are UTF-8: save it as UTF-8") from None
    return parse_suite(text, str(p))
