"""The one registry of methods: selection baselines and synthesizers alike."""
from __future__ import annotations

from typing import Callable, TypeVar

from .._registry import Registry

SYNTHESIZERS: Registry = Registry("method")
T = TypeVar("T")


def register(name: str) -> Callable[[T], T]:
    """Register a Method class under `name` and tell the class its name."""
    def decorator(cls: T) -> T:
        cls.name = name  # type: ignore[attr-defined]
        return SYNTHESIZERS.register(name)(cls)
    return decorator
