"""DSA (Differentiable Siamese Augmentation) with parameters sampled apart from their application.

DSA's official code (VICO-UoE/DatasetCondensation, utils.py DiffAugment/ParamDiffAug) makes the
real and synthetic batches share a transform by re-seeding the global RNG before each draw and
copying sample 0's parameters over the batch. Here `sample` draws from an explicit generator and
returns the draw; `apply` replays it on any batch, so Siamese use needs no reseeding and works for
batches of different sizes. kornia's own samplers are not used because they draw from the global
RNG and produce batch-sized parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import Tensor

from . import functional as AF
from ..errors import ConfigError

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"  # DSA official code / README default
IDENTITY_STRATEGIES = ("", "none")  # DSA treats "none"/"None" as identity; "" is "no strategy"


@dataclass(frozen=True)
class DSAConfig:
    """DSA's strategy string and ParamDiffAug's ratios; every default is DSA's official value."""

    strategy: str = DSA_STRATEGY  # DSA default; digits drop "flip" (see dsa_strategy_for)
    prob_flip: float = 0.5  # ParamDiffAug.prob_flip
    ratio_scale: float = 1.2  # ParamDiffAug.ratio_scale: sx, sy ~ U[1/1.2, 1.2]
    ratio_rotate: float = 15.0  # ParamDiffAug.ratio_rotate: degrees ~ U[-15, 15]
    ratio_crop_pad: float = 0.125  # ParamDiffAug.ratio_crop_pad: shift up to int(H * 0.125 + 0.5)
    ratio_cutout: float = 0.5  # ParamDiffAug.ratio_cutout: square side int(H * 0.5 + 0.5)
    brightness: float = 1.0  # ParamDiffAug.brightness
    saturation: float = 2.0  # ParamDiffAug.saturation
    contrast: float = 0.5  # ParamDiffAug.contrast
    always_flip: bool = False  # FYI's modified sampler (cvlab-yonsei/FYI): random flip always, then one other group
    all_groups: bool = False  # IDC/NCFM batch mode: every group of the strategy, in order (not one drawn)


@dataclass(frozen=True)
class DSAParams:
    """One draw: what `apply` replays. Log or save it to reproduce an augmentation exactly."""

    group: str  # the op group(s) chosen for this call ("color", "crop", ...; "flip+crop" under always_flip), or "none"
    values: dict[str, Tensor]  # per-op parameter tensors, shape [1] (shared) or [B] (per sample)

    @property
    def groups(self) -> tuple[str, ...]:
        """The chosen groups in the order `apply` runs them."""
        return () if self.group == "none" else tuple(self.group.split("+"))


# --- one sampler and one applier per op group ---------------------------------------------------

def _uniform(generator: torch.Generator, n: int) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def _integers(generator: torch.Generator, low: int, high: int, n: int) -> Tensor:
    return torch.randint(low, high, (n,), generator=generator, device=generator.device)


def _sample_color(cfg: DSAConfig, gen: torch.Generator, n: int, size: tuple[int, int]) -> dict[str, Tensor]:
    return {"brightness": _uniform(gen, n), "saturation": _uniform(gen, n), "contrast": _uniform(gen, n)}


def _apply_color(x: Tensor, v: dict[str, Tensor], cfg: DSAConfig) -> Tensor:
    x = AF.brightness(x, v["brightness"], cfg.brightness)
    x = AF.saturation(x, v["saturation"], cfg.saturation)
    return AF.contrast(x, v["contrast"], cfg.contrast)


def _sample_crop(cfg: DSAConfig, gen: torch.Generator, n: int, size: tuple[int, int]) -> dict[str, Tensor]:
    shift_y, shift_x = (AF.crop_shift(s, cfg.ratio_crop_pad) for s in size)
    return {"crop_dx": _integers(gen, -shift_x, shift_x + 1, n), "crop_dy": _integers(gen, -shift_y, shift_y + 1, n)}


def _apply_crop(x: Tensor, v: dict[str, Tensor], cfg: DSAConfig) -> Tensor:
    return AF.crop(x, v["crop_dx"], v["crop_dy"])


