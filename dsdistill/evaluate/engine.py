"""How a training path runs each forward: in the protocol's precision, and compiled or not.

The loop and fast paths are one trainer (trainer.train_loop) with two engines: `fast` compiles every model's
forward with torch.compile (inductor), once per graph (train and eval mode, each batch shape), and shares the
compiled code between the models of a run (their parameters are graph inputs). The models, their seeds, data
orders and augmentation draws are the loop's, so the fast path computes the loop's function; a compiled kernel may
fuse and reorder float sums, so the two agree to rounding, not to the byte (benchmarks/eval_speed.py shows the
accuracies side by side).

Precision is the protocol's (Protocol.precision), never a path's: under bf16 every path autocasts, so a path
changes the speed of a score and never what it means.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager
from weakref import WeakKeyDictionary

import torch
from torch import Tensor, nn

from .._compile import compiled
from ..errors import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}   # Protocol.precision -> the autocast dtype (None: off)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def native_bf16(device: torch.device) -> bool:
    """Whether the device has bf16 arithmetic units (AVX512-BF16 or AMX on a CPU), detected, never assumed;
    without them bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Engine:
    """precision: the protocol's; compiled: torch.compile each model's forward (the fast path)."""
    precision: str = "fp32"
    compiled: bool = False
    _forwards: WeakKeyDictionary = field(default_factory=WeakKeyDictionary, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_precision(self.precision)

    def autocast(self, device: torch.device) -> ContextManager:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def forward(self, model: nn.Module) -> Callable[[Tensor], Tensor]:
        """model's forward as this engine runs it (compiled once per model object, then reused)."""
        if not self.compiled:
            return model
        fn = self._forwards.get(model)
        if fn is None:
            fn = self._forwards[model] = compiled(model, type(model).__name__, "use --path loop")
        return fn
