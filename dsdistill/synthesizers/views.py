"""Views of the synthetic batch that a method matches on.

FYI (Son et al., ECCV 2024) optimises every synthetic image together with its horizontal mirror:
the matched batch is concat(S, hflip(S)) with labels duplicated, built BEFORE the method's
augmentation. Only S is stored; evaluation never adds the mirrors.
"""
from __future__ import annotations

import torch
from torch import Tensor


class Identity:
    """The batch as it is."""

    copies = 1

    def __call__(self, images: Tensor) -> Tensor:
        return images


class FlipConcat:
    """FYI: the batch followed by its horizontal mirror (a deterministic flip of the width axis)."""

    copies = 2

    def __call__(self, images: Tensor) -> Tensor:
        return torch.cat([images, images.flip(-1)])


def view_for(flip: bool) -> Identity | FlipConcat:
    return FlipConcat() if flip else Identity()