def _sample_cutout(cfg: DSAConfig, gen: torch.Generator, n: int, size: tuple[int, int]) -> dict[str, Tensor]:
    high_y, high_x = (AF.cutout_centre_high(s, cfg.ratio_cutout) for s in size)
    return {"cutout_cy": _integers(gen, 0, high_y, n), "cutout_cx": _integers(gen, 0, high_x, n)}


def _apply_cutout(x: Tensor, v: dict[str, Tensor], cfg: DSAConfig) -> Tensor:
    return AF.cutout(x, v["cutout_cy"], v["cutout_cx"], cfg.ratio_cutout)


def _sample_flip(cfg: DSAConfig, gen: torch.Generator, n: int, size: tuple[int, int]) -> dict[str, Tensor]:
    return {"flip": _uniform(gen, n) < cfg.prob_flip}


def _apply_flip(x: Tensor, v: dict[str, Tensor], cfg: DSAConfig) -> Tensor:
    return AF.flip(x, v["flip"])


def _sample_scale(cfg: DSAConfig, gen: torch.Generator, n: int, size: tuple[int, int]) -> dict[str, Tensor]:
    low, high = 1.0 / cfg.ratio_scale, cfg.ratio_scale
    return {"scale_x": _uniform(gen, n) * (high - low) + low, "scale_y": _uniform(gen, n) * (high - low) + low}


def _apply_scale(x: Tensor, v: dict[str, Tensor], cfg: DSAConfig) -> Tensor:
    return AF.scale(x, v["scale_x"], v["scale_y"])


def _sample_rotate(cfg: DSAConfig, gen: torch.Generator, n: int, size: tuple[int, int]) -> dict[str, Tensor]:
    return {"rotate_degrees": (_uniform(gen, n) - 0.5) * 2.0 * cfg.ratio_rotate}


def _apply_rotate(x: Tensor, v: dict[str, Tensor], cfg: DSAConfig) -> Tensor:
    return AF.rotate(x, v["rotate_degrees"])


@dataclass(frozen=True)
class _Group:
    sample: Callable[[DSAConfig, torch.Generator, int, tuple[int, int]], dict[str, Tensor]]
    apply: Callable[[Tensor, dict[str, Tensor], DSAConfig], Tensor]


_GROUPS: dict[str, _Group] = {  # DSA's AUGMENT_FNS: color is three ops in sequence, the rest one op each
    "color": _Group(_sample_color, _apply_color),
    "crop": _Group(_sample_crop, _apply_crop),
    "cutout": _Group(_sample_cutout, _apply_cutout),
    "flip": _Group(_sample_flip, _apply_flip),
    "scale": _Group(_sample_scale, _apply_scale),
    "rotate": _Group(_sample_rotate, _apply_rotate),
}
VALID_OPS: tuple[str, ...] = tuple(_GROUPS)

_CONFIG_LIMITS: dict[str, tuple[Callable[[float], bool], str]] = {
    "prob_flip": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "ratio_scale": (lambda v: v >= 1.0, ">= 1 (scales are drawn from [1/ratio, ratio])"),
    "ratio_rotate": (lambda v: v >= 0.0, ">= 0 (degrees)"),
    "ratio_crop_pad": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (a fraction of the image size)"),
    "ratio_cutout": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (a fraction of the image size)"),
}


def _parse_strategy(strategy: str) -> tuple[str, ...]:
    """The strategy's op groups in order; duplicates kept, since DSA draws uniformly over the tokens."""
    if strategy.strip().lower() in IDENTITY_STRATEGIES:
        return ()
    tokens = tuple(strategy.split("_"))
    unknown = [t for t in tokens if t not in _GROUPS]
    if unknown:
        raise ConfigError(
            f"unknown DSA op(s) {unknown} in strategy {strategy!r}; valid ops: {', '.join(VALID_OPS)} "
            f"(join them with '_', or use 'none')"
        )
    return tokens


def _check_config(config: DSAConfig) -> None:
    for f in fields(config):
        if f.name in _CONFIG_LIMITS:
            within, requirement = _CONFIG_LIMITS[f.name]
            value = getattr(config, f.name)
            if not within(value):
                raise ConfigError(f"DSA {f.name} must be {requirement}, got {value!r}")


