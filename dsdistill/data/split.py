"""Real data in memory: one image tensor per split plus a per-class index, so class-balanced
draws are tensor indexing, never a Python loop over samples."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from ..errors import ConfigError
from .zca import ZCA


def build_class_index(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """class_index[c] = indices of class c in ascending order (one stable sort + bincount)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)
    return list(torch.split(order, counts.tolist()))


def check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    """Sorted, unique, in range; a ConfigError otherwise."""
    wanted = sorted({int(c) for c in classes})
    bad = [c for c in wanted if not 0 <= c < num_classes]
    if bad or not wanted:
        raise ConfigError(f"classes must be a non-empty list of labels in 0..{num_classes - 1}; got {list(classes)}")
    return wanted


@dataclass
class Split:
    """One split. Labels keep the dataset's numbering even for a class subset, so class_index has
    one entry per class of the dataset (empty for classes not kept)."""

    images: torch.Tensor             # float32 [N, C, H, W], normalised or ZCA-whitened
    labels: torch.Tensor             # int64 [N]
    class_index: list[torch.Tensor]  # class_index[c]: int64 indices of class c

    @classmethod
    def from_tensors(cls, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "Split":
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"need images [N, C, H, W] and labels [N]; got {list(images.shape)}, {list(labels.shape)}")
        return cls(images, labels, build_class_index(labels, num_classes))

    @property
    def num_classes(self) -> int:
        return len(self.class_index)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def class_size(self, c: int) -> int:
        return self.class_index[c].numel()

    def class_images(self, c: int) -> torch.Tensor:
        return self.images[self.class_index[c]]

    def sample_class(self, c: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` distinct images of class `c` in random order, drawn with `generator` (a CPU generator)."""
        index = self.class_index[c]
        if not 0 <= n <= index.numel():
            raise ConfigError(f"cannot draw {n} images of class {c}: it has {index.numel()} in this split; "
                              f"ask for at most {index.numel()} per class")
        pick = torch.randperm(index.numel(), generator=generator)[:n]
        return self.images[index[pick.to(index.device)]]

    def subset(self, classes: Sequence[int]) -> "Split":
        """Only the samples of `classes` (labels unchanged)."""
        keep = torch.as_tensor(check_classes(classes, self.num_classes), device=self.labels.device)
        rows = torch.isin(self.labels, keep).nonzero().squeeze(1)
        return Split.from_tensors(self.images[rows], self.labels[rows], self.num_classes)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device), [i.to(device) for i in self.class_index])


@dataclass
class RealData:
    """A loaded dataset. `to_pixels` maps stored images back to [0, 1]-ish pixels for pictures."""

    name: str
    train: Split
    test: Split
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    digits: bool
    zca: ZCA | None = None  # with ZCA, images are whitened [0, 1] pixels and mean/std are not applied
    source: str = ""
    classes: tuple[int, ...] = field(default=())  # the classes kept (all when loaded whole)

    @property
    def channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]

    @property
    def num_classes(self) -> int:
        """Classes of the dataset (model outputs), also when only some were loaded."""
        return len(self.class_names)

    @property
    def class_ids(self) -> tuple[int, ...]:
        """The classes this data holds (a rank under torchrun holds only the classes it serves)."""
        return self.classes or tuple(range(self.num_classes))

    def subset(self, classes: Sequence[int]) -> "RealData":
        """Only `classes` (labels, class names, statistics and ZCA unchanged)."""
        keep = tuple(check_classes(classes, self.num_classes))
        return replace(self, train=self.train.subset(keep), test=self.test.subset(keep), classes=keep)

    @property
    def image_space(self) -> str:
        """As a set file's `image_space` attribute names it."""
        return "zca" if self.zca is not None else "normalized"

    def to(self, device: torch.device | str) -> "RealData":
        return replace(self, train=self.train.to(device), test=self.test.to(device),
                       zca=self.zca.to(device) if self.zca is not None else None)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Undo ZCA (if used) or the normalisation; not clamped."""
        if self.zca is not None:
            return self.zca.inverse(x)
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x * std + mean

    def from_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] to the space the data lives in (ZCA or normalised); differentiable, so
        methods that keep their images as pixels (NCFM) can feed networks through it."""
        if self.zca is not None:
            return self.zca.transform(x)
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std
