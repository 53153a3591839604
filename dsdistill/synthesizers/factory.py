"""The one factory: a method spec and its overrides -> (method, budget), for the CLI, the suites, the benchmarks
and the API alike.

A spec is METHOD[.PRESET] ("dm", "datadam.official"). The preset's values come first, then the overrides (typed
values, or `key=value` strings as --set gives them), then `flip`; every key is checked against the method's Config
dataclass here, once, so a typo fails before any work. The budget follows the one rule of `budget.choose_budget`;
the method keeps its preset's iteration count, so `fit()` without a budget runs what the CLI would.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._config import make_config, parse_overrides
from .._distributed import torchrun_env
from .._registry import unknown_name
from ..errors import ConfigError, UnknownNameError
from .budget import Budget, choose_budget
from .method import Method, not_separable
from .registry import SYNTHESIZERS

Options = Mapping[str, Any] | Sequence[str]


@dataclass(frozen=True)
class Built:
    """A method ready to fit, its budget and where that budget came from."""
    method: Method
    budget: Budget | None   # None: a selection (no budget), or a method that plans its own length (CV-DD)
    source: str             # "given", "preset", "the method's own schedule", "the default", or "none"

    def describe(self) -> str:
        """The line the CLI prints: which budget it took, and why."""
        if self.budget is None:
            return f"budget: {self.source}"
        return f"budget: {self.budget.describe()} ({self.source})"


def resolve_method(spec: str, kind: str | None = None) -> tuple[type, dict[str, Any]]:
    """'datadam.official' -> (DataDAM, that preset's values); 'dm' -> (DM, {}).

    kind ("synthesis", "selection"): an unknown name lists only the methods of that kind (what the command that
    asked can run); a known method of another kind is still returned, for the caller to say where it goes."""
    name, _, preset = spec.partition(".")
    offer = None if kind is None else [n for n, c in SYNTHESIZERS.items() if c.kind == kind]
    cls = SYNTHESIZERS.get(name, offer=offer)
    if not preset:
        return cls, {}
    presets = getattr(cls, "PRESETS", {})
    if preset not in presets:
        if not presets:
            raise UnknownNameError(f"unknown preset {spec!r}; {name} has no presets")
        raise UnknownNameError(unknown_name("preset", spec, [f"{name}.{p}" for p in presets]))
    return cls, dict(presets[preset])


def _keys(options: Options) -> list[str]:
    return list(options) if isinstance(options, Mapping) else [str(p).split("=", 1)[0].strip() for p in options]


def parse_options(cls: type, options: Options) -> dict[str, Any]:
    """Typed values from a mapping or from `key=value` strings, checked against cls.Config."""
    if not options:
        return {}
    if not dataclasses.fields(cls.Config):
        raise ConfigError(f"{cls.name} has no options; drop {', '.join(_keys(options))}")
    if isinstance(options, Mapping):
        values = dict(options)
        make_config(cls.Config, values)   # unknown keys list the valid ones
        return values
    return parse_overrides(cls.Config, options)


def build(spec: str, options: Options = (), *, flip: bool | None = None, iterations: int | None = None,
          minutes: float | None = None, config: Any = None) -> Built:
    """The method `spec` names with `options` over its preset (or over `config`, when given), and its budget."""
    cls, preset = resolve_method(spec)
    asks_flip = flip or ("flip" in _keys(options) and (not isinstance(options, Mapping) or options["flip"]))
    if asks_flip and not cls.supports_view:
        raise ConfigError(f"{cls.name} takes no FYI flip view (it matches no synthetic batch): flip applies to "
                          "synthesizers only")
    preset_iterations = preset.pop("iterations", None)
    values = {**preset, **parse_options(cls, options)}
    if flip is not None:
        values["flip"] = flip
    given = Budget(iterations=iterations, minutes=minutes) if iterations is not None or minutes is not None else None
    if cls.kind != "synthesis" and given is not None:
        raise ConfigError(f"{cls.name} makes no iterations: a selection method takes no budget (iterations/minutes)")
    method = cls(config, **values)
    method.preset_iterations = preset_iterations
    if cls.kind != "synthesis":
        return Built(method, None, "none")
    return Built(method, *choose_budget(cls, given, preset_iterations))


MAKERS = {"synthesis": ("a synthesizer", "dsdistill distill --method {}"),     # each kind of method, and the
          "selection": ("a selection method", "dsdistill select --method {}"),  # command that makes its set
          "whole": ("the whole training set", "dsdistill evaluate --whole")}


def method_specs(kind: str) -> list[str]:
    """Every spec a command of `kind` takes: each method of that kind, and for synthesizers each METHOD.PRESET."""
    specs = []
    for name, cls in SYNTHESIZERS.items():
        if cls.kind == kind:
            specs += [name] + ([f"{name}.{p}" for p in getattr(cls, "PRESETS", {})] if kind == "synthesis" else [])
    return specs


def build_for(kind: str, spec: str, options: Options = (), **budget: Any) -> Built:
    """build() for the command that makes sets of `kind`: a method of another kind names the command that makes
    its set, and under torchrun a method that couples its classes is refused here, before any rank reads data."""
    cls = resolve_method(spec, kind)[0]  # an unknown name lists only the methods of this kind
    if cls.kind != kind:
        words, command = MAKERS[cls.kind]
        raise ConfigError(f"{spec!r} is {words}; use `{command.format(spec)}`")
    built = build(spec, options, **budget)
    if torchrun_env() is not None and not built.method.class_separable:
        raise ConfigError(not_separable(built.method.name))
    return built


def checkpoint_for(out: str | PathLike, given: str | PathLike | None = None) -> Path:
    """Where a distillation into `out` keeps its run state: `given`, else OUT.ckpt beside the set (one per rank
    under torchrun: World.checkpoint_path)."""
    return Path(given) if given else Path(f"{out}.ckpt")


def create_synthesizer(name: str, config: Any = None, **overrides: Any) -> Method:
    """create_synthesizer("datadam.official", flip=True): presets first, explicit values win; `fit()` without a
    budget then runs the preset's iterations (or the method's own schedule, or the default)."""
    return build(name, overrides, config=config).method
