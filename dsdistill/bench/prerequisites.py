"""A suite's prerequisites as library calls, never through the command line.

A `[[prerequisites]]` entry keeps its `command = "dsdistill pool ..."` string (what a person would type to build it
by hand), and the suite parses it, when it loads, into the request of a registered builder: the teacher folders of
dsdistill.teachers.TEACHER_BUILDERS (pool, experts, committee) and `select`, a selected set a method starts from.
The options a command takes are its request dataclass's fields (--out -> out, --set -> set, repeatable for a tuple,
a flag for a bool); --data-root and --device say where and how to build, not what, and --quiet is accepted and left
to the bench run's own setting. An unknown command or option is a mistake found before anything runs.
"""
from __future__ import annotations

import dataclasses
import shlex
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from .._config import parse_overrides
from .._device import resolve_device
from ..data import RealData, load_dataset
from ..errors import ConfigError
from ..synthesizers import SYNTHESIZERS, create_synthesizer
from ..teachers import TEACHER_BUILDERS, make_request, request_options


@dataclass(frozen=True)
class SelectRequest:
    """`dsdistill select`: IPC real images per class picked by a selection method, written as a set file."""

    zca: ClassVar[bool] = False
    method: str
    ipc: int
    out: str
    dataset: str = "fashion-mnist"
    seed: int = 0
    set: tuple[str, ...] = ()  # method options, KEY=VALUE

    def build(self, real: RealData, command: str = "", on_unit: Callable | None = None) -> Path:
        cls = SYNTHESIZERS.get(self.method)
        if cls.kind != "selection":
            raise ConfigError(f"{self.method!r} is a synthesizer; a prerequisite selects (random, herding, k-center)")
        synset = create_synthesizer(self.method, **parse_overrides(cls.Config, self.set)).fit(real, self.ipc,
                                                                                              seed=self.seed)
        synset.extra.setdefault("command", command)
        synset.save(self.out)
        return Path(self.out)


BUILDERS: dict[str, type] = {**dict(TEACHER_BUILDERS.items()), "select": SelectRequest}
"""command name -> request class: what a prerequisite may build."""
WHERE: dict[str, type] = {"data_root": str, "device": str, "quiet": bool}
"""The options every command takes that say where and how, not what."""


@dataclass(frozen=True)
class Build:
    """A parsed prerequisite command: what to build, and where from (None: the bench run's own)."""

    request: Any
    data_root: str | None = None
    device: str | None = None


def _value(raw: str, kind: Any, option: str, name: str) -> Any:
    given = [a for a in typing.get_args(kind) if a is not type(None)]
    if len(given) == 1 and type(None) in typing.get_args(kind):
        kind = given[0]  # an option that defaults to None (the request's preset decides) given a value
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"`dsdistill {name}` option {option} expects {kind.__name__}, got {raw!r}") from None
    return raw


def parse_command(command: str) -> Build:
    """'dsdistill pool --dataset mnist --set width=64 --out DIR' -> Build(PoolRequest(...)); ConfigError naming the
    unknown command or option (and the valid ones), a missing value or a required option not given."""
    parts = shlex.split(command)
    if len(parts) < 2 or parts[0] != "dsdistill":
        raise ConfigError(f"the command must be a dsdistill command, got {command!r}")
    name = parts[1]
    if name not in BUILDERS:
        raise ConfigError(f"`dsdistill {name}` cannot be a prerequisite; valid: {', '.join(sorted(BUILDERS))}")
    cls = BUILDERS[name]
    hints = typing.get_type_hints(cls)
    options = request_options(cls)
    values: dict[str, Any] = {}
    where: dict[str, Any] = {}
    tokens = iter(parts[2:])
    for token in tokens:
        option, eq, raw = token.partition("=")
        key = option[2:].replace("-", "_")
        if not option.startswith("--") or (key not in options and key not in WHERE):
            valid = " ".join(f"--{k.replace('_', '-')}" for k in [*options, *WHERE])
            raise ConfigError(f"`dsdistill {name}` has no option {option!r} here; valid: {valid}")
        kind = WHERE[key] if key in WHERE else hints[key]
        target = where if key in WHERE else values
        if kind is bool:
            target[key] = True
            continue
        if not eq:
            raw = next(tokens, None)
            if raw is None:
                raise ConfigError(f"`dsdistill {name}` option {option} needs a value")
        if typing.get_origin(kind) is tuple:
            target[key] = (*target.get(key, ()), raw)
        else:
            target[key] = _value(raw, kind, option, name)
    missing = [f"--{k.replace('_', '-')}" for k, f in options.items() if k not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"`dsdistill {name}` needs {', '.join(missing)}")
    return Build(make_request(cls, values), where.get("data_root"), where.get("device"))


def build_prerequisite(build: Build, command: str, *, data_root: str | None = None,
                       device: str | torch.device = "cpu", on_unit: Callable[[dict], None] | None = None) -> Path:
    """Build (or resume) what a parsed prerequisite asks for, on its dataset from its --data-root and --device or
    else the given ones. `command` is recorded as what made it (as the command line would record itself)."""
    request = build.request
    real = load_dataset(request.dataset, build.data_root or data_root, zca=request.zca,
                        device=resolve_device(build.device) if build.device else device)
    return request.build(real, " ".join(shlex.split(command)), on_unit)
