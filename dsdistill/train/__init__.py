"""Supervised training: the one loop (loop.py), its recipes (recipe.py) and the real-data trainer (real.py)."""
from .loop import Augmentation, Data, EpochEnd, MicroBatch, batch_order, train_epochs, train_model
from .recipe import OPTIMIZERS, MultiStep, Recipe, SmoothedCosine

__all__ = ["Augmentation", "Data", "EpochEnd", "MicroBatch", "batch_order", "train_epochs", "train_model",
           "OPTIMIZERS", "MultiStep", "Recipe", "SmoothedCosine"]
