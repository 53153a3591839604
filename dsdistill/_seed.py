"""Deterministic randomness: every draw comes from a generator derived from
(global seed, purpose, class, iteration, ...). No global RNG, no clock."""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *purpose: object) -> int:
    """A 63-bit seed that depends only on the global seed and the purpose tuple."""
    key = repr((int(seed),) + tuple(purpose)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, *purpose: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch.Generator for one purpose, e.g. make_generator(0, "dsa", c, it)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *purpose))
    return gen


def seeded_init(module: torch.nn.Module, seed: int, *purpose: object) -> torch.nn.Module:
    """Re-initialise `module`'s parameters reproducibly without touching the caller's RNG.

    torch's nn.init draws from the global RNG, so we fork it, seed it, and reset parameters.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, *purpose))
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return module
