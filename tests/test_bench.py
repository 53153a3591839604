"""The shared benchmark: suite validation, a tiny suite end to end (store, skip on rerun, resume,
nothing half-recorded), ZCA and soft-label (teacher) cells, the report's numbers and byte-for-byte
regeneration, imports, and the CLI."""
import csv
import dataclasses
import io
import re
import shlex
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ttest_ind

from dsdistill.bench import (DEFAULT_STORE, Store, adopt_folder, bench_suite, build_tables, import_folders,
                             import_reports, load_suite, open_store, parse_suite, plan, plan_suite, regenerate,
                             run_suite, score_whole, select_cells, verify_manifest, write_manifest, write_report)
from dsdistill.bench import runner as runner_module
from dsdistill.bench.plots import set_grids
from dsdistill.bench.report import leaderboard_md
from dsdistill.bench.tables import Row, Table, grid_name, mean_seconds, plot_name, welch
from dsdistill.bench.store import eval_key, teacher_identity, teacher_key
from dsdistill.cli import main
from dsdistill.data import load_dataset
from dsdistill.errors import ConfigError, DsdistillError
from dsdistill.evaluate import get_protocol
from dsdistill.evaluate.cache import cache_dir, whole_cache
from dsdistill.evaluate.protocols import KD, PROTOCOLS
from dsdistill.synset import SyntheticSet
from dsdistill.synthesizers import Interrupted, create_synthesizer
from dsdistill.synthesizers.dm import DM

REPO = Path(__file__).resolve().parent.parent
SMOKE = get_protocol("smoke")
ONE_RANDOM = """
name = "one"
ipcs = [1]
seeds = [0]
protocols = ["smoke"]
references = ["random"]
"""

TINY = """
name = "tiny"
ipcs = [1, 2]
seeds = [0, 1]
protocols = ["smoke"]

[[prerequisites]]
name = "init-set"
command = "dsdistill select --method random --ipc 1 --seed 3 --out {init} --data-root {root} --device cpu --quiet"
creates = "{init}"

[[methods]]
method = "herding"
set = {{ features = "random" }}

[[methods]]
method = "k-center"
set = {{ features = "random" }}

[[methods]]
method = "dm"
flip = [false, true]
seeds = [0]
iterations = 2
set = {{ width = 8, batch_real = 4, checkpoint_every = 1 }}

[[methods]]
method = "dm"
label = "dm-from-random"
ipcs = [1]
seeds = [0]
iterations = 2
set = {{ width = 8, batch_real = 4, init = "file:{init}" }}
requires = ["init-set"]
"""


def tiny_suite(tmp_path, root):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(init=tmp_path / "init.h5", root=root))
    return load_suite(path)


def store_files(store: Store) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a loaded 2-core machine torch's worker threads wait on
    each other at every op (measured: a 2-iteration DM cell took 26 s with 2 threads, 0.8 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory, fake_fmnist_root):
    """The tiny suite run once for the module (the tests below copy its store before changing it)."""
    tmp_path = tmp_path_factory.mktemp("suite")
    suite, store = tiny_suite(tmp_path, fake_fmnist_root), Store(tmp_path / "store")
    summary = run_suite(suite, store, device="cpu", data_root=fake_fmnist_root, command="test", log=lambda s: None)
    return suite, store, summary, tmp_path


@pytest.fixture
def ran(ran_once, tmp_path):
    suite, store, summary, where = ran_once
    shutil.copytree(store.root, tmp_path / "store")
    return suite, Store(tmp_path / "store"), summary, where


# ------------------------------------------------------------------ suites

