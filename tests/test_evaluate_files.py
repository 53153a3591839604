"""The library functions behind the commands (cli.py only parses, calls one of these and prints): the
evaluation cache and resume keys, scoring set files and the whole training set, the bench/report/manifest
functions and the set-file tools (info, show, import)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from dsdistill.bench import (DEFAULT_STORE, adopt_folder, bench_suite, import_folders, open_store, plan_suite,
                             regenerate, score_whole, verify_manifest, write_manifest)
from dsdistill.bench import runner as runner_module
from dsdistill.cli import main
from dsdistill.data import ZCA, load_dataset
from dsdistill.errors import ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.evaluate import files as files_module
from dsdistill.evaluate.cache import cache_dir, resume_log, whole_cache
from dsdistill.evaluate.files import score_files
from dsdistill.evaluate.report import compare_table
from dsdistill.synset import SyntheticSet, save_grid
from dsdistill.synset.tools import describe, draw, import_for_dataset
from dsdistill.synthesizers import Interrupted, create_synthesizer

SMOKE = get_protocol("smoke")
ONE_RANDOM = """
name = "one"
ipcs = [1]
seeds = [0]
protocols = ["smoke"]
references = ["random"]
"""


@pytest.fixture
def torchrun(monkeypatch):
    """The environment of rank `rank` of 2 under torchrun (nothing is started)."""
    def become(rank: int = 0) -> None:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
    return become


@pytest.fixture
def two_sets(fake_fmnist_root, tmp_path):
    real = load_dataset("fashion-mnist", fake_fmnist_root)
    paths = []
    for method in ("random", "k-center"):
        options = {"features": "random"} if method == "k-center" else {}
        path = tmp_path / f"{method}.h5"
        create_synthesizer(method, **options).fit(real, 1, seed=0).save(path)
        paths.append(str(path))
    return real, paths


# ------------------------------------------------------------------ evaluate/cache.py

def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DSDISTILL_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("DSDISTILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dsdistill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dsdistill"


def test_whole_cache_keeps_the_old_name_and_a_teacher_gets_its_own():
    old = cache_dir() / "whole" / f"fashion-mnist-{SMOKE.hash}-convnet+mlp.json"  # the name cli.py used to build
    assert whole_cache("fashion-mnist", SMOKE.hash, ["convnet", "mlp"]) == old
    a, b = (whole_cache("fashion-mnist", SMOKE.hash, ["convnet"], teacher=t) for t in ("c1", "c2"))
    assert len({a, b, whole_cache("fashion-mnist", SMOKE.hash, ["convnet"])}) == 3 and a.parent == old.parent


def test_resume_log_key_is_the_one_cli_used(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 1, seed=0)
    for archs, teacher in ((None, None), (["convnet", "mlp"], None), (None, "committee")):
        what = json.dumps([synset.payload_sha256(), SMOKE.hash, archs, teacher])
        expected = cache_dir() / "partial" / f"{hashlib.sha256(what.encode()).hexdigest()[:16]}.json"
        assert resume_log(synset, SMOKE.hash, archs, teacher) == expected
    keys = {resume_log(synset, SMOKE.hash, a, t) for a, t in ((None, None), (["mlp"], None), (None, "c"))}
    assert len(keys) == 3


# ------------------------------------------------------------------ evaluate/files.py, evaluate/report.py

def test_score_files_scores_each_file_in_order_as_evaluate_does(two_sets, fake_fmnist_root):
    real, paths = two_sets
    reports = score_files(paths, "smoke", data_root=fake_fmnist_root, device="cpu")
    assert [r.set_path for r in reports] == paths and [r.method for r in reports] == ["random", "k-center"]
    direct = evaluate(SyntheticSet.load(paths[1]), SMOKE, data=real, device="cpu")
    assert reports[1].results[0].accuracies == direct.results[0].accuracies
    assert list((cache_dir() / "partial").glob("*")) == []  # complete reports leave no resume log
    table = compare_table("smoke", paths, reports).splitlines()
    assert table[0].startswith(f"protocol smoke v{SMOKE.version} #{SMOKE.hash}") and "over 1 models" in table[0]
    assert len(table) == 4 and table[2].startswith(paths[0]) and "k-center" in table[3]


def test_score_files_gives_other_ranks_nothing(two_sets, fake_fmnist_root, monkeypatch):
    real, paths = two_sets
    monkeypatch.setattr(files_module, "init_world", _fake_world(rank=1))
    monkeypatch.setattr(files_module, "evaluate", lambda *a, **k: None)
    assert score_files(paths[:1], "smoke", data_root=fake_fmnist_root, device="cpu") is None


def _fake_world(rank: int):
    """init_world for a rank of 2 that never talks to a peer (what score_files does with it is all that counts)."""
    import contextlib
    from dsdistill._distributed import World

    @contextlib.contextmanager
    def init_world(device):
        yield World(rank=rank, size=2, backend="gloo")
    return init_world


# ------------------------------------------------------------------ bench/whole.py

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


# ------------------------------------------------------------------ bench: store, import/adopt, suite, report, manifest

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


# ------------------------------------------------------------------ synset/tools.py

def test_describe_lists_what_info_prints(two_sets):
    path = two_sets[1][0]
    synset = SyntheticSet.load(path)
    rows = describe(path)
    assert list(rows)[:4] == ["file", "dataset", "method", "ipc"] and rows["file"] == path
    assert rows["payload sha256"] == synset.payload_sha256() and rows["labels"] == "10 hard"
    assert "command" not in rows and "soft labels" not in rows


def test_draw_unwhitens_a_zca_set(fake_fmnist_root, tmp_path):
    real = load_dataset("fashion-mnist", fake_fmnist_root, zca=True)
    path = tmp_path / "zca.h5"
    create_synthesizer("random").fit(real, 1, seed=0).save(path)
    draw(path, tmp_path / "drawn.png", max_per_class=1)
    synset = SyntheticSet.load(path)
    save_grid(synset, tmp_path / "expected.png", to_pixels=ZCA.from_state_dict(synset.zca).inverse, max_per_class=1)
    assert (tmp_path / "drawn.png").read_bytes() == (tmp_path / "expected.png").read_bytes()
    with pytest.raises(ConfigError, match="cannot draw a 'zca' set by un-normalising it"):
        save_grid(synset, tmp_path / "raw.png")  # what draw() saves the caller from


def test_import_for_dataset_fills_in_the_dataset_and_records_the_command(tmp_path):
    images, labels = torch.randn(20, 1, 28, 28), torch.arange(10).repeat(2)
    torch.save((images, labels), tmp_path / "pair.pt")
    synset = import_for_dataset(tmp_path / "pair.pt", tmp_path / "out.h5", dataset="fashion-mnist", method="dm",
                                command="dsdistill import pair.pt")
    loaded = SyntheticSet.load(tmp_path / "out.h5")
    assert loaded.payload_sha256() == synset.payload_sha256() and loaded.num_classes == 10 and loaded.ipc == 2
    assert loaded.mean == pytest.approx((0.2860,)) and loaded.method == "dm"
    assert loaded.extra["command"] == "dsdistill import pair.pt" and torch.equal(loaded.images, images)
