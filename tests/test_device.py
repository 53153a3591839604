"""--deterministic: one library switch (dsdistill.set_deterministic), reached from the CLI through resolve_device."""
from __future__ import annotations

import os

import pytest
import torch

import dsdistill
from dsdistill import _device
from dsdistill.cli import build_parser


@pytest.fixture
def restore_determinism(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def test_set_deterministic_turns_on_every_switch(restore_determinism):
    torch.backends.cudnn.benchmark = True
    dsdistill.set_deterministic()
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    _device.set_deterministic(strict=True)
    assert not torch.is_deterministic_algorithms_warn_only_enabled()


def test_a_users_cublas_setting_is_kept(restore_determinism, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other documented value
    _device.set_deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_resolve_device_switches_only_when_asked(restore_determinism):
    torch.use_deterministic_algorithms(False)
    _device.resolve_device("cpu")
    assert not torch.are_deterministic_algorithms_enabled()
    _device.resolve_device("cpu", deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("command", ["distill", "evaluate"])
def test_distill_and_evaluate_take_the_flag(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and command in a.choices).choices[command]
    assert "--deterministic" in sub.format_help()
