"""Scoring set files as `evaluate` and `compare` do: each file in order, one table, nothing for other ranks."""
from __future__ import annotations

from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.evaluate import files as files_module
from dsdistill.evaluate.cache import cache_dir
from dsdistill.evaluate.files import score_files
from dsdistill.evaluate.report import compare_table
from dsdistill.synset import SyntheticSet

SMOKE = get_protocol("smoke")


def test_score_files_scores_each_file_in_order_as_evaluate_does(two_sets, fake_fmnist_root):
    real, paths = two_sets
    reports = score_files(paths, "smoke", data_root=fake_fmnist_root, device="cpu")
    assert [r.set_path for r in reports] == paths and [r.method for r in reports] == ["random", "k-center"]
    direct = evaluate(SyntheticSet.load(paths[1]), SMOKE, data=real, device="cpu")
    assert reports[1].results[0].accuracies == direct.results[0].accuracies
    assert list((cache_dir() / "partial").glob("*")) == []  # complete reports leave no resume log
    table = compare_table("smoke", paths, reports).splitlines()
    assert table[0].startswith(f"protocol smoke v{SMOKE.version} #{SMOKE.hash}")
    assert table[0].endswith("over 1 model")  # singular (issue 22: no "1 models")
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


