"""The result store: append-only even under racing writers, confined to its folder, and loud about damage."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from dsdistill.bench.store import REQUIRED, RecordRaceError, Store
from dsdistill.errors import ConfigError


def _record(kind: str = "distill", key: str = "0123456789abcdef", **extra) -> dict:
    return {**{k: f"v-{k}" for k in REQUIRED[kind]}, "kind": kind, "key": key, **extra}


def test_a_damaged_record_is_one_line_naming_its_file(tmp_path):
    store = Store(tmp_path)
    (tmp_path / "distill").mkdir()
    bad = tmp_path / "distill" / "0123456789abcdef.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"0123456789abcdef\.json is damaged") as err:
        store.records("distill")
    assert "\n" not in str(err.value)
    bad.write_text(json.dumps({"kind": "distill", "key": "x"}))
    with pytest.raises(ConfigError, match=r"lacks method, dataset, ipc, seed, set_sha256"):
        store.get("distill", "0123456789abcdef")


def test_a_dataset_name_never_climbs_out_of_the_store(tmp_path):
    store = Store(tmp_path / "store")
    for name in ("imagefolder:../../..", "../..", "..", "a/../../b"):
        path = store.set_file(name, "stem")
        assert path.resolve().is_relative_to((tmp_path / "store" / "sets").resolve()), path
        assert path.parent.parent == tmp_path / "store" / "sets"
    assert store.set_file("fashion-mnist", "dm.fmnist-cpu+flip-ipc1-s0") == \
        tmp_path / "store/sets/fashion-mnist/dm.fmnist-cpu+flip-ipc1-s0.h5"  # stored names unchanged


def test_a_record_is_never_rewritten(tmp_path):
    store = Store(tmp_path)
    store.put(_record(label="first"))
    with pytest.raises(ConfigError, match="never rewritten"):
        store.put(_record(label="second"))
    assert store.get("distill", "0123456789abcdef")["label"] == "first"


def _put(root: str, label: str, start, queue) -> None:
    start.wait(30)
    try:
        Store(root).put(_record(label=label))
        queue.put(("stored", label))
    except RecordRaceError as err:
        queue.put(("lost", str(err)))
    except ConfigError:  # the winner had finished before this writer looked
        queue.put(("lost", "exists"))


def test_two_processes_putting_one_record_leave_the_first_and_tell_the_loser_nothing_needs_deleting(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        root = tmp_path / f"store{round_}"
        start, queue = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_put, args=(str(root), f"writer {i}", start, queue)) for i in range(2)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(60)
        outcomes = sorted(queue.get(timeout=5) for _ in procs)
        assert [o for o, _ in outcomes] == ["lost", "stored"]
        assert Store(root).get("distill", "0123456789abcdef")["label"] == outcomes[1][1]
        if outcomes[0][1] != "exists":
            assert "nothing needs deleting" in outcomes[0][1]
        assert [p.name for p in (root / "distill").iterdir()] == ["0123456789abcdef.json"]


def test_the_racing_loser_is_told_its_rival_won(tmp_path, monkeypatch):
    """The moment between the existence check and the write: simulated by a check that sees nothing."""
    store = Store(tmp_path)
    store.put(_record(label="first"))
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self.suffix == ".json" else real_exists(self))
    with pytest.raises(RecordRaceError, match="its record stands and nothing needs deleting"):
        store.put(_record(label="second"))
    monkeypatch.undo()
    assert store.get("distill", "0123456789abcdef")["label"] == "first"
