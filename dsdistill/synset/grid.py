"""A class-by-class picture of a synthetic set: the quickest check that a run did something sane."""
from __future__ import annotations

import os
from typing import Callable

import torch

from .._io import atomic_path
from ..errors import ConfigError
from .set import SyntheticSet

PADDING = 2
"""Pixels between cells (and around the grid), as torchvision's make_grid draws them."""


def to_unit_pixels(synset: SyntheticSet) -> torch.Tensor:
    """Undo the per-channel normalisation: stored images -> pixels in [0, 1]."""
    mean = torch.tensor(synset.mean, dtype=synset.images.dtype, device=synset.images.device)
    std = torch.tensor(synset.std, dtype=synset.images.dtype, device=synset.images.device)
    return synset.images * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)


def grid_cells(synset: SyntheticSet, pixels: torch.Tensor, max_per_class: int) -> torch.Tensor:
    """Cells in row-major order: one row per class, its first images left to right, blank
    (white) cells where a class has fewer images than the widest row."""
    labels = synset.labels.to(pixels.device)
    per_class = [torch.nonzero(labels == c).flatten()[:max_per_class]
                 for c in range(synset.num_classes)]
    columns = max(1, max(len(idx) for idx in per_class))
    cells = torch.ones((synset.num_classes, columns) + tuple(pixels.shape[1:]),
                       dtype=pixels.dtype, device=pixels.device)
    for c, idx in enumerate(per_class):
        cells[c, : len(idx)] = pixels[idx]
    return cells.flatten(0, 1)


def save_grid(synset: SyntheticSet, path: str | os.PathLike, *,
              to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
              max_per_class: int = 10) -> None:
    """Write a PNG with one row per class and up to ``max_per_class`` images per row.

    ``to_pixels(images) -> pixels`` replaces the default un-normalisation (mean/std); a ZCA set
    needs it (the dataset's inverse whitening), since the file's ZCA state has no fixed layout.
    Pixels are clamped to [0, 1]; the file appears only when complete.
    """
    from torchvision.utils import save_image  # late: torchvision is slow to import

    if max_per_class < 1:
        raise ConfigError(f"max_per_class must be >= 1, got {max_per_class}")
    if to_pixels is None:
        if synset.image_space != "normalized":
            raise ConfigError(f"cannot draw a {synset.image_space!r} set by un-normalising it; "
                              f"pass to_pixels= (e.g. the dataset's inverse ZCA)")
        pixels = to_unit_pixels(synset)
    else:
        pixels = to_pixels(synset.images)
    cells = grid_cells(synset, pixels.detach().float().clamp(0, 1).cpu(), max_per_class)
    columns = cells.shape[0] // synset.num_classes
    with atomic_path(path) as tmp:
        save_image(cells, tmp, nrow=columns, padding=PADDING, pad_value=1.0, format="png")
