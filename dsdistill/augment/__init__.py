"""Differentiable augmentation: pure kernels (functional) and DSA with explicit, replayable draws."""
from . import functional
from .dsa import DSA, DSA_STRATEGY, VALID_OPS, DSAConfig, DSAParams, dsa_strategy_for

__all__ = ["DSA", "DSAConfig", "DSAParams", "DSA_STRATEGY", "VALID_OPS", "dsa_strategy_for", "functional"]
