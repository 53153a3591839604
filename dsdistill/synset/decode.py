"""Decoders: how stored images become training images.

A set file names its decoder; the evaluator applies it before training, so a method that stores
images in a compressed parameterisation is still scored under the same protocol. Reports count the
stored images (the budget), not the decoded ones.

``multiformation-F`` is IDC's multi-formation (Kim et al., ICML 2022; used by NCFM with F = 2):
each stored H x W image holds an F x F grid of tiles; each tile is bilinearly upsampled back to
H x W, so one stored image trains as F*F images with its label repeated.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

_MULTIFORMATION = re.compile(r"multiformation-(\d+)")


def is_known_decoder(name: str) -> bool:
    """``none`` or ``multiformation-F`` (F >= 2: each stored image decodes to F*F training images)."""
    if name == "none":
        return True
    match = _MULTIFORMATION.fullmatch(name)
    return match is not None and int(match.group(1)) >= 2


def decoder_factor(decoder: str) -> int:
    """Training images per stored image (1 for ``none``)."""
    if not is_known_decoder(decoder):
        raise ConfigError(f"unknown decoder {decoder!r}; known: none, multiformation-F (F >= 2)")
    return 1 if decoder == "none" else int(_MULTIFORMATION.fullmatch(decoder).group(1)) ** 2


def tile_size(size: int, factor: int) -> int:
    """Side of one tile: ceil(H / F), as IDC's decoder splits the image."""
    return math.ceil(size / factor)


def multiformation_decode(images: Tensor, factor: int) -> Tensor:
    """[N, C, H, W] -> [N*F*F, C, H, W], image-major (stored image i gives rows i*F*F ... i*F*F+F*F-1).

    Differentiable, so synthesizers match through it."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    th, tw = tile_size(h, factor), tile_size(w, factor)
    tiles = [images[:, :, i * th:(i + 1) * th, j * tw:(j + 1) * tw]
             for i in range(factor) for j in range(factor)]
    upsampled = [F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False) for t in tiles]
    return torch.stack(upsampled, dim=1).reshape(n * factor * factor, c, h, w)


def multiformation_encode(images: Tensor, factor: int) -> Tensor:
    """The inverse layout: [N*F*F, C, H, W] -> [N, C, H, W], each group of F*F images resized
    (nearest, F.interpolate's default, as NCFM's mixed init) into the tiles of one stored image."""
    if factor == 1:
        return images
    m, c, h, w = images.shape
    if m % (factor * factor):
        raise ValueError(f"{m} images do not fill stored images of {factor * factor} tiles")
    th, tw = tile_size(h, factor), tile_size(w, factor)
    small = F.interpolate(images, size=(th, tw), mode="nearest")
    grid = small.reshape(m // factor ** 2, factor, factor, c, th, tw)
    stored = grid.permute(0, 3, 1, 4, 2, 5).reshape(m // factor ** 2, c, factor * th, factor * tw)
    return stored[:, :, :h, :w].contiguous()


def decode(images: Tensor, labels: Tensor, decoder: str) -> tuple[Tensor, Tensor]:
    """Training images and their labels (hard [N] or soft [N, K]) for a stored set."""
    per_image = decoder_factor(decoder)
    if per_image == 1:
        return images, labels
    return multiformation_decode(images, math.isqrt(per_image)), labels.repeat_interleave(per_image, dim=0)
