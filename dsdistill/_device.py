"""--device auto|cpu|cuda[:i] resolution (no code assumes a CPU) and the --deterministic switch."""
from __future__ import annotations

import os

import torch

from .errors import ConfigError


def resolve_device(spec: str | torch.device = "auto", deterministic: bool = False) -> torch.device:
    """The device `spec` names; with `deterministic`, after `set_deterministic()` (so before any CUDA work)."""
    if deterministic:
        set_deterministic()
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ConfigError(f"bad --device {spec!r}; use auto, cpu or cuda[:i]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec} asked for CUDA but no CUDA device is available; use --device cpu")
    return device


# PyTorch's reproducibility notes (and cuBLAS's docs): with CUDA >= 10.2 a cuBLAS handle reuses workspace buffers
# in an order that can differ between runs unless the workspace is pinned to one of these configurations.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def set_deterministic(strict: bool = False) -> None:
    """Ask torch for run-to-run identical results on a GPU: deterministic algorithms, cuDNN deterministic and not
    benchmarking (autotuning may choose another kernel each run), a fixed cuBLAS workspace.

    Call before the first CUDA matrix product (the cuBLAS variable is read when its handle is made); the CLI's
    `--deterministic` calls it before it loads anything. An op with no deterministic CUDA kernel (grid_sample's
    backward, which DSA's crop, scale and rotate use, for one) warns, or raises with `strict`, rather than
    running nondeterministically in silence. On the CPU our runs are already byte-identical without it."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.use_deterministic_algorithms(True, warn_only=not strict)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
