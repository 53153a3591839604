"""The evaluation cache: where it lives, the whole-set cache names and the resume-log key."""
from __future__ import annotations

import hashlib
import json

from dsdistill.evaluate import get_protocol
from dsdistill.evaluate.cache import cache_dir, resume_log, whole_cache
from dsdistill.synthesizers import create_synthesizer

SMOKE = get_protocol("smoke")


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


