"""dsdistill._io: durable atomic writes, exclusive records, stale temporaries, output checks."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsdistill._io import atomic_path, check_output, exclusive_path, sweep_stale_temporaries, write_json
from dsdistill.errors import ConfigError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_is_swept_and_a_live_ones_is_kept(tmp_path):
    target = tmp_path / "record.json"
    dead = tmp_path / f".record.json.p{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".record.json.p{os.getppid()}.def456.tmp"  # our parent is alive
    other = tmp_path / f".other.json.p{_dead_pid()}.x.tmp"
    for p in (dead, live, other):
        p.write_text("half")
    write_json(target, {"a": 1})
    assert not dead.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])
    assert sweep_stale_temporaries(tmp_path / "other.json") == [other]


def test_atomic_path_leaves_no_temporary_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def _write_once(path: str, text: str, queue) -> None:
    try:
        with exclusive_path(path) as tmp:
            Path(tmp).write_text(text)
        queue.put(("won", text))
    except FileExistsError:
        queue.put(("lost", text))


def test_exclusive_path_lets_exactly_one_of_two_processes_create_the_record(tmp_path):
    target = str(tmp_path / "record.json")
    ctx = multiprocessing.get_context("fork")  # the writers only touch files
    for round_ in range(3):
        if os.path.exists(target):
            os.unlink(target)
        queue = ctx.Queue()
        procs = [ctx.Process(target=_write_once, args=(target, f"writer {i}", queue)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = sorted(queue.get(timeout=5) for _ in procs)
        assert [o for o, _ in outcomes] == ["lost", "won"]
        assert Path(target).read_text() == next(t for o, t in outcomes if o == "won")
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_exclusive_path_never_replaces(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("first")
    with pytest.raises(FileExistsError):
        with exclusive_path(target) as tmp:
            tmp.write_text("second")
    assert target.read_text() == "first" and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("where, folder, says", [
    ("adir", False, "is a folder"),
    ("notes.txt/x.h5", False, "is a file"),
    ("notes.txt", True, "is a file"),
    ("/proc/dsdistill.h5", False, "cannot write in /proc"),
])
def test_check_output_refuses_places_that_cannot_be_written(tmp_path, where, folder, says):
    (tmp_path / "adir").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    path = where if where.startswith("/") else tmp_path / where
    with pytest.raises(ConfigError, match=says):
        check_output(path, folder=folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "notes.txt"]


def test_check_output_accepts_new_places_and_creates_nothing(tmp_path):
    assert check_output(tmp_path / "new/deeper/x.h5") == tmp_path / "new/deeper/x.h5"
    assert check_output(tmp_path / "folder", folder=True) == tmp_path / "folder"
    assert list(tmp_path.iterdir()) == []


def test_a_target_changed_by_another_writer_is_not_replaced(tmp_path):
    from dsdistill._io import file_stamp
    target = tmp_path / "set.h5"
    before = file_stamp(target)
    assert before is None
    target.write_text("the other run's set")
    with pytest.raises(ConfigError, match="changed while this run worked"):
        with atomic_path(target, unchanged_since=before) as tmp:
            tmp.write_text("this run's set")
    assert target.read_text() == "the other run's set" and list(tmp_path.iterdir()) == [target]
    stamp = file_stamp(target)
    with atomic_path(target, unchanged_since=stamp) as tmp:  # unchanged: replaced as asked
        tmp.write_text("this run's set")
    assert target.read_text() == "this run's set"


def test_the_whole_set_cache_name_stays_in_the_cache(tmp_path, monkeypatch):
    from dsdistill.evaluate.cache import whole_cache
    monkeypatch.setenv("DSDISTILL_CACHE", str(tmp_path))
    assert whole_cache("fashion-mnist", "abc", ["convnet"]) == tmp_path / "whole/fashion-mnist-abc-convnet.json"
    for name in ("imagefolder:../../..", "..", "imagefolder:/data/x"):
        path = whole_cache(name, "abc", ["convnet"])
        assert path.parent == tmp_path / "whole" and path.resolve().is_relative_to(tmp_path.resolve())
    assert whole_cache("imagefolder:/a/b", "h", ["m"]) != whole_cache("imagefolder:/a_b", "h", ["m"])


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1


def test_file_part_keeps_harmless_names_and_confines_the_rest():
    from dsdistill._io import file_part
    assert [file_part(n) for n in ("fashion-mnist", "dm.fmnist-cpu+flip=true-ipc1-s0")] == \
        ["fashion-mnist", "dm.fmnist-cpu+flip=true-ipc1-s0"]
    for name in ("..", ".", "a/../../b", "imagefolder:/data/x"):
        part = file_part(name)
        assert "/" not in part and part.strip(".") and part != name
    assert file_part("a/b") != file_part("a_b")
