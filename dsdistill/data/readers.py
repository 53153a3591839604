"""Readers for the array-shaped native formats: IDX (MNIST family), CIFAR python pickles, SVHN .mat.

Each reader is a small frozen dataclass with two methods (the `NativeReader` protocol):
`missing(folder)` lists the files the folder lacks (cheap: only stats files, so `dataset_status`
can call it) and `read(folder, classes)` parses the files into uint8 NCHW tensors. Damaged files
raise DataNotFoundError naming the file, so the user knows what to delete and fetch again.
"""
from __future__ import annotations

import codecs
import gzip
import math
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Protocol

import numpy as np
import torch

from ..errors import DataNotFoundError


@dataclass
class NativeSplits:
    """What a reader returns: raw uint8 pixels and int64 labels in the dataset's own numbering."""

    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...] | None = None  # None: the files do not name the classes

    def only(self, classes: Collection[int]) -> "NativeSplits":
        """Keep the samples of `classes` (vectorised mask; labels unchanged)."""
        keep = torch.as_tensor(sorted(classes), dtype=torch.int64)
        train = torch.isin(self.train_labels, keep)
        test = torch.isin(self.test_labels, keep)
        return NativeSplits(self.train_images[train], self.train_labels[train],
                            self.test_images[test], self.test_labels[test], self.class_names)


class NativeReader(Protocol):
    """Parses one native on-disk format found in a single folder."""

    def missing(self, folder: Path) -> list[str]:
        """Names of the files this format needs that `folder` lacks (empty: ready to read)."""

    def read(self, folder: Path, classes: Collection[int] | None = None) -> NativeSplits:
        """Parse the files. `classes` lets slow formats skip decoding; callers still filter."""


def damaged(path: Path, why: str) -> DataNotFoundError:
    """The one message for a file we found but cannot use."""
    return DataNotFoundError(f"{path} is damaged ({why}); delete it and download the dataset again")


def check_pair(images: torch.Tensor, labels: torch.Tensor, where: Path) -> None:
    if images.shape[0] != labels.shape[0]:
        raise damaged(where, f"{images.shape[0]} images but {labels.shape[0]} labels")


