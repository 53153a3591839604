"""Building a teacher folder as one library call: a dataclass request per kind, registered in TEACHER_BUILDERS.

A request's fields are the options of its command (`dsdistill pool|experts|committee`, dashes for underscores):
the CLI maps its arguments onto one, a suite's `[[prerequisites]]` command is parsed into one
(dsdistill.bench.prerequisites), and both call build_teacher. So a new kind of trained model is a module, a request
here and its tests, and the policy a command applies (the experts' narrower default width) lives with its kind,
not in the CLI. Each request checks its options when made, before any data is read.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch

from .._registry import Registry
from ..data import RealData, load_dataset
from ..errors import ConfigError
from .committee import CommitteeRequest
from .experts import ExpertsRequest
from .folder import FolderRequest, OnUnit
from .pool import PoolRequest

TEACHER_BUILDERS: Registry[type] = Registry("teacher builder")
"""command name -> request class (its fields are the command's options)."""
for _name, _cls in (("pool", PoolRequest), ("experts", ExpertsRequest), ("committee", CommitteeRequest)):
    TEACHER_BUILDERS.register(_name)(_cls)


def request_options(cls: type) -> dict[str, dataclasses.Field]:
    """The options a request takes (its init fields), by name."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def make_request(cls: type, values: Mapping[str, Any]) -> Any:
    """A request from option values (lists become tuples); unknown names are a ConfigError listing the valid."""
    options = request_options(cls)
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; valid: {', '.join(options)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def build_teacher(request: FolderRequest, *, real: RealData | None = None, data_root: str | None = None,
                  device: str | torch.device = "cpu", command: str = "", on_unit: OnUnit | None = None) -> Path:
    """Build (or resume) what `request` asks for into request.out: on `real`, else on its dataset loaded from
    `data_root` (ZCA-whitened when the request says) onto `device`. `command` is recorded in the manifest;
    on_unit(entry) runs after each newly trained model. Returns the folder."""
    if real is None:
        real = load_dataset(request.dataset, data_root, zca=request.zca, device=device)
    return request.build(real, command, on_unit)
