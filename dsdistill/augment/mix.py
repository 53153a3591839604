"""CutMix (Yun et al. 2019) with its random parameters sampled apart from their application (kornia style).

`sample_cutmix` draws the whole mix from one generator, in the order NCFM/IDC's rand_bbox draws it (lambda, the
partner permutation, the box centre); `apply_cutmix` pastes the box. Splitting the two lets a caller keep the draw
(e.g. to weight the targets by the pasted area) and replay it on another batch of the same shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class CutMixParams:
    """One CutMix draw: image i gets rows y1:y2, columns x1:x2 of image perm[i]."""
    perm: Tensor       # int64 [B], on the CPU (apply_cutmix moves it to the images' device)
    box: tuple[int, int, int, int]  # (y1, y2, x1, x2), clipped to the image
    height: int
    width: int

    @property
    def kept(self) -> float:
        """The share of each image left unchanged: the weight of its own target (1 - the area actually pasted)."""
        y1, y2, x1, x2 = self.box
        return 1.0 - (y2 - y1) * (x2 - x1) / (self.height * self.width)


def sample_cutmix(shape: Sequence[int], generator: torch.Generator) -> CutMixParams:
    """A CutMix draw for a batch of this shape ([B, ..., H, W]): lambda ~ Beta(1, 1) = U(0, 1), a box of area
    ~(1 - lambda) centred uniformly, and the partner of each image (NCFM/IDC rand_bbox)."""
    batch, height, width = shape[0], shape[-2], shape[-1]
    lam = float(torch.rand(1, generator=generator))
    perm = torch.randperm(batch, generator=generator)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    box = (max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width))
    return CutMixParams(perm, box, height, width)


def apply_cutmix(x: Tensor, params: CutMixParams) -> Tensor:
    """A copy of `x` with each image's box replaced by its partner's (`x` itself is not changed)."""
    y1, y2, x1, x2 = params.box
    perm = params.perm.to(x.device)
    mixed = x.clone()
    mixed[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    return mixed
