"""Readers for image-file formats: Tiny-ImageNet's standard layout and a user's class-per-folder tree.

Files are decoded once with PIL into one preallocated uint8 array (no per-item PIL work later).
All images of a dataset must share one size: we never resize silently, since that would change
what "the real data" is; the error says which file differs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .._progress import progress
from ..errors import DataNotFoundError
from .readers import NativeSplits, damaged

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def image_files(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name (stable labels and order across machines)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class ImageShape:
    """What every image of one dataset must share. mode: the PIL mode images are converted to."""

    mode: str  # "L" or "RGB"
    width: int
    height: int

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


def peek_shape(path: Path) -> ImageShape:
    """Size and channel count of one image, read from its header (no decoding)."""
    try:
        with Image.open(path) as im:
            return ImageShape("L" if im.mode in _GRAY_MODES else "RGB", *im.size)
    except (UnidentifiedImageError, OSError) as exc:
        raise damaged(path, f"not a readable image: {exc}") from None


def decode_images(paths: Sequence[Path], shape: ImageShape, desc: str) -> torch.Tensor:
    """Decode `paths` into uint8 [N, C, H, W]; a file of another size is an error naming both sizes."""
    out = np.empty((len(paths), shape.height, shape.width, shape.channels), dtype=np.uint8)
    for i, path in enumerate(progress(paths, desc=desc, unit="img")):
        try:
            with Image.open(path) as im:
                if im.size != (shape.width, shape.height):
                    raise DataNotFoundError(
                        f"{path} is {im.size[0]}x{im.size[1]} but the dataset's images are "
                        f"{shape.width}x{shape.height}; resize all images to one size first")
                out[i] = np.asarray(im.convert(shape.mode)).reshape(out.shape[1:])
        except (UnidentifiedImageError, OSError) as exc:
            raise damaged(path, f"not a readable image: {exc}") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _labelled(files: list[list[Path]], keep: Collection[int] | None) -> tuple[list[Path], torch.Tensor]:
    """Flatten per-class file lists into (paths, labels), dropping classes outside `keep`."""
    wanted = range(len(files)) if keep is None else sorted(keep)
    paths = [p for c in wanted for p in files[c]]
    counts = torch.tensor([len(files[c]) for c in wanted], dtype=torch.int64)
    labels = torch.repeat_interleave(torch.tensor(list(wanted), dtype=torch.int64), counts)
    return paths, labels


# ------------------------------------------------------------------------------------ Tiny-ImageNet
@dataclass(frozen=True)
class TinyImageNetReader:
    """Tiny-ImageNet-200 as distributed: wnids.txt, words.txt, train/<wnid>/images/*.JPEG,
    val/images/*.JPEG with val/val_annotations.txt. The val split is the test split (no labelled
    test set is published). Labels follow the sorted wnids, the order torchvision's ImageFolder
    gives and MTT's loader uses; a few images are grayscale and are converted to RGB."""

    shape: ImageShape = ImageShape("RGB", 64, 64)

    def missing(self, folder: Path) -> list[str]:
        needed = {"wnids.txt": (folder / "wnids.txt").is_file(), "train/": (folder / "train").is_dir(),
                  "val/val_annotations.txt": (folder / "val" / "val_annotations.txt").is_file()}
        return [name for name, present in needed.items() if not present]

    def _class_names(self, folder: Path, wnids: list[str]) -> tuple[str, ...]:
        """First name of each wnid in words.txt ("n01443537\tgoldfish, Carassius auratus"); wnid if absent."""
        words: dict[str, str] = {}
        if (folder / "words.txt").is_file():
            for line in (folder / "words.txt").read_text(encoding="utf-8", errors="replace").splitlines():
                wnid, _, text = line.partition("\t")
                words[wnid] = text.split(",")[0].strip() or wnid
        return tuple(words.get(w, w) for w in wnids)

    def _val_files(self, folder: Path, label_of: dict[str, int], classes: int) -> list[list[Path]]:
        annotations = folder / "val" / "val_annotations.txt"
        files: list[list[Path]] = [[] for _ in range(classes)]
        for number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in label_of:
                raise damaged(annotations, f"line {number} names no known wnid: {line!r}")
            files[label_of[fields[1]]].append(folder / "val" / "images" / fields[0])
        return files

    def read(self, folder: Path, classes: Collection[int] | None = None) -> NativeSplits:
        wnids = sorted({w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip()})
        label_of = {w: i for i, w in enumerate(wnids)}
        keep = range(len(wnids)) if classes is None else [c for c in classes if c < len(wnids)]
        train_files: list[list[Path]] = [[] for _ in wnids]
        for c in keep:
            images_dir = folder / "train" / wnids[c] / "images"
            if not images_dir.is_dir():
                raise DataNotFoundError(f"{images_dir} is missing; the Tiny-ImageNet copy in {folder} is incomplete")
            train_files[c] = image_files(images_dir)
        train_paths, train_labels = _labelled(train_files, keep)
        test_paths, test_labels = _labelled(self._val_files(folder, label_of, len(wnids)), keep)
        return NativeSplits(decode_images(train_paths, self.shape, "tiny-imagenet train"), train_labels,
                            decode_images(test_paths, self.shape, "tiny-imagenet val"), test_labels,
                            class_names=self._class_names(folder, wnids))


# -------------------------------------------------------------------------------------- imagefolder
TEST_FOLDER_NAMES = ("test", "val")


@dataclass(frozen=True)
class ImageFolderLayout:
    """A user's PATH/train/<class>/* and PATH/test/<class>/* (or val/) tree, surveyed without decoding."""

    root: Path
    class_names: tuple[str, ...]
    shape: ImageShape

    @staticmethod
    def test_folder(root: Path) -> Path | None:
        return next((root / n for n in TEST_FOLDER_NAMES if (root / n).is_dir()), None)

    @classmethod
    def survey(cls, root: Path) -> "ImageFolderLayout":
        """Class names from train/'s sub-folders; shape and channels from the first training image."""
        train, test = root / "train", cls.test_folder(root)
        if not train.is_dir() or test is None:
            raise DataNotFoundError(f"imagefolder:{root} needs {root}/train/<class>/ and {root}/test/<class>/ "
                                    f"(or val/) folders of images")
        names = class_folders(train)
        if not names:
            raise DataNotFoundError(f"{train} has no class sub-folders; put each class's images in train/<class>/")
        first = next((files[0] for files in (image_files(train / n) for n in names) if files), None)
        if first is None:
            raise DataNotFoundError(f"{train} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        shape = peek_shape(first)
        if shape.width != shape.height:
            raise DataNotFoundError(f"{first} is {shape.width}x{shape.height}; imagefolder needs square images "
                                    f"of one size: resize or crop them first")
        return cls(root, tuple(names), shape)


@dataclass(frozen=True)
class ImageFolderReader:
    """Reads a surveyed class-per-folder tree. Every train class needs at least one image; test/
    may omit classes but may not add unknown ones (their labels would mean nothing)."""

    layout: ImageFolderLayout

    def missing(self, folder: Path) -> list[str]:
        lacking = [] if (folder / "train").is_dir() else ["train/"]
        return lacking + ([] if ImageFolderLayout.test_folder(folder) else ["test/ or val/"])

    def _files(self, split: Path, keep: Collection[int]) -> list[list[Path]]:
        names = self.layout.class_names
        unknown = sorted(set(class_folders(split)) - set(names))
        if unknown:
            raise DataNotFoundError(f"{split} has class folders missing from train/: {', '.join(unknown)}")
        files: list[list[Path]] = [[] for _ in names]
        for c in keep:
            if (split / names[c]).is_dir():
                files[c] = image_files(split / names[c])
        return files

    def read(self, folder: Path, classes: Collection[int] | None = None) -> NativeSplits:
        keep = range(len(self.layout.class_names)) if classes is None else sorted(classes)
        train_files = self._files(folder / "train", keep)
        empty = [self.layout.class_names[c] for c in keep if not train_files[c]]
        if empty:
            raise DataNotFoundError(f"{folder / 'train'} has classes without images: {', '.join(empty)}")
        test_dir = ImageFolderLayout.test_folder(folder)
        assert test_dir is not None, "call missing() first"
        train_paths, train_labels = _labelled(train_files, keep)
        test_paths, test_labels = _labelled(self._files(test_dir, keep), keep)
        shape = self.layout.shape
        return NativeSplits(decode_images(train_paths, shape, "imagefolder train"), train_labels,
                            decode_images(test_paths, shape, "imagefolder test"), test_labels,
                            class_names=self.layout.class_names)
