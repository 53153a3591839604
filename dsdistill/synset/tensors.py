"""Tensors from another tool as the fields of a set: the dataset's facts from its registry spec (no data is
loaded), labels class-major by default or checked when given. `SyntheticSet.from_tensors` builds on this."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .._text import count
from ..data import DatasetSpec, resolve_dataset
from ..errors import ConfigError


def as_float_images(images: Any) -> torch.Tensor:
    """[N, C, H, W] float32 on the CPU, from a tensor or a numpy array (any float dtype)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if not x.is_floating_point():
        raise ConfigError(f"images must be normalised floats, got {str(x.dtype).removeprefix('torch.')}: "
                          "convert pixels with (x / 255 - mean) / std first")
    if x.dim() != 4 or x.shape[0] == 0:
        raise ConfigError(f"images must have shape [N, C, H, W] with N >= 1, got {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float32).contiguous()


def _class_major(n: int, num_classes: int) -> torch.Tensor:
    """0,0,...,1,1,...: the layout every dsdistill set and the DC/DM/MTT code store (n // K images per class)."""
    if n % num_classes:
        raise ConfigError(f"{n} images are not class-major for {num_classes} classes ({n} is not a multiple of "
                          f"{num_classes}); pass the labels")
    return torch.arange(num_classes).repeat_interleave(n // num_classes)


def as_labels(labels: Any, n: int, num_classes: int) -> torch.Tensor:
    """Given hard labels as int64 [N] in [0, K), or class-major labels when None."""
    if labels is None:
        return _class_major(n, num_classes)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).detach().cpu()
    if y.is_floating_point() and bool((y == y.round()).all()):
        y = y.to(torch.int64)
    if y.dim() != 1 or y.shape[0] != n or y.is_floating_point() or y.dtype == torch.bool:
        raise ConfigError(f"labels must be {n} class indices (an integer tensor [N]), got "
                          f"{str(y.dtype).removeprefix('torch.')} {tuple(y.shape)}; soft labels go in soft_labels=")
    y = y.to(torch.int64)
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ConfigError(f"labels must lie in [0, {num_classes}), found {int(y.min())}..{int(y.max())}")
    return y


def check_shape(spec: DatasetSpec, images: torch.Tensor) -> None:
    """The images have the dataset's channels and size, or one line naming the dataset to pass."""
    c, h, w = images.shape[1:]
    if c != spec.channels:
        raise ConfigError(f"the images have {count(c, 'channel')} but {spec.name} has {spec.channels}: "
                          f"pass the dataset they were made from (--dataset NAME, or dataset= in Python)")
    if (h, w) != (spec.image_size, spec.image_size):
        raise ConfigError(f"the images are {h}x{w}px but {spec.name} is {spec.image_size}x{spec.image_size}px: "
                          f"pass the dataset they were made from (--dataset NAME, or dataset= in Python)")


def dataset_fields(dataset: str, images: torch.Tensor, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, class_names: Sequence[str] | None = None,
                   num_classes: int | None = None) -> dict[str, Any]:
    """dataset, num_classes, class_names, mean and std for a set of `images` made from `dataset`: the registry's
    facts unless given; the images must have the dataset's channels and size (a 3-channel tensor checked against
    fashion-mnist names the dataset to pass)."""
    spec = resolve_dataset(dataset)
    check_shape(spec, images)
    mean = tuple(mean) if mean is not None else spec.mean
    std = tuple(std) if std is not None else spec.std
    if not mean or not std:
        raise ConfigError(f"{spec.name} has no standard mean/std (they are computed from its files): pass mean= "
                          "and std=, the statistics the images were normalised with")
    k = spec.num_classes if num_classes is None else int(num_classes)
    names = list(class_names) if class_names is not None else (
        list(spec.class_names) if len(spec.class_names) == k else [str(c) for c in range(k)])
    return {"dataset": spec.name, "num_classes": k, "class_names": names,
            "mean": tuple(float(m) for m in mean), "std": tuple(float(s) for s in std)}


__all__ = ["as_float_images", "as_labels", "check_shape", "dataset_fields"]
