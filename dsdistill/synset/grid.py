"""A class-by-class picture of a synthetic set: the quickest check that a run did something sane. One column per
class under its name, a title (method, dataset, IPC), and a display range taken from the set's own pixels."""
from __future__ import annotations

import os
from typing import Callable

from pathlib import Path

import numpy as np
import torch

from .._io import atomic_path
from ..errors import ConfigError
from .set import SyntheticSet

PADDING = 2
"""Image pixels between cells (and around the grid), as torchvision's make_grid draws them."""


def to_unit_pixels(synset: SyntheticSet) -> torch.Tensor:
    """Undo the per-channel normalisation: stored images -> pixels in [0, 1]."""
    mean = torch.tensor(synset.mean, dtype=synset.images.dtype, device=synset.images.device)
    std = torch.tensor(synset.std, dtype=synset.images.dtype, device=synset.images.device)
    return synset.images * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)


DISPLAY_QUANTILES = (0.005, 0.995)
"""The display range comes from these quantiles of the set's own pixels (ours): a synthesised set (DM's, say)
leaves [0, 1], and clamping to [0, 1] would blow those pixels out to black and white; the range is widened to
hold [0, 1], so a set of real images is shown as it is."""

FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}   # matplotlib writes JPEG through Pillow


def display_range(pixels: torch.Tensor) -> tuple[float, float]:
    """(low, high): the set's DISPLAY_QUANTILES, widened to hold [0, 1]."""
    values = pixels.detach().float().flatten().cpu().numpy()
    low, high = np.quantile(values, DISPLAY_QUANTILES) if values.size else (0.0, 1.0)
    return min(float(low), 0.0), max(float(high), 1.0)


def grid_title(synset: SyntheticSet) -> str:
    return f"{synset.method} · {synset.dataset} · IPC {synset.ipc}"


def range_note(low: float, high: float) -> str:
    """What the picture says under itself about its display range."""
    return (f"display range [{low:.2f}, {high:.2f}]: the set's {100 * DISPLAY_QUANTILES[0]:g}-"
            f"{100 * DISPLAY_QUANTILES[1]:g}% pixel quantiles, widened to hold [0, 1]; beyond it clipped")


def grid_cells(synset: SyntheticSet, pixels: torch.Tensor, max_per_class: int) -> torch.Tensor:
    """Cells (rows, classes, C, H, W): one column per class, its first images top to bottom, blank (white, 1.0)
    cells where a class has fewer images than the tallest column."""
    labels = synset.labels.to(pixels.device)
    per_class = [torch.nonzero(labels == c).flatten()[:max_per_class]
                 for c in range(synset.num_classes)]
    rows = max(1, max(len(idx) for idx in per_class))
    cells = torch.ones((rows, synset.num_classes) + tuple(pixels.shape[1:]), dtype=pixels.dtype,
                       device=pixels.device)
    for c, idx in enumerate(per_class):
        cells[: len(idx), c] = pixels[idx]
    return cells


def mosaic(cells: torch.Tensor) -> np.ndarray:
    """(rows, classes, C, H, W) cells in [0, 1] -> one (height, width[, 3]) image with PADDING white pixels
    between and around them."""
    rows, cols, ch, h, w = cells.shape
    out = np.ones((rows * (h + PADDING) + PADDING, cols * (w + PADDING) + PADDING, ch), dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            y, x = PADDING + i * (h + PADDING), PADDING + j * (w + PADDING)
            out[y:y + h, x:x + w] = cells[i, j].permute(1, 2, 0).numpy()
    return out[..., 0] if ch == 1 else out


def save_grid(synset: SyntheticSet, path: str | os.PathLike, *,
              to_pixels: Callable[[torch.Tensor], torch.Tensor] | None = None,
              max_per_class: int = 10) -> None:
    """Write a picture (PNG, or JPEG for .jpg/.jpeg) with one column per class, headed by its name, up to
    ``max_per_class`` images down each column, and a title naming method, dataset and IPC.

    ``to_pixels(images) -> pixels`` replaces the default un-normalisation (mean/std); a ZCA set needs it (the
    dataset's inverse whitening), since the file's ZCA state has no fixed layout. Pixels are shown over the set's
    own display_range, stated under the picture; the file appears only when complete.
    """
    from matplotlib.figure import Figure   # late: matplotlib is slow to import; no pyplot state

    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot write a grid as {Path(path).suffix or 'a file without a suffix'!r}: "
                          f"name the output .png, .jpg or .jpeg")
    if max_per_class < 1:
        raise ConfigError(f"max_per_class must be >= 1, got {max_per_class}")
    if to_pixels is None:
        if synset.image_space != "normalized":
            raise ConfigError(f"cannot draw a {synset.image_space!r} set by un-normalising it; "
                              f"pass to_pixels= (e.g. the dataset's inverse ZCA)")
        pixels = to_unit_pixels(synset)
    else:
        pixels = to_pixels(synset.images)
    pixels = pixels.detach().float().cpu()
    low, high = display_range(pixels)
    cells = grid_cells(synset, ((pixels - low) / (high - low)).clamp(0, 1), max_per_class)
    image = mosaic(cells)
    rows, cols = cells.shape[:2]
    zoom = max(1, round(56 / cells.shape[-1]))                       # about 56 screen pixels per image
    width = max(4.0, image.shape[1] * zoom / 100 + 1.0)
    fig = Figure(figsize=(width, image.shape[0] * zoom / 100 + 1.2), dpi=100)
    ax = fig.add_axes((0.5 / width, 0.45 / fig.get_figheight(), 1 - 0.6 / width, 1 - 1.1 / fig.get_figheight()))
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    h, w = cells.shape[-2:]
    ax.set_xticks([PADDING + j * (w + PADDING) + (w - 1) / 2 for j in range(cols)])
    ax.set_xticklabels(synset.class_names, fontsize=7, rotation=0 if cols <= 10 else 90)
    ax.xaxis.tick_top()
    ax.set_yticks([PADDING + i * (h + PADDING) + (h - 1) / 2 for i in range(rows)])
    ax.set_yticklabels([f"image {i + 1}" for i in range(rows)], fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(grid_title(synset), fontsize=10, y=1 - 0.12 / fig.get_figheight())
    fig.text(0.5, 0.12 / fig.get_figheight(), range_note(low, high), ha="center", va="bottom", fontsize=7,
             color="#444")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **({"metadata": {"Software": None}} if fmt == "png" else {}))