@pytest.mark.parametrize("text,message", [
    ("ipcs = [1]\nbogus = 1", "unknown key(s) bogus"),
    ("protocols = ['dc']", "give the IPCs"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'nope'", "unknown method 'nope'"),
    ("ipcs = [1]\nprotocols = ['nope']", "unknown protocol 'nope'"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'dm.paper'\nspeed = 2", "unknown key(s) speed"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'dm'", "give a budget"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'herding'\nflip = true", "flip applies to synthesizers only"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'dm.paper'\nset = { lr_imgg = 1 }", "unknown option(s) lr_imgg"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'dm.paper'\nrequires = ['pool']", "requires 'pool'"),
    ("ipcs = [0]", "ipcs must be positive"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'dm.paper'\n[[methods]]\nmethod = 'dm.paper'\niterations = 5",
     "give them distinct labels"),
    ("ipcs = [1]\n[[prerequisites]]\nname = 'p'\ncommand = 'rm -rf /'\ncreates = 'x'", "must be a dsdistill command"),
    ("ipcs = [1", "not valid TOML"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'random'\nzca = 'yes'", "zca must be true or false"),
    ("ipcs = [1]\nprotocols = ['kd']", "random makes sets without soft labels, so protocol kd needs a teacher"),
    ("ipcs = [1]\n[[methods]]\nmethod = 'random'\nteacher = 'c'", "teacher labels soft-label protocols only"),
    ("ipcs = [1]\nprotocols = ['kd']\nteacher = 'c'\n[[methods]]\nmethod = 'cvdd'\nteacher = 'c'",
     "cvdd's sets carry their own soft labels"),
    ("ipcs = [1]\ndatasets = ['mnist', 'cifar10']\nprotocols = ['kd']\nteacher = { mnist = 'c' }",
     "teacher names no committee for cifar10"),
    ("ipcs = [1]\nprotocols = ['kd']\nteacher = 3", "teacher must be a committee folder"),
    ("ipcs = [1]\nteacher = 'c'", "no entry is scored under a soft-label protocol"),
])
def test_suite_mistakes_are_one_line_errors(text, message):
    with pytest.raises(DsdistillError) as err:
        parse_suite(text, "s.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_shipped_suite_loads():
    paths = sorted((REPO / "benchmarks/suites").glob("*.toml"))
    assert len(paths) >= 3 and all(load_suite(p).cells for p in paths)
    for name, labels in (("fmnist-cpu", "online"), ("fmnist-cvdd-online", "online"), ("fmnist-cvdd-stored", "stored")):
        kd = [c for c in load_suite(REPO / f"benchmarks/suites/{name}.toml").cells if "kd" in c.protocols]
        # every kd row of a suite has its labels made one way by one committee: the selections' and CV-DD's own
        assert kd and all(c.teacher_labels == labels for c in kd if c.teacher), name
        assert all(c.build().config.relabel == labels for c in kd if not c.teacher), name
        assert {c.teacher for c in kd if c.teacher} == {c.build().config.committee for c in kd if not c.teacher}


def test_zca_and_teacher_are_part_of_the_keys():
    plain = parse_suite("ipcs = [1]\nreferences = ['random']", "a.toml").cells[0]
    suite = parse_suite("""
ipcs = [1]
datasets = ["fashion-mnist", "mnist"]
protocols = ["dc", "kd"]
references = ["random"]
teacher = { fashion-mnist = "runs/c-f", mnist = "runs/c-m" }

[[prerequisites]]
name = "c-f"
command = "dsdistill committee --dataset fashion-mnist --out runs/c-f"
creates = "runs/c-f/committee.json"

[[methods]]
method = "random"
label = "random"
zca = true
protocols = ["dc"]

[[methods]]
method = "cvdd"
""", "b.toml")
    cells = {(c.label, c.dataset): c for c in suite.cells}
    random, whitened = cells["random", "fashion-mnist"], cells["random+zca", "fashion-mnist"]
    assert (random.teacher, cells["random", "mnist"].teacher) == ("runs/c-f", "runs/c-m")
    assert random.key == plain.key and "zca" not in random.recipe()    # old records keep their keys
    assert whitened.zca and whitened.recipe()["zca"] is True and whitened.key != random.key
    assert whitened.teacher is None                                    # scored under dc only
    cvdd = cells["cvdd", "fashion-mnist"]
    assert cvdd.teacher is None and cvdd.budget() is None              # its own labels, its own schedule
    assert [p.name for p in suite.builds("runs/c-f")] == ["c-f"] and suite.builds("runs/c-m") == []
    members = [{"name": "a", "sha256": "1" * 64}, {"name": "b", "sha256": "2" * 64}]
    one = teacher_key(teacher_identity(members, [0.6, 0.4]))
    other = teacher_key(teacher_identity([members[0], {"name": "b", "sha256": "3" * 64}], [0.6, 0.4]))
    weights = teacher_key(teacher_identity(members, [0.5, 0.5]))
    keys = {eval_key("f" * 64, "p" * 16), *(eval_key("f" * 64, "p" * 16, k) for k in (one, other, weights))}
    assert len(keys) == 4
    assert one == teacher_key(teacher_identity(members, [0.6 + 1e-9, 0.4]))   # one float32 softmax, twice


# ------------------------------------------------------------------ runner and store

def test_tiny_suite_end_to_end_then_a_rerun_skips_everything(ran, fake_fmnist_root):
    suite, store, summary, _ = ran
    assert len(summary.made) == len(suite.cells) == 3 * 2 * 2 + 1 + 2 * 2 + 1
    distills, evals = store.records("distill"), store.records("eval")
    assert len(distills) == len(suite.cells)
    # a set made by two recipes is scored once (herding and k-center agree at IPC 1: both start at the
    # image nearest the class mean)
    assert len(evals) == len({d["set_sha256"] for d in distills}) == len(summary.scored)
    assert len(summary.scored) + len(summary.skipped) == len(suite.cells)
    for d in distills:
        assert {"set_sha256", "method_config", "budget", "wall_seconds", "peak_memory_mib", "hardware",
                "dsdistill_version", "command", "created_utc"} <= d.keys()
        if d["family"] != "whole":
            assert Path(d["set_path"]).exists()
    assert not list(store.root.rglob("*.ckpt")) and not list(store.root.rglob("*.tmp"))
    for e in evals:
        assert e["key"] == f"{e['set_sha256'][:16]}-{e['protocol_hash']}" and e["protocol"] == "smoke"
    dm = next(d for d in distills if d["label"] == "dm+flip=true")
    assert dm["budget"] == {"iterations": 2, "minutes": None} and dm["method_config"]["flip"] is True
    before = store_files(store)
    again = run_suite(suite, store, device="cpu", data_root=fake_fmnist_root, log=lambda s: None)
    assert not again.made and not again.scored and len(again.skipped) == 2 * len(suite.cells)
    tables = build_tables(store)
    assert all(len(t.rows) == 6 - (t.ipc == 2) for t in tables)   # IPC 1 also has dm-from-random
    assert store_files(store) == before


def test_make_only_records_the_sets_and_a_later_run_scores_them(ran_once, tmp_path, fake_fmnist_root):
    suite, made_and_scored, _, _ = ran_once
    store = Store(tmp_path / "store")
    cells = select_cells(suite, only=["dm*", "herding"], make_only=True)
    assert cells and all(c.protocols == () for c in cells)
    assert [c.key for c in cells] == [c.key for c in select_cells(suite, only=["dm*", "herding"])]
    assert not any(" score " in line for line in plan(suite, store, cells))
    summary = run_suite(suite, store, only=["dm*", "herding"], make_only=True, device="cpu", data_root=fake_fmnist_root,
                        log=lambda s: None)
    assert len(summary.made) == len(cells) and not summary.scored and store.records("eval") == []
    full = {d["key"]: d["set_sha256"] for d in made_and_scored.records("distill")}
    assert {d["key"]: d["set_sha256"] for d in store.records("distill")} == {c.key: full[c.key] for c in cells}
    later = run_suite(suite, store, only=["dm*", "herding"], device="cpu", data_root=fake_fmnist_root,
                      log=lambda s: None)
    assert not later.made and len(later.scored) == len({full[c.key] for c in cells})


def test_adopt_replaces_an_unmeasured_imported_record_only_when_the_remade_set_is_the_same(
        ran, tmp_path, fake_fmnist_root, capsys):
    suite, store, _, _ = ran
    records = {d["label"]: d for d in store.records("distill") if d["ipc"] == 1 and d["seed"] == 0}
    unmeasured = {"imported_from": "benchmarks/results/old/x.json", "peak_memory_mib": None,
                  "memory_kind": "not measured"}
    for label, sha in (("dm", None), ("herding", "0" * 64)):   # herding: an old set that a remake no longer gives
        old = {**records[label], **unmeasured, **({"set_sha256": sha} if sha else {})}
        store.path("distill", old["key"]).write_text(json.dumps(old))
    remade = Store(tmp_path / "remade")
    run_suite(suite, remade, only=["dm", "herding"], ipcs=[1], make_only=True, device="cpu", data_root=fake_fmnist_root,
              log=lambda s: None)
    assert main(["bench", "--adopt", str(remade.root), "--store", str(store.root)]) == 0
    out, err = capsys.readouterr()
    assert "1 record adopted" in out and "adopted dm IPC 1 seed 0" in out and "herding IPC 1 seed 0" in err
    dm = store.get("distill", records["dm"]["key"])
    assert dm["peak_memory_mib"] is not None and dm["supersedes"]["imported_from"] == unmeasured["imported_from"]
    assert Path(dm["set_path"]).parent == store.root / "sets" / "fashion-mnist"
    assert SyntheticSet.load(dm["set_path"]).payload_sha256() == dm["set_sha256"] == records["dm"]["set_sha256"]
    assert store.get("distill", records["herding"]["key"])["set_sha256"] == "0" * 64   # left alone
    row = next(r for t in build_tables(store) if t.ipc == 1 for r in t.rows if r.label == "dm")
    assert row.peak is not None and row.accuracies   # its scores stay attached
    assert main(["bench", "--adopt", str(tmp_path / "nowhere"), "--store", str(store.root)]) == 2
    assert "no distillation records there" in capsys.readouterr().err


def test_prerequisite_runs_once_and_feeds_its_cell(ran):
    _, store, _, where = ran
    assert (where / "init.h5").exists()
    rec = next(d for d in store.records("distill") if d["label"] == "dm-from-random")
    assert rec["method_config"]["init"] == f"file:{where / 'init.h5'}"


def test_interrupted_evaluation_writes_no_record(tmp_path, fake_fmnist_root, monkeypatch):
    suite, store = tiny_suite(tmp_path, fake_fmnist_root), Store(tmp_path / "store")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, store, only=["random"], device="cpu", data_root=fake_fmnist_root, log=lambda s: None)
    assert len(store.records("distill")) == 1 and store.records("eval") == []
    assert not [p for p in store.root.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.undo()
    summary = run_suite(suite, store, only=["random"], device="cpu", data_root=fake_fmnist_root, log=lambda s: None)
    assert len(summary.skipped) == 1 and len(summary.made) == 3 and len(summary.scored) == 4


ONE_DM = """
ipcs = [1]
protocols = ["smoke"]
references = ["random"]
[[methods]]
method = "dm"
iterations = 2
set = { width = 8, batch_real = 4 }
"""


def test_interrupted_distillation_resumes_to_the_same_set(tmp_path, fake_fmnist_root, monkeypatch):
    suite = parse_suite(ONE_DM, "one-dm.toml")
    store = Store(tmp_path / "store")
    original = DM.step

    def step_then_sigint(self, state, real, it, seed):
        figures = original(self, state, real, it, seed)
        if it == 0:
            os.kill(os.getpid(), signal.SIGINT)   # the base checkpoints after this iteration, then stops
        return figures

    monkeypatch.setattr(DM, "step", step_then_sigint)
    kwargs = dict(only=["dm"], device="cpu", data_root=fake_fmnist_root, log=lambda s: None)
    with pytest.raises(Interrupted):
        run_suite(suite, store, **kwargs)
    assert store.records("distill") == [] and len(list(store.root.rglob("*.ckpt"))) == 1
    monkeypatch.setattr(DM, "step", original)
    logs = []
    run_suite(suite, store, **{**kwargs, "log": logs.append})
    assert any(line.startswith("resuming dm IPC 1 seed 0") for line in logs)
    fresh = Store(tmp_path / "fresh")
    run_suite(suite, fresh, **kwargs)
    assert ({d["key"]: d["set_sha256"] for d in store.records("distill")}
            == {d["key"]: d["set_sha256"] for d in fresh.records("distill")})


KD_SUITE = """
name = "tiny-kd"
ipcs = [1]
seeds = [0]
protocols = ["smoke", "kd-tiny"]
references = ["random"]
teacher = "{committee}"

[[prerequisites]]
name = "committee"
command = "dsdistill committee --members convnet-bn:width=8,convnet-bn:width=8:depth=2 --holdout 1 --seed {seed} --out {committee} --data-root {root} --device cpu --quiet"
creates = "{committee}/committee.json"

[[methods]]
method = "cvdd"
set = {{ committee = "{committee}", init = "real", iterations_per_ipc = 2 }}
requires = ["committee"]

[[methods]]
method = "random"
label = "random"
zca = true
protocols = ["smoke"]
"""


def second_key(store):
    """The teacher key of the newest kd evaluation of random."""
    return max((e for e in store.records("eval") if e["label"] == "random" and e["teacher_key"]),
               key=lambda e: e["created_utc"])["teacher_key"]


def test_soft_label_and_zca_cells_end_to_end(tmp_path, fake_fmnist_root, monkeypatch):
    """CV-DD scored with its own committee labels and random with the suite's teacher (the same committee, so the
    same teacher key); a ZCA cell made and scored in whitened space; a second committee scores random again under
    a key and a leaderboard row of its own; hard- and soft-label tables stay apart."""
    monkeypatch.setitem(PROTOCOLS._items, "kd-tiny", dataclasses.replace(
        KD, name="kd-tiny", epochs=2, seeds=(0,), model_options=(("width", 8),)))
    kwargs = dict(device="cpu", data_root=fake_fmnist_root, log=lambda s: None)

    def suite(name, seed):
        path = tmp_path / f"{name}.toml"
        path.write_text(KD_SUITE.format(committee=tmp_path / name, seed=seed, root=fake_fmnist_root))
        return load_suite(path)

    first, store = suite("committee", 0), Store(tmp_path / "store")
    lines = plan(first, store, list(first.cells))     # before the committee exists: all to run, none fails
    assert all(line.startswith("to run") for line in lines)
    assert [line for line in lines if "(teacher" in line] == \
        [f"to run  score fashion-mnist random IPC 1 seed 0 under kd-tiny (teacher {tmp_path / 'committee'})"]
    summary = run_suite(first, store, **kwargs)
    assert (tmp_path / "committee/committee.json").exists() and len(summary.made) == 3
    distills = {d["label"]: d for d in store.records("distill")}
    assert (distills["cvdd"]["soft_labels"], distills["random"]["soft_labels"]) == ("online", None)
    assert distills["random+zca"]["recipe"]["zca"] is True and "zca" not in distills["random"]["recipe"]
    assert SyntheticSet.load(distills["random+zca"]["set_path"]).image_space == "zca"
    evals = store.records("eval")
    kd = {e["label"]: e for e in evals if e["protocol"] == "kd-tiny"}
    assert set(kd) == {"random", "cvdd"} and (kd["random"]["labels"], kd["cvdd"]["labels"]) == ("given", "set")
    assert kd["random"]["teacher_key"] == kd["cvdd"]["teacher_key"]   # cvdd names the committee the suite gives
    tiny = get_protocol("kd-tiny")
    assert kd["random"]["key"] == eval_key(kd["random"]["set_sha256"], tiny.hash, kd["random"]["teacher_key"])
    assert [m["sha256"] for m in kd["random"]["teacher"]["members"]] == \
        [m["sha256"] for m in json.loads((tmp_path / "committee/committee.json").read_text())["members"]]
    hard = [e for e in evals if e["protocol"] == "smoke"]
    assert len(hard) == 3 and all(e["teacher"] is None and e["key"].count("-") == 1 for e in hard)
    again = run_suite(first, store, **kwargs)
    assert not again.made and not again.scored

    time.sleep(1.1)  # "newer" compares created_utc, which has one-second resolution (tables.of_record)
    second = run_suite(suite("other", 1), store, only=["random"], **kwargs)   # builds the other committee first
    assert not second.made and second.scored == ["random IPC 1 seed 0 under kd-tiny"]
    tables = build_tables(store)
    assert [(t.label_mode, t.protocol) for t in tables] == [("hard", "smoke"), ("soft", "kd-tiny")]
    hard_table, soft_table = tables
    assert sorted(r.label for r in hard_table.rows) == ["cvdd", "random", "random+zca"]
    rows = sorted(soft_table.rows + soft_table.appendix, key=lambda r: r.label)
    assert [r.label for r in rows][0] == "cvdd" and all(r.label.startswith("random [teacher ") for r in rows[1:])
    assert len(rows) == 3 and len({r.label for r in rows}) == 3 and all(len(r.accuracies) == 1 for r in rows)
    # random is ranked once: the newer score (the second committee's) of record, the first in the appendix
    ranked_random = [r for r in soft_table.rows if r.base == "random"]
    assert len(ranked_random) == 1 and ranked_random[0].teacher_key == second_key(store)
    assert [r.why for r in soft_table.appendix] == [f"earlier record of random (newer: {ranked_random[0].label})"]
    assert rows[0].teacher.startswith(f"its own: {tmp_path / 'committee'} #")
    md = leaderboard_md(tables, store, None, "dsdistill report")
    hard_md, soft_md = md.split("### Soft-label protocols")
    assert "### Hard-label protocols" in hard_md and "smoke" in hard_md and "kd-tiny" not in hard_md
    assert "kd-tiny" in soft_md and "smoke v1" not in soft_md and "| soft labels |" in soft_md
    assert "| soft labels |" not in hard_md

    # teacher_labels = "stored": the same committee labels each image once (eval-mode BN), under a key of its own
    stored_suite = tmp_path / "stored.toml"
    stored_suite.write_text(KD_SUITE.format(committee=tmp_path / "committee", seed=0, root=fake_fmnist_root)
                            .replace('teacher = "', 'teacher_labels = "stored"\nteacher = "', 1))
    third = run_suite(load_suite(stored_suite), store, only=["random"], **kwargs)
    assert not third.made and third.scored == ["random IPC 1 seed 0 under kd-tiny"]
    by_labels = {e["labels"]: e for e in store.records("eval") if e["label"] == "random" and e["protocol"] == "kd-tiny"
                 and e["teacher"]["path"] == str(tmp_path / "committee")}
    online, stored = by_labels["given"], by_labels["given-stored"]
    assert stored["teacher"]["labels"] == "stored" and stored["teacher_key"] != online["teacher_key"]
    assert {k: v for k, v in stored["teacher"].items() if k not in ("labels", "key", "source")} == \
        {k: v for k, v in online["teacher"].items() if k not in ("key", "source")}
    assert stored["set_sha256"] == online["set_sha256"]                # the stored set itself is not changed
    assert any("stored in the set" in n for n in stored["report"]["notes"])
    assert not run_suite(load_suite(stored_suite), store, only=["random"], **kwargs).scored
    soft = next(t for t in build_tables(store) if t.label_mode == "soft")
    assert sum(r.teacher.startswith(f"stored once by {tmp_path / 'committee'} #") for r in soft.rows + soft.appendix) == 1
    assert sum(r.base == "random" for r in soft.rows) == 1   # three random rows, one ranked
    # vs random: the random set labelled by the teacher CV-DD's set names (three random rows stand in the table,
    # that one in the appendix)
    cvdd_row = next(r for r in soft.rows if r.base == "cvdd")
    partner = soft.random_for(cvdd_row)
    assert partner.teacher_key == cvdd_row.teacher_key == kd["random"]["teacher_key"]
    assert soft.gain(cvdd_row) == pytest.approx(100 * (cvdd_row.mean - partner.mean))
    assert soft.random_for(dataclasses.replace(cvdd_row, teacher_key="other")) is None   # ambiguous: no gain


def test_teacher_labels_on_an_entry_no_teacher_labels_is_refused():
    for entry in ("method = 'random'\nteacher_labels = 'stored'",                       # dc only: no teacher
                  "method = 'cvdd'\nprotocols = ['kd']\nteacher_labels = 'stored'"):   # its own soft labels
        with pytest.raises(DsdistillError, match="teacher_labels says how a teacher labels"):
            parse_suite(f"ipcs = [1]\nteacher = 'c'\n[[methods]]\n{entry}", "s.toml")
    # as a suite-wide default it may go unused by some entries
    suite = parse_suite("ipcs = [1]\nteacher_labels = 'stored'\n[[methods]]\nmethod = 'random'", "s.toml")
    assert "random" in {c.method for c in suite.cells}
    assert {(c.teacher, c.teacher_labels) for c in suite.cells} == {(None, "online")}


def test_teacher_labels_must_be_online_or_stored():
    with pytest.raises(DsdistillError, match="teacher_labels must be one of online, stored, got 'cached'"):
        parse_suite("ipcs = [1]\nprotocols = ['kd']\nteacher = 'c'\nteacher_labels = 'cached'", "s.toml")


def test_a_teacher_nobody_builds_is_refused_before_anything_runs(tmp_path, fake_fmnist_root):
    suite = parse_suite(f"ipcs = [1]\nprotocols = ['dc', 'kd']\nreferences = ['random']\nteacher = '{tmp_path / 'c'}'",
                        "s.toml")
    with pytest.raises(DsdistillError, match=f"no committee at {tmp_path / 'c'}, and no .* builds it") as err:
        run_suite(suite, Store(tmp_path / "store"), device="cpu", data_root=fake_fmnist_root, log=lambda s: None)
    assert "\n" not in str(err.value) and not (tmp_path / "store").exists()


def test_a_soft_label_score_by_a_given_teacher_is_not_imported(tmp_path, tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 1, seed=0)
    synset.save(tmp_path / "r.h5")
    kd = get_protocol("kd")
    (tmp_path / "results").mkdir()
    (tmp_path / "results/r.json").write_text(json.dumps({
        "protocol": "kd", "protocol_version": kd.version, "protocol_hash": kd.hash, "labels": "soft",
        "label_source": "online", "notes": ["soft labels online from the given teacher from c: a 1.000"],
        "results": [{"seconds": 1.0, "accuracies": [0.5]}], "set_sha256": synset.payload_sha256(),
        "set_path": "r.h5", "dataset": "fashion-mnist", "method": "random", "ipc": 1, "hardware": "",
        "created_utc": ""}))
    with pytest.raises(DsdistillError, match="given on the command line.*teacher = ") as err:
        import_reports(tmp_path / "results", Store(tmp_path / "store"), tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / "store").exists()


# ------------------------------------------------------------------ report

def test_report_numbers_follow_the_records(ran, tmp_path):
    _, store, _, _ = ran
    files = write_report(store, tmp_path / "out/LEADERBOARD.md", plots_dir=None)
    rows = list(csv.DictReader(io.StringIO(files[1].read_text())))
    ours = [r for r in rows if r["source"] == "ours"]
    evals = {e["set_sha256"]: e for e in store.records("eval")}

    def accs(label, ipc):
        return [a for d in store.records("distill") if d["label"] == label and d["ipc"] == ipc
                for a in evals[d["set_sha256"]]["report"]["results"][0]["accuracies"]]

    whole = accs("whole", 0)
    for ipc in (1, 2):
        table = [r for r in ours if r["ipc"] == str(ipc)]
        ranked = [r for r in table if r["rank"] not in ("ref", "appendix")]
        # competition ranks: a row shares the rank above it exactly when Welch's p between them is 0.05 or more
        # (or undefined, with equal means)
        for i, (upper, r) in enumerate(zip(ranked, ranked[1:]), 2):
            p = upper["welch_p_vs_next"]
            tied = float(p) >= 0.05 if p else upper["mean"] == r["mean"]
            assert r["rank"] == (upper["rank"] if tied else str(i))
        assert ranked[0]["rank"] == "1" and len({r["rank"] for r in ranked}) < len(ranked)   # the tiny runs tie
        assert [float(r["mean"]) for r in ranked] == sorted((float(r["mean"]) for r in ranked), reverse=True)
        random = accs("random", ipc)
        for r, nxt in zip(ranked, ranked[1:] + [None]):
            a = accs(r["method"], ipc)
            assert float(r["mean"]) == pytest.approx(100 * np.mean(a), abs=1e-4)
            assert float(r["std"]) == pytest.approx(100 * np.std(a), abs=1e-4)
            assert float(r["gain_over_random"]) == pytest.approx(100 * (np.mean(a) - np.mean(random)), abs=1e-3)
            if np.mean(whole) > 0:
                assert float(r["fraction_of_whole"]) == pytest.approx(np.mean(a) / np.mean(whole), abs=1e-4)
            if nxt is not None and r["welch_p_vs_next"]:
                expected = ttest_ind(a, accs(nxt["method"], ipc), equal_var=False).pvalue
                assert float(r["welch_p_vs_next"]) == pytest.approx(expected, rel=1e-3)
                assert r["next_method"] == nxt["method"]
        assert sum(r["rank"] == "ref" for r in table) == 1
    published = [r for r in rows if r["source"] == "published"]
    assert published and all(r["published_how"] and not r["rank"] for r in published)


def test_only_equal_protocol_hashes_share_a_table(ran):
    _, store, _, _ = ran
    ev = next(e for e in store.records("eval") if e["label"] == "random" and e["ipc"] == 1)
    store.put({**ev, "key": ev["key"][:17] + "0" * 16, "protocol_hash": "0" * 16})
    tables = build_tables(store)
    heads = {(t.ipc, t.protocol_hash) for t in tables}
    assert (1, "0" * 16) in heads and len(tables) == 3
    lone = next(t for t in tables if t.protocol_hash == "0" * 16)
    assert [r.label for r in lone.rows] == ["random"] and lone.whole is None


def test_report_regenerates_the_same_bytes(ran, tmp_path):
    _, store, _, _ = ran
    out = tmp_path / "board"
    first = write_report(store, out / "LEADERBOARD.md", plots_dir=out / "plots")
    contents = {p: p.read_bytes() for p in first}
    assert len([p for p in first if p.parent.name == "sets"]) == 3 * 2 * 2 + 2 * 2 + 1
    for p in first:
        p.unlink()
    stale, other = out / "plots" / "sets" / "gone-ipc1-seed0.png", out / "plots" / "notes.png"
    for p in (stale, other):
        p.write_bytes(b"")
    second = write_report(store, out / "LEADERBOARD.md", plots_dir=out / "plots")
    assert second == first and {p: p.read_bytes() for p in second} == contents
    assert not stale.exists() and other.exists()   # a grid the store no longer gives goes; other files stay
    md = contents[out / "LEADERBOARD.md"].decode()
    assert "Published (not measured here, never ranked)" in md and "(plots/acc-vs-ipc-fashion-mnist-smoke-" in md


def test_store_never_rewrites_a_record(ran):
    _, store, _, _ = ran
    rec = store.records("eval")[0]
    with pytest.raises(DsdistillError, match="never rewritten"):
        store.put(rec)


# ------------------------------------------------------------------ imports and CLI

def test_import_of_the_existing_results_is_found_by_the_cpu_suite(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    store = Store(tmp_path / "store")
    added = sum(import_reports(REPO / "benchmarks/results" / name, store, REPO)[0]
                for name in ("fmnist-random-baselines", "fmnist-dm-datadam-cpu"))
    assert added == len(store.records("distill")) + len(store.records("eval")) > 0
    assert import_reports(REPO / "benchmarks/results/fmnist-dm-datadam-cpu", store, REPO)[0] == 0
    cpu = load_suite(REPO / "benchmarks/suites/fmnist-cpu.toml")
    stored = {c.label for c in cpu.cells if c.ipc in (1, 10) and store.has("distill", c.key)}
    assert {"random", "dm.fmnist-cpu", "datadam.fmnist-cpu", "datadam.fmnist-cpu+flip=true"} <= stored


def test_cli_bench_and_report(tmp_path, fake_fmnist_root, capsys):
    suite = tiny_suite(tmp_path, fake_fmnist_root)
    base = ["--store", str(tmp_path / "store")]
    assert main(["bench", suite.path, *base, "--dry-run", "--only", "random"]) == 0
    out = capsys.readouterr().out
    assert out.count("to run") == 8 and "stored" not in out
    assert main(["bench", suite.path, *base, "--only", "random", "--data-root", fake_fmnist_root,
                 "--device", "cpu", "--quiet"]) == 0
    assert "4 sets made, 4 evaluations run" in capsys.readouterr().out
    assert main(["report", *base, "--out", str(tmp_path / "LEADERBOARD.md"), "--no-plots"]) == 0
    assert (tmp_path / "leaderboard.csv").exists()
    assert "`dsdistill report --store" in (tmp_path / "LEADERBOARD.md").read_text()
    assert main(["bench", str(tmp_path / "none.toml"), *base]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no suite file" in err
    for command in (["report", "--no-plots", "--out", str(tmp_path / "other.md")], ["manifest", str(tmp_path)]):
        assert main([*command, "--store", str(tmp_path / "mistyped")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no result store at" in err
    assert not (tmp_path / "other.md").exists() and not (tmp_path / "manifest.json").exists()


def test_published_sets_match_their_manifest(tmp_path):
    from dsdistill.bench.manifest import check_manifest
    folder = REPO / "synthetic_sets"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["sets"]) >= 6 and check_manifest(folder) == []
    for entry in manifest["sets"]:
        scores = entry["scores"]
        assert scores and all(score["models"] == 5 for score in scores.values()) and entry["command"]
        assert "dc" in scores or entry["method"] == "cvdd"   # CV-DD's online-labelled sets: scored under kd
    bad = tmp_path / "sets"
    shutil.copytree(folder, bad)
    victim = bad / manifest["sets"][0]["file"]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert check_manifest(bad)


def test_committed_leaderboard_is_generated_from_the_committed_store(monkeypatch):
    from dsdistill.bench.report import leaderboard_csv, leaderboard_md
    monkeypatch.chdir(REPO)
    store = Store("benchmarks/results/store")
    tables = build_tables(store)
    board = (REPO / "benchmarks/LEADERBOARD.md").read_text()
    assert leaderboard_md(tables, store, "plots", "dsdistill report --html") == board, "rerun `dsdistill report --html`"
    assert leaderboard_csv(tables) == (REPO / "benchmarks/leaderboard.csv").read_text()
    links = re.findall(r"\]\((plots/[^)]+)\)", board)
    assert links and all((REPO / "benchmarks" / link).exists() for link in links)


def test_a_failing_prerequisite_says_how_to_run_it(tmp_path, capsys):
    from dsdistill.bench import Runner
    suite = parse_suite(f"""
ipcs = [1]
[[prerequisites]]
name = "broken"
command = "dsdistill select --method nope --ipc 1 --out {tmp_path / 'x.h5'}"
creates = "{tmp_path / 'x.h5'}"
""", "s.toml")
    runner = Runner(suite, Store(tmp_path / "store"), device="cpu", log=lambda s: None)
    with pytest.raises(DsdistillError, match="prerequisite 'broken' failed.*run it by hand: dsdistill select") as err:
        runner.ensure(suite.prerequisites["broken"])
    assert "unknown method 'nope'" in str(err.value) and "\n" not in str(err.value)  # built in-process, not by cli


def test_a_stopped_prerequisite_build_is_resumed_not_taken_as_made(tmp_path, fake_fmnist_root):
    """A committee (pool, experts) stopped after its first member has a manifest, which `creates` names: the
    runner sees `complete: false` in it and reruns the command, which resumes."""
    from dsdistill.bench import Runner
    folder = tmp_path / "committee"
    command = (f"dsdistill committee --members convnet-bn:width=8,convnet-bn:width=8:depth=2 --holdout 1 "
               f"--out {folder} --data-root {fake_fmnist_root} --device cpu --quiet")
    suite = parse_suite(f"ipcs = [1]\n[[prerequisites]]\nname = 'c'\ncommand = '{command}'\n"
                        f"creates = '{folder / 'committee.json'}'", "s.toml")
    assert main(shlex.split(command.replace("width=8,convnet-bn:width=8:depth=2", "width=8"))[1:]) == 0
    manifest = json.loads((folder / "committee.json").read_text())
    manifest["complete"] = False   # as a build of both members stopped after the first leaves it
    (folder / "committee.json").write_text(json.dumps(manifest))
    logs = []
    Runner(suite, Store(tmp_path / "store"), device="cpu", log=logs.append).ensure(suite.prerequisites["c"])
    assert logs == [f"prerequisite c: {command}"]
    after = json.loads((folder / "committee.json").read_text())
    assert after["complete"] is True and len(after["members"]) == 2


def test_only_skip_and_ipc_select_cells():
    suite = parse_suite("ipcs = [1, 10]\nreferences = ['random', 'herding', 'whole']", "s.toml")
    pick = lambda **kw: sorted((c.label, c.ipc) for c in select_cells(suite, **kw))  # noqa: E731
    assert pick(ipcs=[10]) == [("herding", 10), ("random", 10)]
    assert pick(only=["r*"], ipcs=[1]) == [("random", 1)]
    assert pick(skip=["random", "herding"]) == [("whole", 0)]
    with pytest.raises(DsdistillError, match="no cell of s matches --only/--skip/--ipc; .*IPCs: 1, 10$"):
        select_cells(suite, ipcs=[50])


RANDOM_ONLY = """
ipcs = [1]
protocols = ["smoke-3"]
references = ["random"]
"""


def test_interrupted_evaluation_resumes_at_the_next_model(tmp_path, fake_fmnist_root, monkeypatch):
    from dsdistill.evaluate.finished import FinishedModels
    from dsdistill.evaluate.protocols import SMOKE
    monkeypatch.setitem(PROTOCOLS._items, "smoke-3",
                        dataclasses.replace(SMOKE, name="smoke-3", seeds=(0, 1, 2), model_options=(("width", 8),)))
    suite, store = parse_suite(RANDOM_ONLY, "random-only.toml"), Store(tmp_path / "store")
    kwargs = dict(device="cpu", data_root=fake_fmnist_root, log=lambda s: None)
    original = FinishedModels.add

    def add_then_stop(self, arch, seed, model):
        original(self, arch, seed, model)
        if seed == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(FinishedModels, "add", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, store, **kwargs)
    assert store.records("eval") == [] and len(list((store.root / "partial").glob("*.json"))) == 1
    monkeypatch.setattr(FinishedModels, "add", original)
    run_suite(suite, store, **kwargs)
    (record,) = store.records("eval")
    assert record["report"]["notes"][-1].startswith("resumed: 2 model(s)")
    assert list((store.root / "partial").glob("*.json")) == []
    fresh = Store(tmp_path / "fresh")
    run_suite(suite, fresh, **kwargs)
    assert (record["report"]["results"][0]["accuracies"]
            == fresh.records("eval")[0]["report"]["results"][0]["accuracies"])


# ------------------------------------------------------------------ tables (shared by the markdown and the plots)

def test_table_names_and_figures():
    row = Row("dm", "synthesis", accuracies=[0.5, 0.7], distill_seconds=[1.0, 3.0])
    table = Table("fashion-mnist", 10, "hard", "dc", 1, "abcdef0123456789", [row])
    assert plot_name("acc-vs-time", table, True) == "acc-vs-time-fashion-mnist-dc-abcdef01-ipc10.png"
    assert plot_name("acc-vs-ipc", table, False) == "acc-vs-ipc-fashion-mnist-dc-abcdef01.png"
    name = grid_name("benchmarks/results/store/sets/fashion-mnist/dm-ipc10-seed0.h5")
    assert name.startswith("dm-ipc10-seed0-") and name.endswith(".png")
    # two result folders holding a set file of the same name get two pictures (a rerun beside its old record)
    assert grid_name("benchmarks/results/a/sets/x-ipc1-seed0.h5") != grid_name("benchmarks/results/b/sets/x-ipc1-seed0.h5")
    assert mean_seconds(row) == 2.0 and mean_seconds(Row("random", "selection")) is None
    assert welch([0.5], [0.6, 0.7]) is None and welch([0.5, 0.5], [0.5, 0.5]) is None
    near, far = welch([0.50, 0.52, 0.51], [0.51, 0.53, 0.52]), welch([0.50, 0.52, 0.51], [0.70, 0.72, 0.71])
    assert 0 < far < near < 1 and welch([0.70, 0.72, 0.71], [0.50, 0.52, 0.51]) == pytest.approx(far)


def test_set_grids_draw_a_zca_set_in_pixels(tmp_path, fake_fmnist_root):
    """The leaderboard's grids used to refuse a ZCA set (save_grid cannot un-normalise it)."""
    path = tmp_path / "random-zca-ipc1-seed0.h5"
    create_synthesizer("random").fit(load_dataset("fashion-mnist", fake_fmnist_root, zca=True), 1, seed=0).save(path)
    table = Table("fashion-mnist", 1, "hard", "smoke", 1, "0" * 16,
                  [Row("random", "selection", accuracies=[0.5], seeds=[0], set_paths=[str(path)])])
    assert set_grids([table], tmp_path / "sets") == [tmp_path / "sets" / grid_name(str(path))]
    assert (tmp_path / "sets" / grid_name(str(path))).stat().st_size > 0


# ------------------------------------------------------------------ library functions behind bench, report, manifest

@pytest.fixture
def torchrun(monkeypatch):
    """The environment of rank `rank` of 2 under torchrun (nothing is started)."""
    def become(rank: int = 0) -> None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
    return become


def test_score_whole_is_scored_once_then_read_from_the_cache(fake_fmnist_root, tmp_path):
    first = score_whole("fashion-mnist", "smoke", data_root=fake_fmnist_root, device="cpu")
    cache = whole_cache("fashion-mnist", SMOKE.hash, ["convnet"])
    assert first.cached is None and cache.exists() and first.report["method"] == "whole"
    second = score_whole("fashion-mnist", "smoke", data_root=fake_fmnist_root, device="cpu")
    assert second.cached == cache and second.table == first.table and second.report == first.report
    second.save_json(tmp_path / "r.json", command="dsdistill evaluate --whole")   # a cached score is saved too
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["command"] == "dsdistill evaluate --whole" and saved["set_sha256"] == first.report["set_sha256"]
    assert list((cache_dir() / "partial").glob("*")) == []




def test_open_store_defaults_and_refuses_a_missing_folder_it_must_read(tmp_path):
    assert open_store().root == Path(DEFAULT_STORE) and open_store(tmp_path / "new").root == tmp_path / "new"
    with pytest.raises(ConfigError, match="no result store at"):
        open_store(tmp_path / "mistyped", existing=True)


def test_import_and_adopt_run_in_one_process_only(tmp_path, torchrun):
    with pytest.raises(ConfigError, match="no distillation records there"):
        adopt_folder(tmp_path / "remade", tmp_path / "store")
    torchrun(0)
    for call in (lambda: import_folders([tmp_path], tmp_path / "store"),
                 lambda: adopt_folder(tmp_path, tmp_path / "store")):
        with pytest.raises(ConfigError, match=r"`dsdistill bench --import/--adopt` does not split its work"):
            call()


def test_plan_and_bench_need_a_suite_and_only_rank_0_plans(tmp_path, torchrun):
    for call in (plan_suite, bench_suite):
        with pytest.raises(ConfigError, match="give a suite file"):
            call(None, tmp_path / "store")
    suite = tmp_path / "one.toml"
    suite.write_text(ONE_RANDOM)
    lines = plan_suite(suite, tmp_path / "store")
    assert lines == ["to run  make  fashion-mnist random IPC 1 seed 0",
                     "to run  score fashion-mnist random IPC 1 seed 0 under smoke"]
    torchrun(1)
    assert plan_suite(suite, tmp_path / "store") is None


def test_bench_suite_names_its_suite_and_store(tmp_path, fake_fmnist_root):
    suite = tmp_path / "one.toml"
    suite.write_text(ONE_RANDOM)
    summary = bench_suite(suite, tmp_path / "store", device="cpu", data_root=fake_fmnist_root, command="test")
    assert (summary.suite, summary.store) == ("one", str(tmp_path / "store"))
    assert (len(summary.made), len(summary.scored)) == (1, 1)


def test_an_interrupted_suite_says_so_and_exits_130(tmp_path, capsys, monkeypatch):
    suite = tmp_path / "one.toml"
    suite.write_text(ONE_RANDOM)

    def stop(*a, **k):
        raise Interrupted("stopped at iteration 3")

    monkeypatch.setattr(runner_module, "run_suite", stop)
    with pytest.raises(Interrupted, match="^stopped at iteration 3$"):
        bench_suite(suite, tmp_path / "store", device="cpu")
    assert main(["bench", str(suite), "--store", str(tmp_path / "store"), "--device", "cpu"]) == 130
    assert capsys.readouterr().err == "dsdistill: stopped at iteration 3; rerun the same command to resume\n"


def test_regenerate_puts_the_plots_beside_the_leaderboard_unless_told(tmp_path):
    (tmp_path / "store").mkdir()
    files, plots = regenerate(tmp_path / "store", tmp_path / "out" / "BOARD.md")
    assert plots == tmp_path / "out" / "plots" and files[:2] == [tmp_path / "out/BOARD.md", tmp_path / "out/leaderboard.csv"]
    files, plots = regenerate(tmp_path / "store", tmp_path / "BOARD.md", tmp_path / "b.csv", draw=False)
    assert plots is None and files == [tmp_path / "BOARD.md", tmp_path / "b.csv"]
    with pytest.raises(ConfigError, match="no result store at"):
        regenerate(tmp_path / "mistyped", tmp_path / "BOARD.md")


def test_write_then_verify_a_manifest(two_sets, tmp_path):
    folder = Path(two_sets[1][0]).parent
    (tmp_path / "store").mkdir()
    manifest = write_manifest(folder, tmp_path / "store", "test")
    assert [e["method"] for e in manifest["sets"]] == ["k-center", "random"] and manifest["generated_by"] == "test"
    verify_manifest(folder)
    create_synthesizer("random").fit(two_sets[0], 1, seed=1).save(folder / "extra.h5")
    with pytest.raises(ConfigError, match=r"1 problem\(s\): .*extra.h5: not in the manifest"):
        verify_manifest(folder)
