"""Differentiable augmentation: pure kernels (functional) and DSA with explicit, replayable draws."""
from . import functional
from .dsa import DSA, DSA_SAMPLERS, DSA_STRATEGY, VALID_OPS, DSAConfig, DSAParams, always_flip_for, dsa_strategy_for

__all__ = ["DSA", "DSAConfig", "DSAParams", "DSA_SAMPLERS", "DSA_STRATEGY", "VALID_OPS", "always_flip_for", "dsa_strategy_for", "functional"]