# --------------------------------------------------------------------------------------------- IDX
# Third magic byte -> element type (LeCun's IDX description; torchvision's mnist.py reads the same table).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def _file_bytes(path: Path) -> bytearray:
    """The file's bytes, gunzipped when the name ends in .gz (a bytearray, so tensors can share it)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return bytearray(f.read())
        return bytearray(path.read_bytes())
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise damaged(path, f"not a complete gzip file: {exc}") from None


def read_idx(path: Path) -> torch.Tensor:
    """Parse one IDX file; the magic number gives dtype and rank, and the size must match exactly."""
    raw = _file_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise damaged(path, "no IDX magic number")
    dtype, rank = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise damaged(path, "truncated header")
    dims = struct.unpack(f">{rank}I", raw[4:header])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise damaged(path, f"{len(raw)} bytes where its header promises {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    return torch.from_numpy(array)


@dataclass(frozen=True)
class IdxReader:
    """MNIST-family IDX files (gzipped or not). The uncompressed copy wins: it skips a gunzip."""

    train_images: str = "train-images-idx3-ubyte"
    train_labels: str = "train-labels-idx1-ubyte"
    test_images: str = "t10k-images-idx3-ubyte"
    test_labels: str = "t10k-labels-idx1-ubyte"

    def _find(self, folder: Path, name: str) -> Path | None:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def missing(self, folder: Path) -> list[str]:
        names = (self.train_images, self.train_labels, self.test_images, self.test_labels)
        return [f"{n}[.gz]" for n in names if self._find(folder, n) is None]

    def _split(self, folder: Path, images_name: str, labels_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        images_path = self._find(folder, images_name)
        labels_path = self._find(folder, labels_name)
        assert images_path is not None and labels_path is not None, "call missing() first"
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != torch.uint8 or images.ndim != 3:
            raise damaged(images_path, f"expected uint8 [N, H, W] images, found {images.dtype} {list(images.shape)}")
        if labels.ndim != 1:
            raise damaged(labels_path, f"expected [N] labels, found {list(labels.shape)}")
        check_pair(images, labels, labels_path)
        return images.unsqueeze(1), labels.to(torch.int64)

    def read(self, folder: Path, classes: Collection[int] | None = None) -> NativeSplits:
        train = self._split(folder, self.train_images, self.train_labels)
        test = self._split(folder, self.test_images, self.test_labels)
        return NativeSplits(*train, *test)


# ------------------------------------------------------------------------------------ CIFAR pickles
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR ships as Python pickles, and unpickling can run arbitrary code: a tampered download
    could execute anything. Only the names needed to rebuild numpy arrays are resolved."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        **{(module, name): obj
           for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray")
           for name, obj in (("_reconstruct", np.empty(0).__reduce__()[0]),  # numpy's array rebuilder
                             ("ndarray", np.ndarray), ("dtype", np.dtype))},
        # Python 3 protocol-2 pickles (re-saved copies) spell bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR batch/meta file. encoding="bytes" reads the Python 2 pickles; keys come back as str."""
    try:
        with path.open("rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise damaged(path, f"not a readable CIFAR pickle: {exc}") from None
    if not isinstance(obj, dict):
        raise damaged(path, "not a CIFAR dictionary")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise damaged(path, f"no {key!r} entry")
    return batch[key]


@dataclass(frozen=True)
class CifarReader:
    """CIFAR-10/100 "python version" pickles: rows of 3072 uint8 (R plane, G plane, B plane)."""

    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str   # "labels" (CIFAR-10) or "fine_labels" (CIFAR-100)
    names_key: str   # "label_names" or "fine_label_names"

    def missing(self, folder: Path) -> list[str]:
        names = (*self.train_files, *self.test_files, self.meta_file)
        return [n for n in names if not (folder / n).is_file()]

    def _split(self, folder: Path, files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in files:
            path = folder / name
            batch = read_cifar_pickle(path)
            data = np.asarray(_field(batch, "data", path))
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise damaged(path, f"expected uint8 [N, 3072] data, found {data.dtype} {list(data.shape)}")
            images.append(torch.from_numpy(data).reshape(-1, 3, 32, 32))
            labels.append(torch.as_tensor(np.asarray(_field(batch, self.label_key, path), dtype=np.int64)))
            check_pair(images[-1], labels[-1], path)
        return torch.cat(images), torch.cat(labels)

    def read(self, folder: Path, classes: Collection[int] | None = None) -> NativeSplits:
        meta_path = folder / self.meta_file
        names = _field(read_cifar_pickle(meta_path), self.names_key, meta_path)
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        return NativeSplits(*self._split(folder, self.train_files), *self._split(folder, self.test_files),
                            class_names=class_names)


# ---------------------------------------------------------------------------------------- SVHN .mat
def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN cropped digits: X is [H, W, C, N] uint8, y is [N, 1] with 10 meaning digit 0
    (torchvision's SVHN maps 10 -> 0 the same way)."""
    import scipy.io  # deferred: scipy is slow to import and only SVHN needs it

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except (ValueError, OSError, TypeError, KeyError, IndexError, NotImplementedError,  # v7.3 files
            scipy.io.matlab.MatReadError) as exc:
        raise damaged(path, f"not a readable .mat file: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise damaged(path, "no X or y variable")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4:
        raise damaged(path, f"expected uint8 X [H, W, C, N], found {x.dtype} {list(x.shape)}")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    labels = torch.from_numpy(y.reshape(-1).astype(np.int64) % 10)
    check_pair(images, labels, path)
    return images, labels


@dataclass(frozen=True)
class SvhnReader:
    """SVHN format 2 (32x32 crops); the "extra" split is not used, as in the DC/DSA/DM code."""

    train_file: str = "train_32x32.mat"
    test_file: str = "test_32x32.mat"

    def missing(self, folder: Path) -> list[str]:
        return [n for n in (self.train_file, self.test_file) if not (folder / n).is_file()]

    def read(self, folder: Path, classes: Collection[int] | None = None) -> NativeSplits:
        return NativeSplits(*read_svhn_mat(folder / self.train_file), *read_svhn_mat(folder / self.test_file))
