"""Per-sample random-resized-crop + horizontal flip, per-sample jitter, and torchvision's RandomCrop(padding) +
flip, with explicit generators.

Every random op draws its parameters first (`sample_crops`, `jitter_shifts`: only from the generator passed in)
and applies them after (`resized_crop`, `roll`: pure functions of the batch and the draws), as
kornia.augmentation separates the two.

The soft-label family (SRe2L, RDED, CV-DD) trains and synthesises on RandomResizedCrop views. torchvision's
transform draws one crop for a whole 4-D batch (CV-DD's recover applies it to the batch tensor: one crop and one
flip per step, a defect listed in reference/cvdd_fyi.md A8.4); here every image gets its own crop and flip.

The crop is sampled as torchvision's RandomResizedCrop.get_params does (area fraction ~ U(scale), log aspect ratio
~ U(log ratio), up to 10 attempts, else the whole image) and applied as ONE affine resampling (crop, resize and
flip together; bilinear, via affine_grid/grid_sample), so it is differentiable in the pixels and vectorised over the
batch. Ours: torchvision crops then resizes with antialiasing; at 28-32 px the difference is interpolation only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .functional import crop, flip as flip_where

RRC_SCALE = (0.08, 1.0)     # torchvision RandomResizedCrop default, used by CV-DD recover/relabel/post-eval
RRC_RATIO = (3 / 4, 4 / 3)  # torchvision default, CV-DD
ATTEMPTS = 10               # torchvision get_params: 10 tries, then a fallback


def crop_boxes(batch: int, height: int, width: int, generator: torch.Generator,
               scale: tuple[float, float] = RRC_SCALE, ratio: tuple[float, float] = RRC_RATIO) -> Tensor:
    """[B, 4] boxes (top, left, h, w) in pixels, one per image, drawn as torchvision's get_params."""
    area = height * width
    target = area * torch.empty(batch, ATTEMPTS).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(batch, ATTEMPTS).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((batch,), -1))
    rows = torch.arange(batch)
    w = torch.where(first >= 0, w[rows, first.clamp_min(0)], torch.full((batch,), float(width)))
    h = torch.where(first >= 0, h[rows, first.clamp_min(0)], torch.full((batch,), float(height)))
    # torchvision's fallback clamps the whole image to the ratio range; a square image is its own crop
    u = torch.rand(batch, 2, generator=generator)
    top = torch.floor(u[:, 0] * (height - h + 1))
    left = torch.floor(u[:, 1] * (width - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(x: Tensor, boxes: Tensor, flips: Tensor) -> Tensor:
    """Crop each image to its box, resize back to the input size, mirror where flips[i]; differentiable."""
    batch, _, height, width = x.shape
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    top, left, h, w = boxes.unbind(1)
    sign = 1.0 - 2.0 * flips.to(device=x.device, dtype=x.dtype)
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = w / width * sign                 # align_corners=False: [-1, 1] spans the pixel edges
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sample_crops(batch: int, height: int, width: int, generator: torch.Generator, *,
                 scale: tuple[float, float] = RRC_SCALE, ratio: tuple[float, float] = RRC_RATIO,
                 flip: bool = True) -> tuple[Tensor, Tensor]:
    """(boxes [B, 4], flips [B] bool): one crop and one coin per image, drawn in that order. The coins are drawn
    even with flip=False (then all False), so a digit dataset's crops are the same draws as anyone else's."""
    boxes = crop_boxes(batch, height, width, generator, scale, ratio)
    flips = torch.rand(batch, generator=generator) < 0.5
    return boxes, flips if flip else torch.zeros_like(flips)


def random_resized_crop(x: Tensor, generator: torch.Generator, *, scale: tuple[float, float] = RRC_SCALE,
                        ratio: tuple[float, float] = RRC_RATIO, flip: bool = True) -> Tensor:
    """RandomResizedCrop + RandomHorizontalFlip(0.5), each image its own draw (flip=False for digits)."""
    boxes, flips = sample_crops(x.shape[0], x.shape[-2], x.shape[-1], generator, scale=scale, ratio=ratio, flip=flip)
    return resized_crop(x, boxes, flips)


def jitter_shifts(batch: int, limit: int, generator: torch.Generator) -> Tensor:
    """[B, 2] int64 (dy, dx) per image, each uniform in {0..limit}."""
    return torch.randint(0, limit + 1, (batch, 2), generator=generator)


def roll(x: Tensor, shifts: Tensor) -> Tensor:
    """Image i rolled by shifts[i] = (dy, dx): torch.roll(x[i], (dy, dx), dims=(-2, -1)).

    A loop over the images, on purpose. The batched form (one gather of (r - dy) % H, (c - dx) % W) gives the same
    values but was 5x slower forward on the 2-core CPU (256 x 3 x 32 x 32: 47 ms against 9 ms), and its backward
    (a scatter-add into zeros) turns -0.0 gradients into +0.0 where roll's backward copies them: not the same bytes.
    """
    return torch.stack([torch.roll(img, shifts=(dy, dx), dims=(-2, -1)) for img, (dy, dx) in zip(x, shifts.tolist())])


def jitter(x: Tensor, generator: torch.Generator, limit: int) -> Tensor:
    """Roll each image by its own (dy, dx), each uniform in {0..limit} (SRe2L/CV-DD recover: torch.roll with
    non-negative offsets; CV-DD draws one offset pair per batch, we draw one per image)."""
    if limit <= 0:
        return x
    return roll(x, jitter_shifts(x.shape[0], limit, generator))


def random_crop_flip(x: Tensor, generator: torch.Generator, padding: int, *, flip: bool = True) -> Tensor:
    """torchvision RandomCrop(size, padding) + RandomHorizontalFlip(0.5), each image its own draw: a crop of the
    zero-padded image at offset (i, j) ~ U{0..2p}^2 is the image shifted by (p - i, p - j) with zeros let in
    (functional.crop), then a coin per image. The shifts and the coins are drawn even with flip=False (digits)."""
    shifts = torch.randint(-padding, padding + 1, (x.shape[0], 2), generator=generator)
    coins = torch.rand(x.shape[0], generator=generator) < 0.5
    x = crop(x, shifts[:, 1], shifts[:, 0])
    return flip_where(x, coins) if flip else x
