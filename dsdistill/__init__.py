"""dsdistill: dataset distillation with one honest evaluator.

The public API in a few names:

    real = load_dataset("fashion-mnist")
    synset = create_synthesizer("datadam").fit(real, ipc=10, seed=0, budget=Budget(minutes=10))
    report = evaluate(synset, "dc", data=real)
"""
__version__ = "0.1.0"

from .data import load_dataset  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .models import create_model  # noqa: E402
from .synset import SyntheticSet  # noqa: E402
from .synthesizers import Budget, create_synthesizer  # noqa: E402

__all__ = ["__version__", "load_dataset", "create_model", "create_synthesizer", "Budget", "evaluate", "SyntheticSet"]
