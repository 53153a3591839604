"""Methods that make synthetic sets: selection baselines and synthesizers, in one registry.

Every module of this package is imported here (pkgutil), and a method module registers its class with
`@register`: a new method is one file, with no import list to extend. `factory.build` turns a spec and its
overrides into (method, budget) for the CLI, the suites and the benchmarks.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Interrupted, State, SynthConfig, Synthesizer
from .budget import DEFAULT_BUDGET, Budget, choose_budget
from .factory import Built, build, create_synthesizer, resolve_method
from .method import Method, check_ipc, check_seed, class_major_labels, new_set, not_separable
from .registry import SYNTHESIZERS, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SYNTHESIZERS", "Method", "Synthesizer", "SynthConfig", "State", "Budget", "DEFAULT_BUDGET", "Interrupted",
           "Built", "register", "build", "choose_budget", "create_synthesizer", "resolve_method", "check_ipc", "check_seed",
           "class_major_labels", "new_set", "not_separable"]
