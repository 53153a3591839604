"""Tiny fake copies of each dataset in its native format, for tests (ours and other packages') and
demos: they run the real readers with no network and no real data, as torchvision's test suite
does with `inject_fake_data`. Pixels are random; only formats, shapes and labels are faithful.
Every fake folder whose dataset has published checksums carries checksums.FAKE_MARKER, so that the
load-time check (which the fakes would fail) knows them for what they are.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .._io import atomic_path
from .._registry import Registry
from .checksums import mark_fake
from .spec import DATASETS

# numpy dtype -> IDX type byte (the inverse of readers._IDX_DTYPES)
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


@dataclass(frozen=True)
class FakeSize:
    train_per_class: int = 2
    test_per_class: int = 1


FakeWriter = Callable[[Path, FakeSize, np.random.Generator], Path]
FAKES: Registry[FakeWriter] = Registry("fake dataset")


def write_fake(name: str, folder: str | Path, *, train_per_class: int = 2, test_per_class: int = 1,
               seed: int = 0) -> Path:
    """Write a tiny `name` under `folder`. Returns the folder to pass as `root` (for "imagefolder",
    the PATH of ``imagefolder:PATH``)."""
    rng = np.random.default_rng(seed)
    return FAKES.get(name)(Path(folder), FakeSize(train_per_class, test_per_class), rng)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file (gzipped when the name ends in .gz): magic, big-endian dims, big-endian data."""
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, _IDX_CODES[big.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + big.tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def _labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced labels in shuffled order (so per-class indexing is really exercised)."""
    return rng.permutation(np.repeat(np.arange(num_classes, dtype=np.int64), per_class))


def _pixels(n: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _idx_writer(name: str, subdir: str, suffix: str) -> FakeWriter:
    def write(folder: Path, size: FakeSize, rng: np.random.Generator) -> Path:
        spec = DATASETS.get(name)
        for prefix, per_class in (("train", size.train_per_class), ("t10k", size.test_per_class)):
            labels = _labels(spec.num_classes, per_class, rng)
            images = _pixels(len(labels), (spec.image_size, spec.image_size), rng)
            write_idx(folder / subdir / f"{prefix}-images-idx3-ubyte{suffix}", images)
            write_idx(folder / subdir / f"{prefix}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8))
        mark_fake(folder / subdir)
        return folder
    return write


# Fashion-MNIST as Debian ships it (gzipped, directly in the folder); MNIST as torchvision leaves it.
FAKES.register("fashion-mnist")(_idx_writer("fashion-mnist", "", ".gz"))
FAKES.register("mnist")(_idx_writer("mnist", "MNIST/raw", ""))


def _write_pickle(path: Path, obj: object) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        pickle.dump(obj, f, protocol=2)  # the originals are Python 2 pickles with bytes keys


def _cifar_writer(num_classes: int, subdir: str, train_files: tuple[str, ...], test_file: str, meta_file: str,
                  label_key: bytes, names_key: bytes) -> FakeWriter:
    def write(folder: Path, size: FakeSize, rng: np.random.Generator) -> Path:
        out = folder / subdir
        train = _labels(num_classes, size.train_per_class, rng)
        for name, labels in zip(train_files, np.array_split(train, len(train_files))):
            _write_pickle(out / name, {b"data": _pixels(len(labels), (3072,), rng), label_key: labels.tolist()})
        test = _labels(num_classes, size.test_per_class, rng)
        _write_pickle(out / test_file, {b"data": _pixels(len(test), (3072,), rng), label_key: test.tolist()})
        _write_pickle(out / meta_file, {names_key: [f"class{c}".encode() for c in range(num_classes)]})
        mark_fake(out)
        return folder
    return write


FAKES.register("cifar10")(_cifar_writer(10, "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                                        "test_batch", "batches.meta", b"labels", b"label_names"))
FAKES.register("cifar100")(_cifar_writer(100, "cifar-100-python", ("train",), "test", "meta",
                                         b"fine_labels", b"fine_label_names"))


@FAKES.register("svhn")
def _svhn(folder: Path, size: FakeSize, rng: np.random.Generator) -> Path:
    import scipy.io

    for name, per_class in (("train_32x32.mat", size.train_per_class), ("test_32x32.mat", size.test_per_class)):
        labels = _labels(10, per_class, rng)
        digits = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)  # SVHN stores 0 as 10
        images = _pixels(len(labels), (32, 32, 3), rng).transpose(1, 2, 3, 0)     # [H, W, C, N]
        with atomic_path(folder / name) as tmp, tmp.open("wb") as f:
            scipy.io.savemat(f, {"X": images, "y": digits})
    mark_fake(folder)
    return folder


def write_image(path: Path, pixels: np.ndarray, image_format: str = "PNG") -> None:
    """One image file from uint8 [H, W] or [H, W, 3] pixels."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format=image_format)


@FAKES.register("tiny-imagenet")
def _tiny_imagenet(folder: Path, size: FakeSize, rng: np.random.Generator) -> Path:
    root = folder / "tiny-imagenet-200"
    wnids = [f"n{c:08d}" for c in range(200)]
    with atomic_path(root / "wnids.txt") as tmp:
        tmp.write_text("\n".join(reversed(wnids)) + "\n")  # unsorted on disk, as in the real file
    with atomic_path(root / "words.txt") as tmp:
        tmp.write_text("".join(f"{w}\tthing {c}, other name\n" for c, w in enumerate(wnids)))
    for c, wnid in enumerate(wnids):
        for i in range(size.train_per_class):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", _pixels(1, (64, 64, 3), rng)[0], "JPEG")
    annotations = []
    for n, c in enumerate(_labels(200, size.test_per_class, rng)):
        write_image(root / "val" / "images" / f"val_{n}.JPEG", _pixels(1, (64, 64), rng)[0], "JPEG")  # grayscale
        annotations.append(f"val_{n}.JPEG\t{wnids[c]}\t0\t0\t63\t63\n")
    with atomic_path(root / "val" / "val_annotations.txt") as tmp:
        tmp.write_text("".join(annotations))
    return folder


@FAKES.register("imagefolder")
def _image_folder(folder: Path, size: FakeSize, rng: np.random.Generator) -> Path:
    """Three classes of 8x8 RGB PNGs in train/ and test/."""
    for split, per_class in (("train", size.train_per_class), ("test", size.test_per_class)):
        for c, name in enumerate(("ants", "bees", "cats")):
            for i in range(per_class):
                write_image(folder / split / name / f"{i}.png", _pixels(1, (8, 8, 3), rng)[0])
    return folder
