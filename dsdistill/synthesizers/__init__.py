"""Methods that make synthetic sets: selection baselines and synthesizers, in one registry.

Method modules are listed explicitly (no star-import side effects); a new method is one file
plus one line here.
"""
from __future__ import annotations

from typing import Any

from . import cvdd, datadam, dm, mtt, ncfm, select  # noqa: F401  (each registers itself)
from .base import Budget, Interrupted, State, SynthConfig, Synthesizer
from .method import Method, check_ipc, class_major_labels, new_set, not_separable
from .registry import SYNTHESIZERS, register

__all__ = ["SYNTHESIZERS", "Method", "Synthesizer", "SynthConfig", "State", "Budget", "Interrupted", "register",
           "create_synthesizer", "resolve_method", "check_ipc", "class_major_labels", "new_set",
           "not_separable"]


def resolve_method(spec: str) -> tuple[type, dict[str, Any]]:
    """'datadam.official' -> (DataDAM, that preset's values); 'dm' -> (DM, {})."""
    name, _, preset = spec.partition(".")
    cls = SYNTHESIZERS.get(name)
    if not preset:
        return cls, {}
    presets = getattr(cls, "PRESETS", {})
    if preset not in presets:
        from ..errors import UnknownNameError
        raise UnknownNameError(f"unknown preset {spec!r}; valid: {', '.join(f'{name}.{p}' for p in presets) or 'none'}")
    return cls, dict(presets[preset])


def create_synthesizer(name: str, config: Any = None, **overrides: Any) -> Method:
    """create_synthesizer("datadam.official", flip=True): presets first, explicit values win."""
    cls, preset = resolve_method(name)
    preset.pop("iterations", None)
    return cls(config, **{**preset, **overrides})
