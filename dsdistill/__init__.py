"""dsdistill: dataset distillation with one honest evaluator.

The public API in a few names:

    real = load_dataset("fashion-mnist")
    synset = create_synthesizer("datadam").fit(real, ipc=10, seed=0, budget=Budget(minutes=10))
    report = evaluate(synset, "dc", data=real)
"""
from ._version import __version__
from ._distributed import init_world, load_shard
from .data import load_dataset
from .evaluate import evaluate
from .models import create_model
from .synset import SyntheticSet
from .synthesizers import Budget, create_synthesizer

__all__ = ["__version__", "load_dataset", "create_model", "create_synthesizer", "Budget", "evaluate", "SyntheticSet",
           "init_world", "load_shard"]
