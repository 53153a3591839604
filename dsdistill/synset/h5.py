"""The set file's HDF5 I/O: atomic writes without HDF5 timestamps, and typed, checked reads.

This module knows HDF5, not the schema: which datasets and attributes a set file holds, and what
they mean, is `set.py`'s. Writing goes through a temporary file and a rename (`dsdistill._io`), and
no object carries an HDF5 timestamp, so equal sets with equal attributes give byte-identical files.
Every problem a reader meets is a one-line SetFileError naming the file.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np
import torch

from .._io import Stamp, atomic_path
from ..errors import SetFileError

# ---------------------------------------------------------------------- writing


def write_file(target: Path, datasets: Iterable[tuple[str, torch.Tensor]], attrs: dict[str, Any],
               unchanged_since: Stamp | bool = False) -> None:
    """Write `datasets` (name -> tensor; ``group/name`` puts it in a group) then `attrs`, in the order given;
    the target appears only when complete (and, with unchanged_since, only over the file it was then)."""
    try:
        with atomic_path(target, unchanged_since) as tmp:
            with h5py.File(tmp, "w") as f:
                _write_datasets(f, datasets)
                _write_attrs(f, attrs)
    except OSError as err:
        raise SetFileError(f"{target}: cannot write the set file ({one_line(err)})") from err


def _write_datasets(f: h5py.File, datasets: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Payload datasets, without HDF5 timestamps so that equal sets give equal files."""
    for name, tensor in datasets:
        parent: h5py.Group = f
        *groups, leaf = name.split("/")
        for group in groups:
            parent = parent[group] if group in parent else _untimed_group(parent, group)
        _create(parent, leaf, tensor)


def string_array(values: Iterable[str]) -> np.ndarray:
    """Strings as an attribute value HDF5 stores as variable-length UTF-8."""
    return np.array(list(values), dtype=h5py.string_dtype())


def _write_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    for name, value in attrs.items():
        f.attrs[name] = value


def _create(parent: h5py.Group, name: str, tensor: torch.Tensor) -> None:
    parent.create_dataset(name, data=tensor.detach().cpu().numpy(), track_times=False)


def _untimed_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without HDF5 timestamps. create_group's own track_times switch exists only in
    recent h5py (older ones record times); the low-level call works in every version."""
    plist = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    plist.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=plist))


# ---------------------------------------------------------------------- reading


@contextlib.contextmanager
def open_file(source: Path) -> Iterator["Reader"]:
    """A Reader on `source` after checking it is a readable HDF5 file; HDF5 errors while reading
    (a truncated or damaged file) become one SetFileError."""
    _check_readable(source)
    try:
        with h5py.File(source, "r") as f:
            yield Reader(f, str(source))
    except OSError as err:
        raise SetFileError(f"{source}: the HDF5 file is truncated or damaged "
                           f"({one_line(err)})") from err


def _check_readable(source: Path) -> None:
    if not source.exists():
        raise SetFileError(f"{source}: no such file")
    if not source.is_file():
        raise SetFileError(f"{source}: not a file")
    try:
        with open(source, "rb"):
            pass
    except OSError as err:
        raise SetFileError(f"{source}: cannot open ({err.strerror})") from err
    if not h5py.is_hdf5(source):
        raise SetFileError(f"{source}: not an HDF5 file; sets from other tools must be imported "
                           f"first (dsdistill.synset.import_set)")


class Reader:
    """Typed access to an open file's datasets and attributes; a missing or mistyped one is a
    one-line SetFileError naming the file."""

    def __init__(self, f: h5py.File, source: str) -> None:
        self.file, self.attrs, self.source = f, f.attrs, source

    def has(self, name: str) -> bool:
        """Whether the file holds a member (dataset or group) `name`."""
        return name in self.file

    def has_attr(self, name: str) -> bool:
        return name in self.attrs

    def raw(self, name: str) -> Any:
        """The attribute as stored, None when absent (for checks that must not fail on a wrong type)."""
        return self.attrs.get(name)

    # -------------------------------------------------------------- datasets

    def tensor(self, name: str, allowed: tuple[str, ...]) -> torch.Tensor:
        return _read_tensor(self.file, name, allowed, self.source)

    def tensors_in(self, name: str, allowed: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Every dataset of group `name`, by key."""
        group = self.file[name]
        if not isinstance(group, h5py.Group):
            raise SetFileError(f"{self.source}: {name!r} must be a group of datasets")
        return {key: _read_tensor(group, key, allowed, self.source) for key in group}

    # -------------------------------------------------------------- attributes

    def _get(self, name: str) -> Any:
        if name not in self.attrs:
            raise SetFileError(f"{self.source}: missing attribute {name!r}")
        value = self.attrs[name]
        return value[()] if isinstance(value, np.ndarray) and value.shape == () else value

    def _bad(self, name: str, expected: str) -> SetFileError:
        return SetFileError(f"{self.source}: attribute {name!r} must be {expected}, "
                            f"got {short(self.attrs[name])}")

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, (str, bytes)):
            raise self._bad(name, "a string")
        return as_str(value)

    def integer(self, name: str) -> int:
        value = self._get(name)
        if not is_int(value):
            raise self._bad(name, "an integer")
        return int(value)

    def number(self, name: str) -> float:
        value = self._get(name)
        if not is_real(value):
            raise self._bad(name, "a number")
        return float(value)

    def numbers(self, name: str) -> tuple[float, ...]:
        array = np.atleast_1d(np.asarray(self._get(name)))
        if array.ndim != 1 or array.dtype.kind not in "fiu":
            raise self._bad(name, "a list of numbers")
        return tuple(float(v) for v in array)

    def texts(self, name: str) -> list[str]:
        array = np.atleast_1d(np.asarray(self._get(name), dtype=object))
        if array.ndim != 1 or not all(isinstance(v, (str, bytes)) for v in array):
            raise self._bad(name, "a list of strings")
        return [as_str(v) for v in array]

    def json_object(self, name: str) -> dict:
        try:
            value = json.loads(self.text(name))
        except json.JSONDecodeError as err:
            raise SetFileError(f"{self.source}: attribute {name!r} is not valid JSON "
                               f"({err.msg} at character {err.pos})") from err
        if not isinstance(value, dict):
            raise self._bad(name, "a JSON object")
        return value


def _read_tensor(group: h5py.Group, name: str, allowed: tuple[str, ...],
                 source: str) -> torch.Tensor:
    """One dataset as a tensor, after checking its dtype (either byte order is accepted)."""
    member = group[name]
    path = member.name.lstrip("/")
    if not isinstance(member, h5py.Dataset):
        raise SetFileError(f"{source}: {path!r} must be a dataset, found a group")
    dtype = member.dtype
    if dtype.name not in allowed:
        raise SetFileError(f"{source}: dataset {path!r} has dtype {dtype}, "
                           f"expected {' or '.join(allowed)}")
    return torch.from_numpy(np.asarray(member[()], dtype=dtype.newbyteorder("="), order="C"))


# ---------------------------------------------------------------------- small helpers (set.py and importers use them)


def as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, np.bytes_)) else str(value)


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception as one short line (h5py and torch messages span several)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
