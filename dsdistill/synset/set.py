"""The synthetic set: the dataclass, the schema of its file and its validation (HDF5 I/O: h5.py).

The set file is the one contract between synthesizers and the evaluator. HDF5, schema version 1
(DESIGN.md, "Synthetic-set file, schema version 1"):

- datasets: ``images`` float32 [N, C, H, W] in the stored space; ``labels`` int64 [N]; optional
  ``soft_labels`` float32 [N, K]; optional ``lr`` float32 scalar; optional group ``zca`` holding the
  whitening state, one float dataset per key.
- attributes: format, format_version, dataset, num_classes, class_names, ipc, image_space, mean,
  std, decoder, method, method_config (JSON), seed (-1 for None; absent also reads as None),
  created_utc, dsdistill_version, torch_version, distill_seconds, distill_iterations,
  payload_sha256, label_bytes, and ``extra`` (JSON: loss curve, provenance, teacher hashes, label
  source, intended protocol).

Reproducibility: the payload (images, labels, soft labels, lr and the ZCA state) is hashed over
canonical little-endian bytes, so the same set always has the same ``payload_sha256``. The file
itself is written without HDF5 timestamps, so two saves of the same set differ only in the
``created_utc`` attribute (fixed by ``$SOURCE_DATE_EPOCH`` when set) and in ``distill_seconds``
(a wall-clock measurement); with both equal the files are byte-identical.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .._provenance import FILE_STAMP, utc_now
from .._version import __version__
from ..errors import SetFileError
from .._io import Stamp
from ..errors import ConfigError
from .decode import decode, is_known_decoder
from .h5 import Reader, as_str, is_int, is_real, open_file, short, string_array, write_file
from .tensors import as_float_images, as_labels, dataset_fields
from .views import SetDataset

FORMAT = "dsdistill-synset"
FORMAT_VERSION = 1
IMAGE_SPACES = ("normalized", "zca")
"""``normalized``: (pixel - mean) / std per channel; ``zca``: whitened, see the ``zca`` state."""

_NO_SEED = -1
_PAYLOAD_DOMAIN = b"dsdistill-synset-payload-v1\n"

REQUIRED_ATTRS = (
    "format", "format_version", "dataset", "num_classes", "class_names", "ipc", "image_space",
    "mean", "std", "decoder", "method", "method_config", "created_utc", "dsdistill_version",
    "torch_version", "distill_seconds", "distill_iterations", "payload_sha256", "label_bytes",
)
"""Attributes every version-1 file carries; ``seed`` and ``extra`` may be absent."""


@dataclass(eq=False, repr=False)
class SyntheticSet:
    """A distilled set plus everything needed to score it the way it was meant to be scored.

    ``eq`` is off because tensors have no single truth value; compare ``payload_sha256()`` instead.
    """

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_space: str = "normalized"
    soft_labels: torch.Tensor | None = None
    """float32 [N, K]: probabilities or logits; ``extra["label_source"]`` says which and how made."""
    lr: float | None = None
    """The learned student step size (trajectory matching); stored as float32."""
    zca: dict[str, torch.Tensor] | None = None
    """The whitening state when ``image_space == "zca"`` (needed to draw or un-whiten images)."""
    decoder: str = "none"
    method: str = "unknown"
    method_config: dict = field(default_factory=dict)
    seed: int | None = None
    distill_seconds: float = 0.0
    distill_iterations: int = 0
    extra: dict = field(default_factory=dict)
    file_info: dict[str, str] = field(default_factory=dict)
    """What a loaded file said about its writing (created_utc, dsdistill_version, torch_version);
    empty for a set made in memory. ``save`` always writes the current values instead."""

    # ------------------------------------------------------------------ derived figures

    @property
    def ipc(self) -> int:
        """Stored images per class: N // num_classes for a balanced set, else the largest class.

        Counts stored images, before any decoder multiplies them.
        """
        counts = torch.bincount(self.labels.detach().cpu(), minlength=self.num_classes)
        return int(counts.max()) if counts.numel() else 0

    @property
    def label_bytes(self) -> int:
        """Storage the labels cost (hard int64 + soft labels): soft labels are part of the budget."""
        size = self.labels.numel() * self.labels.element_size()
        if self.soft_labels is not None:
            size += self.soft_labels.numel() * self.soft_labels.element_size()
        return size

    def payload_sha256(self) -> str:
        """sha256 of the payload's canonical bytes; metadata and timestamps do not enter it.

        Covers images, labels, soft labels, lr and the ZCA state (everything that changes what a
        model trained on the set learns), each with its name, dtype and shape.
        """
        digest = hashlib.sha256(_PAYLOAD_DOMAIN)
        for name, tensor in self._payload_items():
            _hash_tensor(digest, name, tensor)
        return digest.hexdigest()

    def _payload_items(self) -> Iterator[tuple[str, torch.Tensor | None]]:
        yield "images", self.images
        yield "labels", self.labels
        yield "soft_labels", self.soft_labels
        yield "lr", None if self.lr is None else torch.tensor(self.lr, dtype=torch.float32)
        for key in sorted(self.zca or {}):
            yield f"zca/{key}", self.zca[key]

    # ------------------------------------------------------------------ checks

    def validate(self, source: str = "synthetic set") -> None:
        """Raise SetFileError naming ``source`` and the first problem found; a set that passes
        can be saved, loaded and evaluated."""
        problem = next(self._problems(), None)
        if problem is not None:
            raise SetFileError(f"{source}: {problem}")

    def _problems(self) -> Iterator[str]:
        """Problems in order; each check may rely on the ones before it having passed."""
        yield from self._tensor_problems()
        yield from self._metadata_problems()
        yield from self._value_problems()  # last: these touch every element

    def _tensor_problems(self) -> Iterator[str]:
        images, labels, soft = self.images, self.labels, self.soft_labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.float32:
            yield f"images must be a float32 tensor, got {_describe_value(images)}"
        if images.dim() != 4 or images.shape[0] == 0:
            yield f"images must have shape [N, C, H, W] with N >= 1, got {tuple(images.shape)}"
        n = images.shape[0]
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
            yield f"labels must be an int64 tensor, got {_describe_value(labels)}"
        if labels.dim() != 1 or labels.shape[0] != n:
            yield f"labels must have shape [N] = [{n}], got {tuple(labels.shape)}"
        if not is_int(self.num_classes) or self.num_classes < 1:
            yield f"num_classes must be a positive integer, got {self.num_classes!r}"
        k = int(self.num_classes)
        if soft is not None:
            if not isinstance(soft, torch.Tensor) or soft.dtype != torch.float32:
                yield f"soft_labels must be a float32 tensor, got {_describe_value(soft)}"
            if tuple(soft.shape) != (n, k):
                yield f"soft_labels must have shape [N, K] = [{n}, {k}], got {tuple(soft.shape)}"
        if self.zca is not None:
            if not isinstance(self.zca, dict) or not self.zca:
                yield f"zca must be a non-empty dict of tensors, got {short(self.zca)}"
            for key, value in self.zca.items():
                if not isinstance(key, str) or not key or "/" in key:
                    yield f"zca keys must be plain names, got {key!r}"
                if not isinstance(value, torch.Tensor) or value.dtype not in (
                        torch.float32, torch.float64):
                    yield f"zca[{key!r}] must be a float32/float64 tensor, " \
                          f"got {_describe_value(value)}"

    def _metadata_problems(self) -> Iterator[str]:
        k, channels = int(self.num_classes), self.images.shape[1]
        if not isinstance(self.dataset, str) or not self.dataset:
            yield f"dataset must be a non-empty name, got {self.dataset!r}"
        if not isinstance(self.class_names, (list, tuple)) or len(self.class_names) != k \
                or not all(isinstance(c, str) for c in self.class_names):
            yield f"class_names must be {k} strings (one per class), got {short(self.class_names)}"
        for name, stats in (("mean", self.mean), ("std", self.std)):
            if not _is_real_sequence(stats) or len(stats) != channels:
                yield f"{name} must hold {channels} finite numbers (one per channel), " \
                      f"got {short(stats)}"
        if any(s <= 0 for s in self.std):
            yield f"std must be positive, got {tuple(self.std)}"
        if self.image_space not in IMAGE_SPACES:
            yield f"unknown image_space {self.image_space!r}; known: {', '.join(IMAGE_SPACES)}"
        if not isinstance(self.decoder, str) or not is_known_decoder(self.decoder):
            yield f"unknown decoder {self.decoder!r}; known: none, multiformation-F (F >= 2)"
        if not isinstance(self.method, str) or not self.method:
            yield f"method must be a non-empty name, got {self.method!r}"
        if self.lr is not None and not (is_real(self.lr) and math.isfinite(self.lr)
                                        and self.lr > 0):
            yield f"lr must be a finite positive number, got {self.lr!r}"
        if self.seed is not None and (not is_int(self.seed) or self.seed < 0):
            yield f"seed must be a non-negative integer or None, got {self.seed!r}"
        if not (is_real(self.distill_seconds) and math.isfinite(self.distill_seconds)
                and self.distill_seconds >= 0):
            yield f"distill_seconds must be a finite number >= 0, got {self.distill_seconds!r}"
        if not is_int(self.distill_iterations) or self.distill_iterations < 0:
            yield f"distill_iterations must be an integer >= 0, got {self.distill_iterations!r}"
        for name in ("method_config", "extra"):
            try:
                _to_json(getattr(self, name))
            except (TypeError, ValueError) as err:
                yield f"{name} must be a JSON-serialisable dict ({err})"

    def _value_problems(self) -> Iterator[str]:
        if not bool(torch.isfinite(self.images).all()):
            yield "images contain NaN or inf"
        if self.soft_labels is not None and not bool(torch.isfinite(self.soft_labels).all()):
            yield "soft_labels contain NaN or inf"
        for key, value in (self.zca or {}).items():
            if not bool(torch.isfinite(value).all()):
                yield f"zca[{key!r}] contains NaN or inf"
        low, high = int(self.labels.min()), int(self.labels.max())
        if low < 0 or high >= self.num_classes:
            yield f"labels must lie in [0, {self.num_classes}), found {low if low < 0 else high}"

    # ------------------------------------------------------------------ other tools

    @classmethod
    def from_tensors(cls, images: Any, labels: Any = None, *, dataset: str, soft_labels: Any = None,
                     mean: Any = None, std: Any = None, class_names: Any = None, num_classes: int | None = None,
                     method: str = "imported", **fields: Any) -> "SyntheticSet":
        """A checked set from another tool's tensors (or numpy arrays), ready to evaluate or save.

        images: [N, C, H, W] floats normalised with the dataset's mean/std (the registry's, unless given);
        labels: class indices [N], or None for class-major order (N // K images of class 0, then class 1, ...,
        as DC/DM/MTT store them); soft_labels: optional float [N, K]. The dataset's facts (classes, class names,
        statistics) come from its registry entry unless given, so no data is loaded; the images must have its
        channel count and size. Further fields (lr, image_space, zca, decoder, seed, extra) pass through to the set."""
        x = as_float_images(images)
        facts = dataset_fields(dataset, x, mean, std, class_names, num_classes)
        soft = None if soft_labels is None else torch.as_tensor(soft_labels).detach().to("cpu", torch.float32)
        synset = cls(images=x, labels=as_labels(labels, len(x), facts["num_classes"]), soft_labels=soft,
                     method=method, **facts, **fields)
        synset.validate(source="from_tensors")
        return synset

    def as_dataset(self, decoded: bool = True, soft: bool = False) -> SetDataset:
        """The set as a `torch.utils.data.Dataset` of (image, label) pairs for a PyTorch DataLoader.

        decoded: apply the set's decoder (a multi-formation image becomes its F*F training images, labels
        repeated), as the evaluator does; False yields the stored images. soft: yield the stored soft labels
        (float32 [K], as stored: see extra["label_source"] for logits or probabilities) instead of the hard
        class index; a set labelled online by a teacher stores none (`dsdistill relabel --mode stored` does)."""
        if soft and self.soft_labels is None:
            online = " (it is labelled online by a teacher: store them with `dsdistill relabel --mode stored`)" \
                if self.extra.get("teacher") else ""
            raise ConfigError(f"this set stores no soft labels{online}; use soft=False for its hard labels")
        targets = self.soft_labels if soft else self.labels
        images = self.images.detach()
        if decoded:
            images, targets = decode(images, targets, self.decoder)
        return SetDataset(images.detach(), targets.detach(), self.class_names)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, unchanged_since: Stamp | bool = False) -> None:
        """Write the set as an HDF5 file (schema version 1); the target appears only when complete.
        unchanged_since: a dsdistill._io.file_stamp of the target taken when the run began; a target another
        writer changed since is not replaced (ConfigError)."""
        target = Path(path)
        self.validate(source=str(target))
        payload = [(name, tensor) for name, tensor in self._payload_items() if tensor is not None]
        write_file(target, payload, self._file_attrs(), unchanged_since)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "SyntheticSet":
        """Read and fully check a set file: format, version, shapes, dtypes, values, sha256."""
        source = Path(path)
        with open_file(source) as reader:
            synset, attrs = _read_file(reader)
        synset.validate(source=str(source))
        _check_derived(synset, attrs, str(source))
        return synset.to(device)

    def to(self, device: str | torch.device) -> "SyntheticSet":
        """The same set with every tensor on ``device``."""
        zca = None if self.zca is None else {k: v.to(device) for k, v in self.zca.items()}
        soft = None if self.soft_labels is None else self.soft_labels.to(device)
        return dataclasses.replace(self, images=self.images.to(device),
                                   labels=self.labels.to(device), soft_labels=soft, zca=zca)

    def _file_attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "num_classes": int(self.num_classes),
            "class_names": string_array(self.class_names),
            "ipc": self.ipc,
            "image_space": self.image_space,
            "mean": np.asarray(self.mean, dtype=np.float64),
            "std": np.asarray(self.std, dtype=np.float64),
            "decoder": self.decoder,
            "method": self.method,
            "method_config": _to_json(self.method_config),
            "seed": _NO_SEED if self.seed is None else int(self.seed),
            "created_utc": utc_now(FILE_STAMP),
            "dsdistill_version": __version__,
            "torch_version": str(torch.__version__),  # TorchVersion: h5py wants a plain str
            "distill_seconds": float(self.distill_seconds),
            "distill_iterations": int(self.distill_iterations),
            "payload_sha256": self.payload_sha256(),
            "label_bytes": self.label_bytes,
            "extra": _to_json(self.extra),
        }

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape[1:])
        return (f"SyntheticSet(dataset={self.dataset!r}, method={self.method!r}, "
                f"n={self.images.shape[0]}, ipc={self.ipc}, image={shape}, "
                f"space={self.image_space!r}, soft_labels={self.soft_labels is not None}, "
                f"lr={self.lr}, decoder={self.decoder!r})")


# ---------------------------------------------------------------------- reading


def _read_file(reader: Reader) -> tuple[SyntheticSet, dict[str, Any]]:
    """Check the envelope (format, version, members, dtypes), then build the set."""
    source = reader.source
    fmt = reader.raw("format")
    if fmt is None or as_str(fmt) != FORMAT:
        found = "no 'format' attribute" if fmt is None else f"format {as_str(fmt)!r}"
        raise SetFileError(f"{source}: not a dsdistill synthetic-set file ({found}, "
                           f"expected {FORMAT!r})")
    version = reader.integer("format_version")
    if version > FORMAT_VERSION:
        raise SetFileError(f"{source}: written by a newer dsdistill (format_version {version}, "
                           f"this one reads up to {FORMAT_VERSION}); upgrade dsdistill")
    if version < 1:
        raise SetFileError(f"{source}: unknown format_version {version}")
    for name in ("images", "labels"):
        if not reader.has(name):
            raise SetFileError(f"{source}: missing dataset {name!r}")
    for name in REQUIRED_ATTRS:
        if not reader.has_attr(name):
            raise SetFileError(f"{source}: missing attribute {name!r}")

    images = reader.tensor("images", ("float32",))
    labels = reader.tensor("labels", ("int64",))
    soft = reader.tensor("soft_labels", ("float32",)) if reader.has("soft_labels") else None
    lr = None
    if reader.has("lr"):
        lr_tensor = reader.tensor("lr", ("float32",))
        if lr_tensor.dim() != 0:
            raise SetFileError(f"{source}: dataset 'lr' must be a scalar, "
                               f"got shape {tuple(lr_tensor.shape)}")
        lr = float(str(lr_tensor.numpy()[()]))  # shortest float32 repr: 0.01, not 0.0099999998
    zca = reader.tensors_in("zca", ("float32", "float64")) if reader.has("zca") else None
    seed = reader.integer("seed") if reader.has_attr("seed") else _NO_SEED

    synset = SyntheticSet(
        images=images, labels=labels, soft_labels=soft, lr=lr, zca=zca,
        dataset=reader.text("dataset"),
        num_classes=reader.integer("num_classes"),
        class_names=reader.texts("class_names"),
        mean=reader.numbers("mean"),
        std=reader.numbers("std"),
        image_space=reader.text("image_space"),
        decoder=reader.text("decoder"),
        method=reader.text("method"),
        method_config=reader.json_object("method_config"),
        seed=None if seed == _NO_SEED else seed,
        distill_seconds=reader.number("distill_seconds"),
        distill_iterations=reader.integer("distill_iterations"),
        extra=reader.json_object("extra") if reader.has_attr("extra") else {},
        file_info={name: reader.text(name)
                   for name in ("created_utc", "dsdistill_version", "torch_version")},
    )
    stored = {"payload_sha256": reader.text("payload_sha256"), "ipc": reader.integer("ipc"),
              "label_bytes": reader.integer("label_bytes")}
    return synset, stored


def _check_derived(synset: SyntheticSet, stored: dict[str, Any], source: str) -> None:
    """The sha256 catches damage to the payload; ipc and label_bytes must agree with it."""
    if synset.payload_sha256() != stored["payload_sha256"]:
        raise SetFileError(f"{source}: payload does not match its sha256: "
                           f"the file was modified or damaged")
    for name in ("ipc", "label_bytes"):
        if getattr(synset, name) != stored[name]:
            raise SetFileError(f"{source}: attribute {name} is {stored[name]} but the payload "
                               f"gives {getattr(synset, name)}: the file was modified or damaged")



# ---------------------------------------------------------------------- small helpers


def _hash_tensor(digest: "hashlib._Hash", name: str, tensor: torch.Tensor | None) -> None:
    """Name, dtype and shape first, then the values as little-endian C-order bytes."""
    if tensor is None:
        digest.update(f"{name}|absent\n".encode())
        return
    array = tensor.detach().cpu().numpy()
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}\n".encode())
    digest.update(array.reshape(-1).view(np.uint8))


def _to_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal configs give equal attributes."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a dict, got {type(obj).__name__}")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _is_real_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(is_real(v) and math.isfinite(v) for v in value)
