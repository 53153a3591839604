"""dsdistill: dataset distillation with one honest evaluator."""
__version__ = "0.1.0"
