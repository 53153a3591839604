"""dsdistill: dataset distillation with one honest evaluator.

The public API in a few names:

    real = load_dataset("fashion-mnist")
    synset = create_synthesizer("datadam").fit(real, ipc=10, seed=0, budget=Budget(minutes=10))
    report = evaluate(synset, "dc", data=real)
    report = evaluate_tensors(images, labels, "dc", dataset="fashion-mnist")   # another tool's tensors

Names load on first use (PEP 562), so `import dsdistill` and the command line start without importing torch
and every method: a Ctrl-C during start-up then meets the CLI's handler, not an import traceback.
"""
from __future__ import annotations

import sys

_ARGV = getattr(sys, "orig_argv", [])
if "-m" in _ARGV[:-1] and _ARGV[_ARGV.index("-m") + 1] == "dsdistill":
    # `python -m dsdistill` is importing us: hold Ctrl-C until __main__ has imported the CLI (a SIGINT inside
    # torch's C++ import aborts the process), then answer it in one line with 130 (__main__.run). _signal is
    # built in (signal.py imports enum: a wider window before the mask)
    import _signal
    if hasattr(_signal, "pthread_sigmask"):
        _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT})

import importlib
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__

_API = {  # public name -> the module that defines it
    "load_dataset": ".data",
    "create_model": ".models",
    "create_synthesizer": ".synthesizers",
    "Budget": ".synthesizers",
    "evaluate": ".evaluate",
    "evaluate_tensors": ".evaluate",
    "get_protocol": ".evaluate",
    "SyntheticSet": ".synset",
    "init_world": "._distributed",
    "load_shard": "._distributed",
    "set_deterministic": "._device",
}
__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from ._distributed import init_world, load_shard
    from .data import load_dataset
    from .evaluate import evaluate, evaluate_tensors, get_protocol
    from .models import create_model
    from .synset import SyntheticSet
    from .synthesizers import Budget, create_synthesizer


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'dsdistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


class _Package(types.ModuleType):
    """`dsdistill.evaluate` is the function, as it was when this file imported it eagerly: importing the
    subpackage of the same name must not rebind the attribute to the subpackage."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
