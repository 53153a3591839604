"""Checks of the benchmark data, not of the code: the shipped suites cover every registered method (with and without
FYI's flip at IPC 1 and 10 in the CPU suite), name the presets the README's findings use, and build every folder a
cell reads with a prerequisite it requires. A new method fails here until it has its suite lines."""
import shlex
from pathlib import Path

from dsdistill.bench import load_suite
from dsdistill.synthesizers import SYNTHESIZERS

REPO = Path(__file__).resolve().parent.parent


def _option(command: str, flag: str) -> str | None:
    parts = shlex.split(command)
    return parts[parts.index(flag) + 1] if flag in parts else None


def _check_prerequisites(suite):
    """Each cell's folders are made by the prerequisite it requires: experts long enough for the preset's start
    epochs, in the cell's space (ZCA or not); the committee a CV-DD cell votes with is the selections' teacher."""
    by_folder = {_option(p.command, "--out"): p for p in suite.prerequisites.values()}
    for cell in suite.cells:
        config = cell.build().config
        for folder in (getattr(config, "experts", ""), getattr(config, "pool", ""), getattr(config, "committee", "")):
            if folder:
                assert by_folder[folder].name in cell.requires, (cell.label, folder)
                assert _option(by_folder[folder].command, "--dataset") == cell.dataset, (cell.label, folder)
        if getattr(config, "experts", ""):
            command = by_folder[config.experts].command
            assert int(_option(command, "--epochs")) >= config.max_start_epoch - 1 + config.expert_epochs, cell.label
            assert ("--zca" in shlex.split(command)) == cell.zca, cell.label
        if cell.teacher:
            assert suite.builds(cell.teacher), cell.label


def _check_soft_labels(suite):
    """CV-DD's sets (their own soft labels) and the selections (labelled by the same committee) share kd and seeds."""
    for dataset in {c.dataset for c in suite.cells}:
        cvdd = [c for c in suite.cells if c.dataset == dataset and c.build().name == "cvdd"]
        selections = [c for c in suite.cells if c.dataset == dataset and c.kind == "selection"]
        assert cvdd and all("kd" in c.protocols and "dc" in c.protocols and c.teacher is None for c in cvdd)
        assert {c.build().config.committee for c in cvdd} == {c.teacher for c in selections}, dataset
        assert {c.build().name for c in selections} == {"random", "herding", "k-center"}
        assert all("kd" in c.protocols for c in selections)
        assert {(c.ipc, c.seed) for c in cvdd} == {(c.ipc, c.seed) for c in selections}, dataset


def test_shipped_suites_cover_the_registry():
    cpu = load_suite(REPO / "benchmarks/suites/fmnist-cpu.toml")
    registered = set(SYNTHESIZERS.list())
    assert {c.build().name for c in cpu.cells} == registered
    for name, cls in SYNTHESIZERS.items():
        if cls.kind != "synthesis":
            continue
        for flip in (False, True):
            ipcs = {c.ipc for c in cpu.cells if c.build().name == name and dict(c.options).get("flip", False) == flip}
            assert ipcs == {1, 10}, (name, flip)
    assert all("dc" in c.protocols for c in cpu.cells)
    assert {p for c in cpu.cells for p in c.protocols} == {"dc", "kd"}
    mtt = [c for c in cpu.cells if c.build().name == "mtt"]
    # IPC 1 takes MTT's IPC 1 row, IPC 10 the first CPU preset (README, MTT findings); one experts folder for both
    assert {(c.method, c.ipc) for c in mtt} == {("mtt.fmnist-cpu-ipc1", 1), ("mtt.fmnist-cpu", 10)}
    assert {c.build().config.experts for c in mtt} == {"runs/experts-fmnist"}
    assert cpu.prerequisites["fmnist-experts"].command == \
        "dsdistill experts --dataset fashion-mnist --experts 3 --epochs 11 --out runs/experts-fmnist"
    assert {c.method for c in cpu.cells if c.build().name == "cvdd"} == {"cvdd.fmnist-cpu", "cvdd.single-fmnist-cpu"}
    paper = load_suite(REPO / "benchmarks/suites/paper.toml")
    assert {c.dataset for c in paper.cells} == {"fashion-mnist", "mnist", "cifar10"}
    assert {c.ipc for c in paper.cells if c.kind != "whole"} == {1, 10, 50}
    assert {c.build().name for c in paper.cells} == registered
    published = {c.method: c for c in paper.cells if c.method.startswith("mtt.cifar10-")}
    assert {m: (c.ipc, c.zca) for m, c in published.items()} == \
        {"mtt.cifar10-ipc1": (1, True), "mtt.cifar10-ipc10": (10, True), "mtt.cifar10-ipc50": (50, False)}
    assert {c.build().config.width for c in paper.cells if c.build().name == "mtt"} == {None}   # the experts' own
    assert all("width=128" in p.command for p in paper.prerequisites.values() if p.command.startswith("dsdistill experts"))
    for suite in (cpu, paper):
        _check_prerequisites(suite)
        _check_soft_labels(suite)
