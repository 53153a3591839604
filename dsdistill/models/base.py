"""What every model is (FeatureNet: blocks, neck, classifier) and how to get one by name (MODELS, create_model).

Matching methods need more than logits: DataDAM matches the activation of every block, DM the embedding fed to
the classifier. FeatureNet produces both from ONE forward pass, so a family only declares its blocks.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from torch import Tensor, nn

from .._registry import Registry
from ..errors import ConfigError
from .layers import Shape, output_shape


class Stage(nn.Module):
    """One block: `body` ends in the activation that matching losses read; `down` (a pooling or nothing) then
    shrinks the map for the next block. Maps are thus taken before pooling, where DataDAM's ReLU hooks see them."""

    def __init__(self, body: nn.Module, down: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.down = down if down is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.body(x))


class FeatureNet(nn.Module):
    """A classifier built as stages -> neck -> classifier, with the embedding and block maps exposed.

    `neck` turns the last stage's output into the flat embedding (flatten, possibly pooling or hidden layers); the
    classifier is one nn.Linear sized by a dry run, so logits == classifier(embed(x)) always holds.
    """

    def __init__(self, stages: Sequence[Stage], neck: nn.Module, num_classes: int, input_shape: Shape) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.neck = neck
        embed_shape = output_shape(nn.Sequential(*self.stages, neck), input_shape)
        if len(embed_shape) != 1:
            raise ValueError(f"the neck must flatten; it gives per-sample shape {embed_shape}")
        self.input_shape: Shape = tuple(input_shape)
        self.embed_dim: int = embed_shape[0]
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    @property
    def num_blocks(self) -> int:
        """How many maps `features` returns."""
        return len(self.stages)

    def features_and_embed(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Per-block activation maps (post-activation, before pooling) and the embedding [B, embed_dim]."""
        maps = []
        for stage in self.stages:
            x = stage.body(x)
            maps.append(x)
            x = stage.down(x)
        return maps, self.neck(x)

    def features(self, x: Tensor) -> list[Tensor]:
        return self.features_and_embed(x)[0]

    def embed(self, x: Tensor) -> Tensor:
        return self.features_and_embed(x)[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.embed(x))


ModelFactory = Callable[..., FeatureNet]
"""factory(in_channels, num_classes, image_size, **options) -> FeatureNet; options are keyword parameters with
defaults, which create_model reads to validate what callers pass."""

MODELS: Registry[ModelFactory] = Registry("model")

_SIZE_ARGUMENTS = ("in_channels", "num_classes", "image_size")


def model_options(name: str) -> dict[str, Any]:
    """The options model `name` accepts, with their defaults."""
    params = inspect.signature(MODELS.get(name)).parameters
    return {p.name: p.default for p in params.values() if p.name not in _SIZE_ARGUMENTS}


def create_model(name: str, in_channels: int, num_classes: int, image_size: int, **options: Any) -> FeatureNet:
    """Build a registered model. Options set to None are dropped, so unset CLI values never override defaults."""
    factory = MODELS.get(name)
    given = {key: value for key, value in options.items() if value is not None}
    valid = model_options(name)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid: {', '.join(valid) or '(none)'}"
        )
    require_positive(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    return factory(in_channels, num_classes, image_size, **given)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return MODELS.list(pattern)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether any layer normalises across the batch (its output then depends on the other samples and it keeps
    running statistics: evaluation and vectorised training must treat it apart)."""
    return any(isinstance(m, _BATCH_NORMS) for m in model.modules())


def require_positive(**values: int) -> None:
    """ConfigError naming every size that is not a positive integer."""
    bad = [f"{key}={value!r}" for key, value in values.items() if not isinstance(value, int) or value < 1]
    if bad:
        raise ConfigError(f"must be positive integers: {', '.join(bad)}")
