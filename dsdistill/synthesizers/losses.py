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


def empirical_cf(features: Tensor, freqs: Tensor) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of the empirical characteristic function, mean_i exp(j t^T f_i).

    features: [K, n, D], freqs: [K, F, D] -> two [K, F].
    """
    proj = features @ freqs.transpose(-1, -2)
    return proj.cos().mean(-2), proj.sin().mean(-2)


def cf_discrepancy(real: Tensor, syn: Tensor, freqs: Tensor, alpha: float = 0.5, scale: float = 300.0,
                   clamp: float = 1e-12) -> Tensor:
    """NCFM (Wang et al., CVPR 2025, Eq. 7-8 as the official code computes it): features are
    L2-normalised per row; per frequency sqrt(alpha * amplitude^2 + (1 - alpha) * phase) with
    amplitude = |Phi_r| - |Phi_s| and phase = 2|Phi_r||Phi_s|(1 - cos(phase difference)) clamped
    below (the sqrt's gradient at 0); mean over frequencies, times `scale`, summed over classes.
    With alpha = 0.5 both terms weigh 0.5, the code's alpha = beta = 0.5.

    real: [K, n, D], syn: [K, m, D], freqs: [K, F, D].
    """
    re_r, im_r = empirical_cf(F.normalize(real, dim=-1), freqs)
    re_s, im_s = empirical_cf(F.normalize(syn, dim=-1), freqs)
    mod_r = (re_r ** 2 + im_r ** 2).sqrt()
    mod_s = (re_s ** 2 + im_s ** 2).sqrt()
    amplitude = (mod_r - mod_s) ** 2
    phase = (2 * (mod_r * mod_s - re_r * re_s - im_r * im_s)).clamp_min(clamp)
    return scale * (alpha * amplitude + (1 - alpha) * phase).sqrt().mean(-1).sum()


def bn_statistics_loss(means: list[Tensor], variances: list[Tensor], running_means: list[Tensor],
                       running_vars: list[Tensor], first_multiplier: float = 10.0) -> Tensor:
    """SRe2L / CV-DD recover: sum over BN layers l of c_l * (||mu_l - mu_l^run||_2 + ||var_l - var_l^run||_2).

    mu_l, var_l: per-channel mean and biased variance of the BN layer's INPUT over (N, H, W); c_1 =
    first_multiplier (CV-DD `first_bn_multiplier`, default 10), c_l = 1 after it.
    """
    total = means[0].new_zeros(())
    for layer, (mu, var, rmu, rvar) in enumerate(zip(means, variances, running_means, running_vars)):
        weight = first_multiplier if layer == 0 else 1.0
        total = total + weight * (torch.linalg.vector_norm(mu - rmu) + torch.linalg.vector_norm(var - rvar))
    return total
