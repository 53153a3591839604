"""Dataclass configs overridable from the command line with `--set key=value`."""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, Iterable

from .errors import ConfigError


def _coerce(raw: str, annotation: Any, key: str) -> Any:
    """Turn a CLI string into the field's type (bool, int, float, str, tuples, optionals)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if raw.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(raw, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"--set {key}={raw}: expected {annotation}")
    if annotation is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--set {key}={raw}: expected true or false")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except ValueError:
            raise ConfigError(f"--set {key}={raw}: expected {annotation.__name__}") from None
    if origin in (tuple, list):
        try:
            value = json.loads(raw) if raw.startswith("[") else [v for v in raw.split(",") if v]
        except json.JSONDecodeError:
            raise ConfigError(f"--set {key}={raw}: expected a comma-separated list") from None
        inner = args[0] if args else str
        return origin(_coerce(str(v), inner, key) for v in value)
    return raw


SIGNED = "signed"  # field metadata key: this number may be negative (every other number in a config may not)


def _accepts(value: Any, annotation: Any) -> bool:
    """Whether `value` is of the field's declared type (int passes for float; unknown annotations pass)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_accepts(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        inner = [a for a in args if a is not Ellipsis] or [Any]
        return isinstance(value, (tuple, list)) and all(_accepts(v, inner[0]) for v in value)
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def check_values(config: Any) -> Any:
    """Every field of a config dataclass holds a value of its declared type, numbers are finite, and no number is
    negative unless its field says it may be (metadata SIGNED). Done when a config is made, so a suite's
    `iterations = "10"` or a `--set checkpoint_every=-1` is refused before anything runs, not when its cell does."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _accepts(value, hints.get(f.name, Any)):
            raise ConfigError(f"option {f.name} = {value!r}: expected {_type_name(hints[f.name])}")
        numbers = value if isinstance(value, (tuple, list)) else [value]
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not math.isfinite(number):
                raise ConfigError(f"option {f.name} = {number}: expected a finite number")
            if number < 0 and not f.metadata.get(SIGNED):
                raise ConfigError(f"option {f.name} = {number}: must not be negative")
    return config


def parse_overrides(config_cls: type, pairs: Iterable[str]) -> dict[str, Any]:
    """['lr_img=1', 'flip=true'] -> {'lr_img': 1.0, 'flip': True}; unknown keys are an error."""
    hints = typing.get_type_hints(config_cls)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in fields:
            raise ConfigError(f"unknown option {key!r} for {config_cls.__qualname__}; valid: {', '.join(sorted(fields))}")
        out[key] = _coerce(raw.strip(), hints[key], key)
    return out


def make_config(config_cls: type, overrides: dict[str, Any] | None = None) -> Any:
    """Build a config; None values are dropped so unset CLI values never override defaults or presets."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(unknown))} for {config_cls.__qualname__}; "
                          f"valid: {', '.join(sorted(fields))}")
    return check_values(config_cls(**overrides))


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def without_added_later(fields: dict[str, Any], added_later: dict[str, Any]) -> dict[str, Any]:
    """`fields` less the options added after files were written that still hold the value that behaves as before,
    so an identity (a run's key, a folder's header) written before they existed still matches."""
    return {k: v for k, v in fields.items() if not (k in added_later and v == added_later[k])}
