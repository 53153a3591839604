"""Models by name. Every model is a FeatureNet: `forward` gives logits, `features_and_embed` gives the per-block
maps and the embedding from one pass, and `classifier` is the final nn.Linear.

    model = create_model("convnet", in_channels=1, num_classes=10, image_size=28)
"""
from __future__ import annotations

# Importing the family modules fills MODELS; they are listed explicitly rather than discovered.
from . import classic, convnet, resnet, torchvision_nets  # noqa: F401
from .base import (
    MODELS,
    FeatureNet,
    Stage,
    create_model,
    has_batch_norm,
    list_models,
    model_options,
)

__all__ = [
    "MODELS",
    "FeatureNet",
    "Stage",
    "create_model",
    "has_batch_norm",
    "list_models",
    "model_options",
]
