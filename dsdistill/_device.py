"""--device auto|cpu|cuda[:i] resolution; no code assumes a CPU."""
from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
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
