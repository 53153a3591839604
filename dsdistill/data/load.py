"""load_dataset: find the files, parse them, check them against the spec, normalise (or ZCA) in place."""
from __future__ import annotations

import os
from typing import Callable, Sequence

import torch

from .._device import resolve_device
from .._registry import Registry
from ..errors import DataNotFoundError
from .checksums import verify_files
from .locate import find_files, locate
from .readers import NativeSplits
from .spec import DATASET_FAMILIES, DATASETS, DatasetSpec, resolve_dataset
from .split import RealData, Split, check_classes
from .zca import ZCA

Stats = tuple[tuple[float, ...], tuple[float, ...]]
# name -> (spec, train pixels as float 0..255 [N, C, H, W]) -> (mean, std) on the [0, 1] scale
STATISTICS: Registry[Callable[[DatasetSpec, torch.Tensor], Stats]] = Registry("statistics")


@STATISTICS.register("computed")
def computed_statistics(spec: DatasetSpec, pixels: torch.Tensor) -> Stats:
    """Per-channel mean and (population) std of the train split as loaded."""
    std, mean = torch.std_mean(pixels, dim=(0, 2, 3), correction=0)
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


@STATISTICS.register("standard")
def standard_statistics(spec: DatasetSpec, pixels: torch.Tensor) -> Stats:
    """The spec's published statistics; computed where none exist (grayscale image folders)."""
    return (spec.mean, spec.std) if spec.mean else computed_statistics(spec, pixels)


def check_native(native: NativeSplits, spec: DatasetSpec, folder: os.PathLike) -> tuple[str, ...]:
    """The parsed files must match the spec; returns the class names."""
    expected = (spec.channels, spec.image_size, spec.image_size)
    for split, images, labels in (("train", native.train_images, native.train_labels),
                                  ("test", native.test_images, native.test_labels)):
        if tuple(images.shape[1:]) != expected:
            raise DataNotFoundError(f"{folder}: {spec.name} {split} images are {list(images.shape[1:])}, expected "
                                    f"{list(expected)}; these are not {spec.name} files")
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < spec.num_classes):
            raise DataNotFoundError(f"{folder}: {spec.name} {split} labels fall outside 0..{spec.num_classes - 1}; "
                                    f"the files are damaged")
    names = native.class_names or spec.class_names or tuple(str(c) for c in range(spec.num_classes))
    if len(names) != spec.num_classes:
        raise DataNotFoundError(f"{folder}: {spec.name} names {len(names)} classes, expected {spec.num_classes}")
    if native.train_labels.numel() == 0:
        raise DataNotFoundError(f"{folder}: the {spec.name} train split is empty")
    return tuple(names)


def _normalise_(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x / 255 - mean) / std per channel, in place on a float 0..255 tensor (two passes, no copies)."""
    shape = (1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(shape)
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(shape)
    return pixels.mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


def load_dataset(name: str = "fashion-mnist", root: str | os.PathLike | None = None, *, zca: bool = False,
                 device: str | torch.device = "cpu", download: bool = True,
                 classes: Sequence[int] | None = None, stats: str = "standard", verify: bool = True) -> RealData:
    """Load a dataset into memory on `device`.

    Images are normalised with the dataset's mean/std, or, with `zca=True`, scaled to [0, 1] and
    ZCA-whitened with a transform fit on the train split (MTT/DataDAM: ToTensor only, no mean/std
    step, before the whitening). `classes` keeps only those classes (labels unchanged). `stats`:
    "standard" (published statistics) or "computed" (from the train split as loaded). `verify`: check the
    native files against the spec's digests first (checksums.py; False loads a faithful copy packaged differently).
    """
    spec = resolve_dataset(name)
    choose_stats = STATISTICS.get(stats)
    keep = check_classes(classes, spec.num_classes) if classes is not None else None
    where = locate(spec, root, download=download)
    if verify:
        verify_files(where.folder, spec.checksums)
    native = spec.reader.read(where.folder, keep)
    class_names = check_native(native, spec, where.folder)
    if keep is not None:
        native = native.only(keep)
    target = resolve_device(device)
    # uint8 travels to the device (4x less than float), then converts there
    train = native.train_images.to(target).to(torch.float32)
    test = native.test_images.to(target).to(torch.float32)
    mean, std = choose_stats(spec, train)
    whitening = None
    if zca:
        whitening = ZCA().fit(train.mul_(1 / 255))
        train, test = whitening.transform(train), whitening.transform(test.mul_(1 / 255))
    else:
        _normalise_(train, mean, std)
        _normalise_(test, mean, std)
    return RealData(
        name=spec.name,
        train=Split.from_tensors(train, native.train_labels.to(target), spec.num_classes),
        test=Split.from_tensors(test, native.test_labels.to(target), spec.num_classes),
        class_names=list(class_names), mean=tuple(mean), std=tuple(std), digits=spec.digits,
        zca=whitening, source=where.source,
        classes=tuple(keep) if keep is not None else tuple(range(spec.num_classes)))


def dataset_status(root: str | os.PathLike | None = None) -> list[tuple[str, bool, str]]:
    """(name, available here, where or why) per dataset, for `dsdistill datasets`. Never downloads."""
    rows = []
    for name, spec in DATASETS.items():
        folder = find_files(spec, root)
        if folder is not None:
            rows.append((name, True, str(folder)))
        elif spec.download is not None:
            rows.append((name, False, "not found; torchvision downloads it on first use"))
        else:
            rows.append((name, False, f"not found; pass --data-root DIR holding {spec.files_wanted}{spec.hint}"))
    for prefix, builder in DATASET_FAMILIES.items():
        summary = (builder.__doc__ or "").strip().splitlines()[0]
        rows.append((f"{prefix}:PATH", True, summary.replace("``", "")))
    return rows
