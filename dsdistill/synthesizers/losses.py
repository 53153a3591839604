"""Pure matching losses. Inputs carry a leading class axis [K, n, ...] so one call serves all
classes (or one class, K=1); each returns the sum over classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_embedding_loss(real: Tensor, syn: Tensor) -> Tensor:
    """DM (Zhao & Bilen, WACV 2023): sum over classes of ||mean real emb - mean syn emb||^2.

    real: [K, n, D], syn: [K, m, D].
    """
    return ((real.mean(1) - syn.mean(1)) ** 2).sum()


def attention_map(activation: Tensor, power: float) -> Tensor:
    """DataDAM spatial attention: sum over channels of |f|^p, flattened, L2-normalised per sample.

    activation: [..., C, H, W] -> [..., H*W].
    """
    a = activation.abs().pow(power).sum(-3).flatten(-2)
    return F.normalize(a, p=2, dim=-1)


def attention_loss(real_maps: list[Tensor], syn_maps: list[Tensor], power: float) -> Tensor:
    """DataDAM SAM: per layer, sum over classes and positions of (mean real map - mean syn map)^2.

    Each entry: [K, n, C, H, W] activations of one block.
    """
    total = real_maps[0].new_zeros(())
    for real, syn in zip(real_maps, syn_maps):
        total = total + ((attention_map(real, power).mean(1) - attention_map(syn, power).mean(1)) ** 2).sum()
    return total
