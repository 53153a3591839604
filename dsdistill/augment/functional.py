"""Differentiable DSA kernels: pure functions of a batch and explicit per-sample parameters.

Each kernel takes x [B, C, H, W] and parameter tensors of shape [B] (one value per image) or [1]
(one value broadcast to the whole batch, which is how a Siamese draw reaches batches of any size).
Every kernel is linear or affine in the pixels, so gradients reach the synthetic images.
Formulas and defaults follow DSA's official code (VICO-UoE/DatasetCondensation, utils.py:
rand_brightness ... rand_rotate, ParamDiffAug), named "DSA" below.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.enhance import adjust_brightness
from kornia.geometry.transform import hflip
from torch import Tensor


def _per_sample(param: Tensor, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """`param` as a flat [B] or [1] tensor on x's device; a [B] param never silently widens a batch."""
    param = torch.as_tensor(param).to(device=x.device, dtype=dtype if dtype is not None else x.dtype).reshape(-1)
    if param.numel() not in (1, x.shape[0]):
        batch = x.shape[0]
        raise ValueError(f"parameter has {param.numel()} values for a batch of {batch}; expected 1 or {batch}")
    return param


def _image_view(param: Tensor) -> Tensor:
    return param.view(-1, 1, 1, 1)


# --- color group: brightness, saturation, contrast (applied in that order by DSA) --------------

def brightness(x: Tensor, r: Tensor, ratio: float = 1.0) -> Tensor:
    """x + (r - 0.5) * ratio, r ~ U[0, 1); ratio 1.0 is DSA's `brightness`.

    kornia's adjust_brightness is exactly an additive shift when its [0, 1] clamp is off, which it
    must be: our images are normalised, not in [0, 1].
    """
    shift = (_per_sample(r, x) - 0.5) * ratio
    return adjust_brightness(x, shift, clip_output=False)


def saturation(x: Tensor, r: Tensor, ratio: float = 2.0) -> Tensor:
    """(x - m) * (r * ratio) + m with m the per-pixel channel mean; ratio 2.0 is DSA's `saturation`.

    Written with torch ops: kornia's adjust_saturation works in HSV (and its gray-subtraction variant
    uses luminance weights) and clamps to [0, 1], neither of which is DSA's plain channel mean.
    """
    factor = _image_view(_per_sample(r, x) * ratio)
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * factor + mean


def contrast(x: Tensor, r: Tensor, ratio: float = 0.5) -> Tensor:
    """(x - m) * (r + ratio) + m with m the per-image mean over C, H, W; ratio 0.5 is DSA's `contrast`.

    Written with torch ops: kornia's adjust_contrast scales about 0 and its mean-subtraction variant
    uses a luminance mean and clamps to [0, 1]; DSA scales about the plain per-image mean.
    """
    factor = _image_view(_per_sample(r, x) + ratio)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


# --- crop, cutout, flip -----------------------------------------------------------------------

def crop_shift(image_size: int, ratio: float = 0.125) -> int:
    """DSA's largest crop translation in pixels: int(size * ratio + 0.5) (4 at 28/32 px)."""
    return int(image_size * ratio + 0.5)


def crop(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Integer translation: output[r, c] = x[r - dy, c - dx], uncovered pixels 0 (DSA's pad-and-crop).

    Written with torch gathers: kornia's translate resamples bilinearly through grid_sample, which is
    exact only up to round-off; DSA copies whole pixels. Like DSA we zero-pad one pixel and clamp the
    source index onto the pad, so any shift out of the image reads 0. (DSA names its shifts the other
    way round; the draws are symmetric about 0, so the distribution is the same.)
    """
    batch, channels, height, width = x.shape
    dx = _per_sample(dx, x, torch.long)
    dy = _per_sample(dy, x, torch.long)
    rows = (torch.arange(height, device=x.device) - dy[:, None] + 1).clamp(0, height + 1).expand(batch, height)
    cols = (torch.arange(width, device=x.device) - dx[:, None] + 1).clamp(0, width + 1).expand(batch, width)
    padded = F.pad(x, (1, 1, 1, 1))
    shifted_rows = padded.gather(2, rows[:, None, :, None].expand(batch, channels, height, width + 2))
    return shifted_rows.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))


def cutout_side(image_size: int, ratio: float = 0.5) -> int:
    """DSA's cutout square side: int(size * ratio + 0.5) (16 at 32 px, 14 at 28 px)."""
    return int(image_size * ratio + 0.5)


def cutout_centre_high(image_size: int, ratio: float = 0.5) -> int:
    """Exclusive upper bound of DSA's cutout centre draw: size + (1 - side % 2)."""
    return image_size + (1 - cutout_side(image_size, ratio) % 2)


def cutout(x: Tensor, cy: Tensor, cx: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a square of side int(H * ratio + 0.5) whose centre is (cy, cx), clipped to the image.

    Rows cy - side // 2 .. cy - side // 2 + side - 1 (columns likewise), as in DSA. DSA clamps each
    index onto the image; for centres in its draw range that is the same as intersecting the square
    with the image, which a mask does without scatter. Written with torch ops because kornia's
    RandomErasing kernel fills a box drawn by its own sampler and has no centre-clamping semantics.
    """
    _, _, height, width = x.shape
    side_h, side_w = cutout_side(height, ratio), cutout_side(width, ratio)
    top = _per_sample(cy, x, torch.long)[:, None] - side_h // 2
    left = _per_sample(cx, x, torch.long)[:, None] - side_w // 2
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= top) & (rows < top + side_h)
    in_cols = (cols >= left) & (cols < left + side_w)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def flip(x: Tensor, mask: Tensor) -> Tensor:
    """Horizontal flip of the images whose mask is True (DSA: flip where r < prob_flip)."""
    mask = _per_sample(mask, x, torch.bool)
    return torch.where(_image_view(mask), hflip(x), x)


# --- scale, rotate: affine grid + bilinear grid_sample with zero padding ------------------------
# Written with torch's affine_grid/grid_sample rather than kornia's scale/rotate/warp_affine: DSA
# defines both warps as an output->input matrix in grid_sample's normalised [-1, 1] coordinates with
# torch's default align_corners=False. kornia takes a forward pixel-space matrix, inverts it and
# defaults to align_corners=True; that agrees only for square images and only up to round-off.

DSA_ALIGN_CORNERS = False  # DSA calls affine_grid/grid_sample without align_corners (torch default False)


def _warp(x: Tensor, theta: Tensor, align_corners: bool) -> Tensor:
    theta = theta.expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


def scale(x: Tensor, sx: Tensor, sy: Tensor, align_corners: bool = DSA_ALIGN_CORNERS) -> Tensor:
    """Sample the input at (sx * u, sy * v) for output point (u, v): sx > 1 shrinks the content."""
    sx, sy = _per_sample(sx, x), _per_sample(sy, x)
    sx, sy = torch.broadcast_tensors(sx, sy)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], -1), torch.stack([zero, sy, zero], -1)], -2)
    return _warp(x, theta, align_corners)


def rotate(x: Tensor, degrees: Tensor, align_corners: bool = DSA_ALIGN_CORNERS) -> Tensor:
    """Rotate about the image centre by `degrees` (DSA's theta = [[cos, -sin, 0], [sin, cos, 0]])."""
    radians = _per_sample(degrees, x) * (math.pi / 180.0)
    cos, sin, zero = torch.cos(radians), torch.sin(radians), torch.zeros_like(radians)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
    return _warp(x, theta, align_corners)