def _as_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


class DSA:
    """DSA's single-op mode ('S'): each call applies ONE op group drawn uniformly from the strategy
    (with `all_groups`, every group, as IDC's and NCFM's matching augmentation)."""

    def __init__(self, config: DSAConfig = DSAConfig()) -> None:
        _check_config(config)
        self.config = config
        self.groups = _parse_strategy(config.strategy)
        if config.always_flip and self.groups and "flip" not in self.groups:
            raise ConfigError(
                f"always_flip needs 'flip' in the DSA strategy, got {config.strategy!r}; "
                "add flip or turn always_flip off"
            )
        # FYI draws the one other group from the strategy without flip, flip itself always runs first.
        self._candidates = tuple(g for g in self.groups if g != "flip") if config.always_flip else self.groups

    def sample(
        self, generator: torch.Generator, batch_size: int = 1, image_size: int | tuple[int, int] = 32
    ) -> DSAParams:
        """Draw a group and its parameters from `generator` only.

        batch_size 1 = one draw that `apply` broadcasts to any batch (Siamese); batch_size B = per-sample
        draws for a batch of B. image_size (H, or (H, W)) sets the crop and cutout ranges.
        """
        if not self.groups:
            return DSAParams("none", {})
        size = _as_size(image_size)
        chosen = ["flip"] if self.config.always_flip else []
        if self.config.all_groups:
            chosen += list(self._candidates)
        elif self._candidates:
            pick = int(_integers(generator, 0, len(self._candidates), 1).item())
            chosen.append(self._candidates[pick])
        values: dict[str, Tensor] = {}
        for group in chosen:
            values.update(_GROUPS[group].sample(self.config, generator, batch_size, size))
        return DSAParams("+".join(chosen), values)

    def apply(self, x: Tensor, params: DSAParams) -> Tensor:
        """Replay `params` on x [B, C, H, W] on any device; pure, so the same params give the same output."""
        for group in params.groups:
            x = _GROUPS[group].apply(x, params.values, self.config)
        return x

    def siamese(self, *batches: Tensor, generator: torch.Generator) -> tuple[Tensor, ...]:
        """ONE draw applied to every batch (sizes may differ): DM/DataDAM's real and synthetic batches."""
        if not batches:
            return ()
        sizes = {tuple(b.shape[-2:]) for b in batches}
        if len(sizes) != 1:
            raise ValueError(f"Siamese batches must share one image size, got {sorted(sizes)}")
        params = self.sample(generator, 1, sizes.pop())
        return tuple(self.apply(b, params) for b in batches)

    def per_sample(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Evaluation-time augmentation: one group per call, each image its own values (DSA's seed=-1)."""
        return self.apply(x, self.sample(generator, x.shape[0], (x.shape[-2], x.shape[-1])))


# how a Siamese draw picks its groups, by name (a method's `dsa_sampler`): DSA's own (one group of the strategy)
# or FYI's (cvlab-yonsei/FYI: a random flip always, then one other group); the value is DSAConfig.always_flip
DSA_SAMPLERS = {"dsa": False, "fyi": True}


def always_flip_for(sampler: str, digits: bool) -> bool:
    """DSAConfig.always_flip for a named sampler; FYI's needs flips, which digit datasets never get."""
    if sampler not in DSA_SAMPLERS:
        raise ConfigError(f"dsa_sampler must be one of {', '.join(DSA_SAMPLERS)}, got {sampler!r}")
    if DSA_SAMPLERS[sampler] and digits:
        raise ConfigError("dsa_sampler=fyi (also --flip's default for DM and MTT) always flips, and digit datasets "
                          "are never flipped (DSA's README): add --set dsa_sampler=dsa")
    return DSA_SAMPLERS[sampler]


def dsa_strategy_for(digits: bool) -> str:
    """DSA's strategy string; the DSA README drops "flip" for digit datasets (MNIST, SVHN)."""
    if not digits:
        return DSA_STRATEGY
    return "_".join(op for op in DSA_STRATEGY.split("_") if op != "flip")
