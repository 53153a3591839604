"""Building a teacher folder as one library call: a dataclass request per kind, registered in TEACHER_BUILDERS.

A request's fields are the options of its command (`dsdistill pool|experts|committee`, dashes for underscores):
the CLI maps its arguments onto one, a suite's `[[prerequisites]]` command is parsed into one
(dsdistill.bench.prerequisites), and both call build_teacher. So a new kind of trained model is a module, a request
here and its tests, and the policy a command applies (the experts' narrower default width) lives with its kind,
not in the CLI. Each request checks its options when made, before any data is read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .._registry import Registry
from ..data import RealData, load_dataset
from ..errors import ConfigError
from .committee import CommitteeRequest
from .experts import ExpertsRequest
from .folder import FolderKind, FolderRequest, OnUnit, folder_bytes, read_manifest
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


@dataclass(frozen=True)
class BuiltFolder:
    """What a folder command prints: the folder, its kind, every finished unit, its size and the request's words."""
    folder: Path
    kind: FolderKind
    entries: list[dict[str, Any]]
    bytes: int
    described: str


def build_named(name: str, values: Mapping[str, Any], *, data_root: str | None = None,
                device: str | torch.device = "cpu", command: str = "", on_unit: OnUnit | None = None) -> BuiltFolder:
    """`dsdistill pool|experts|committee`: the request TEACHER_BUILDERS names, made from those of `values` (parsed
    arguments) that it takes, built (resumably) and summarised from its manifest."""
    cls = TEACHER_BUILDERS.get(name)
    request = make_request(cls, {k: values[k] for k in request_options(cls) if k in values})
    out = build_teacher(request, data_root=data_root, device=device, command=command, on_unit=on_unit)
    kind = request.kind
    return BuiltFolder(out, kind, read_manifest(kind, out)[kind.entries], folder_bytes(kind, out), request.describe())
