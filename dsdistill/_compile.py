"""torch.compile with one clear line when it cannot compile (no C++ compiler, an unsupported op), shared by the
evaluator's fast path and the synthesizers' `compile` option. A compiled function computes the eager function; its
fused kernels may reorder float sums, so results agree to rounding, not to the byte."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

from .errors import ConfigError

F = TypeVar("F", bound=Callable)


def compiled(fn: F, what: str, fallback_hint: str) -> F:
    """torch.compile(fn) (static shapes: each batch shape is its own graph), raising ConfigError naming `what`
    and how to run without compiling when inductor fails."""
    inner = torch.compile(fn, dynamic=False)

    def run(*args, **kwargs):
        try:
            return inner(*args, **kwargs)
        except Exception as exc:  # inductor raises many kinds (BackendCompilerFailed, CalledProcessError, ...)
            if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor", "subprocess")):
                first = (str(exc).splitlines() or [""])[0][:200]
                raise ConfigError(f"could not compile {what} ({type(exc).__name__}: {first}); {fallback_hint}") from exc
            raise

    return run  # type: ignore[return-value]
