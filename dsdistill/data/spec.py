"""What dsdistill knows about each dataset, as data: the DATASETS registry of DatasetSpec.

Names with a prefix (``imagefolder:PATH``) are not registry entries: a prefix maps to a builder
in DATASET_FAMILIES that makes the spec for that path on demand (`resolve_dataset`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .._registry import Registry, unknown_name
from ..errors import UnknownNameError
from .checksums import RawFile
from .readers import NativeReader

# torchvision's ImageNet statistics; MTT and DM use them for Tiny-ImageNet (reference/trajectory.md)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TorchvisionDownload:
    """How torchvision fetches a dataset: its class name and one constructor call per split."""

    class_name: str                            # e.g. "FashionMNIST"
    splits: tuple[dict[str, object], ...]      # e.g. ({"train": True}, {"train": False})


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its shape, standard statistics, native files and where torchvision puts them.

    An empty `mean`/`std` means "no standard statistics exist": the loader computes them from the
    train split (grayscale image folders).
    """

    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    digits: bool                               # mnist, svhn: a horizontal flip changes the class
    reader: NativeReader
    class_names: tuple[str, ...] = ()          # used when the files do not name the classes
    layouts: tuple[str, ...] = ()              # sub-folders of a search root that may hold the files
    download: TorchvisionDownload | None = None
    folder: Path | None = None                 # a fixed location (imagefolder:PATH): no search
    hint: str = ""                             # extra advice when the files are missing
    checksums: tuple[RawFile, ...] = ()        # digests of the native files, checked on load (checksums.py)

    @property
    def files_wanted(self) -> str:
        """A short description of the files, for error messages (from a folder that has none of them)."""
        return ", ".join(self.reader.missing(Path("/nonexistent")))


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASET_FAMILIES: Registry[Callable[[str], DatasetSpec]] = Registry("dataset family")


def family_names() -> list[str]:
    """How families appear in listings, e.g. "imagefolder:PATH"."""
    return [f"{prefix}:PATH" for prefix in DATASET_FAMILIES.list()]


def resolve_dataset(name: str) -> DatasetSpec:
    """The spec for a registered name or a ``prefix:argument`` family name."""
    prefix, sep, argument = name.partition(":")
    if sep and prefix in DATASET_FAMILIES:
        return DATASET_FAMILIES.get(prefix)(argument)
    if name in DATASETS:
        return DATASETS.get(name)
    raise UnknownNameError(unknown_name("dataset", name, DATASETS.list() + family_names()))
