"""Bring other tools' synthetic sets into the dsdistill format.

Supported sources:

- the DC / DSA / DM result file (VICO-UoE/DatasetCondensation): a torch-saved dict
  ``{'data': [[images, labels], ...one pair per experiment], 'accs_all_exps': {model: [acc]}}``;
- a tensor pair in one .pt file: ``(images, labels)``, ``{'images', 'labels'}`` or
  ``{'image_syn', 'label_syn'}``;
- two .pt files: images (e.g. MTT's ``images_best.pt``) and ``labels_path`` (``labels_best.pt``),
  with MTT's learned step size passed as ``lr`` (a number or the ``lr_best.pt`` path).

Such files are pickles, and unpickling a stranger's file can run any code. Every file is therefore
read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only (plus
numpy scalars, which DC result files hold as accuracies). Anything else is refused.
"""
from __future__ import annotations

import numbers
import os
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np
import torch

from .._io import file_sha256
from ..errors import SetFileError
from .h5 import one_line
from .set import SyntheticSet

try:
    from numpy._core.multiarray import scalar as _NUMPY_SCALAR  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import scalar as _NUMPY_SCALAR
SAFE_NUMPY_GLOBALS: list[Any] = [
    # numpy scalars pickle as scalar(dtype, raw bytes): data, not code. Files written under
    # numpy 1 name the function numpy.core.multiarray.scalar, under numpy 2 numpy._core....
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
    (_NUMPY_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    *(type(np.dtype(name)) for name in ("float64", "float32", "float16", "int64", "int32",
                                        "int16", "int8", "uint8", "bool")),
]
_IMAGE_KEYS = ("images", "image_syn")
_LABEL_KEYS = ("labels", "label_syn")


def import_set(path: str | os.PathLike, *, dataset: str, num_classes: int,
               mean: Sequence[float], std: Sequence[float],
               class_names: Sequence[str] | None = None, experiment: int = 0,
               labels_path: str | os.PathLike | None = None,
               lr: float | str | os.PathLike | None = None,
               image_space: str = "normalized", zca: dict[str, torch.Tensor] | None = None,
               method: str = "imported", decoder: str = "none",
               check: Callable[[torch.Tensor], None] | None = None) -> SyntheticSet:
    """Read another tool's set as a checked SyntheticSet.

    The caller supplies the dataset facts (``num_classes``, ``mean``/``std`` the images were
    normalised with, ``class_names``: default "0".."K-1"), because these files do not carry
    them. ``experiment`` picks one of the sets a DC/DSA/DM result file holds. 2-D float labels
    are soft labels; the hard labels are their argmax. Where the set came from (path, sha256,
    structure, experiment) is recorded in ``extra["source"]``. ``check(images)``, when given, runs on the
    images as soon as they are read (e.g. that they have the dataset's channel count).
    """
    source = Path(path)
    loaded = safe_torch_load(source)
    images, labels, structure, notes = _unpack(loaded, source, experiment, labels_path)
    if structure != "dc-results" and experiment != 0:
        raise SetFileError(f"{source}: holds a single set ({structure}); experiment={experiment} "
                           f"applies only to DC/DSA/DM result files")
    images = _as_images(images, source)
    if check is not None:
        check(images)
    hard, soft, label_source = _as_labels(labels, source)
    extra: dict[str, Any] = {
        "source": {"path": str(source), "sha256": file_sha256(source), "structure": structure,
                   **notes},
        "label_source": label_source,
    }
    if labels_path is not None:
        extra["source"]["labels_path"] = str(labels_path)
        extra["source"]["labels_sha256"] = file_sha256(Path(labels_path))
    if lr is not None and not isinstance(lr, numbers.Real):
        extra["source"]["lr_path"] = str(lr)
        extra["source"]["lr_sha256"] = file_sha256(Path(lr))
    synset = SyntheticSet(
        images=images, labels=hard, soft_labels=soft, lr=_as_lr(lr),
        dataset=dataset, num_classes=num_classes,
        class_names=list(class_names) if class_names is not None
        else [str(c) for c in range(num_classes)],
        mean=tuple(mean), std=tuple(std), image_space=image_space, zca=zca,
        decoder=decoder, method=method, extra=extra,
    )
    synset.validate(source=str(source))
    return synset


def safe_torch_load(path: str | os.PathLike) -> Any:
    """torch.load that can only build tensors and plain containers, never run a file's code."""
    path = Path(path)
    if not path.is_file():
        raise SetFileError(f"{path}: no such file")
    if h5py.is_hdf5(path):
        raise SetFileError(f"{path}: is an HDF5 file, not a torch file; dsdistill set files are "
                           f"read with SyntheticSet.load")
    try:
        with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(err))
        if unsafe:
            raise SetFileError(
                f"{path}: refusing to load: the file would call {unsafe.group(1)}, and a file "
                f"from an unknown source must never run code (only tensors, numbers, lists and "
                f"dicts are read)") from err
        raise SetFileError(f"{path}: not a torch file of tensors, numbers, lists and dicts "
                           f"({_unpickling_reason(err)})") from err
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, TypeError) as err:
        raise SetFileError(f"{path}: not a readable torch file "
                           f"({type(err).__name__}: {one_line(err)})") from err


def _unpickling_reason(err: BaseException) -> str:
    """The useful line of torch's long weights-only error, e.g. 'Unsupported operand 72'."""
    found = re.search(r"Unsupported operand \S+|WeightsUnpickler error: *\S[^\n]*", str(err))
    return found.group(0) if found else one_line(err)


def _unpack(loaded: Any, source: Path, experiment: int,
            labels_path: str | os.PathLike | None) -> tuple[Any, Any, str, dict[str, Any]]:
    """(images, labels, structure name, provenance notes) from whatever the file held."""
    if labels_path is not None:
        if not isinstance(loaded, torch.Tensor):
            raise SetFileError(f"{source}: with labels_path the file must hold an images tensor, "
                               f"found {describe(loaded)}")
        return loaded, safe_torch_load(Path(labels_path)), "tensor-files", {}
    if isinstance(loaded, dict) and "data" in loaded:
        return _unpack_dc_results(loaded, source, experiment)
    if isinstance(loaded, (list, tuple)) and len(loaded) == 2:
        return loaded[0], loaded[1], "tensor-pair", {}
    if isinstance(loaded, dict):
        image_key = next((k for k in _IMAGE_KEYS if k in loaded), None)
        label_key = next((k for k in _LABEL_KEYS if k in loaded), None)
        if image_key and label_key:
            return loaded[image_key], loaded[label_key], "tensor-dict", {}
    if isinstance(loaded, torch.Tensor):
        raise SetFileError(f"{source}: holds only an images tensor {tuple(loaded.shape)}; "
                           f"pass labels_path= (e.g. labels_best.pt)")
    raise SetFileError(f"{source}: unknown structure: found {describe(loaded)}; expected a DC/DSA/"
                       f"DM result dict with 'data', an (images, labels) pair, or a dict with "
                       f"'images'/'labels' or 'image_syn'/'label_syn'")


def _unpack_dc_results(loaded: dict, source: Path,
                       experiment: int) -> tuple[Any, Any, str, dict[str, Any]]:
    runs = loaded["data"]
    if not isinstance(runs, (list, tuple)) or not runs:
        raise SetFileError(f"{source}: 'data' must be a list of [images, labels] pairs, "
                           f"found {describe(runs)}")
    if not 0 <= experiment < len(runs):
        raise SetFileError(f"{source}: holds experiments 0..{len(runs) - 1}; "
                           f"experiment {experiment} does not exist")
    run = runs[experiment]
    if not isinstance(run, (list, tuple)) or len(run) != 2:
        raise SetFileError(f"{source}: data[{experiment}] must be an [images, labels] pair, "
                           f"found {describe(run)}")
    notes: dict[str, Any] = {"experiment": experiment, "experiments_in_file": len(runs)}
    accuracies = _plain_accuracies(loaded.get("accs_all_exps"))
    if accuracies is not None:
        notes["accs_all_exps"] = accuracies  # the source's own scores, all experiments pooled
    return run[0], run[1], "dc-results", notes


def _plain_accuracies(value: Any) -> dict[str, list[float]] | None:
    """{model: [acc, ...]} as JSON-ready floats, or None when the entry looks different."""
    if not isinstance(value, dict):
        return None
    try:
        return {str(model): [float(a) for a in accs] for model, accs in value.items()}
    except (TypeError, ValueError):
        return None


def _as_images(images: Any, source: Path) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise SetFileError(f"{source}: images must be a tensor, found {describe(images)}")
    if not images.is_floating_point():
        raise SetFileError(f"{source}: images are {_dtype(images)}; expected normalised floats "
                           f"(pixels stored as integers are not a supported input)")
    if images.dim() != 4:
        raise SetFileError(f"{source}: images must have shape [N, C, H, W], "
                           f"got {tuple(images.shape)}")
    return images.detach().to(torch.float32).contiguous()


def _as_labels(labels: Any, source: Path) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(hard labels, soft labels or None, a note on where they came from)."""
    if not isinstance(labels, torch.Tensor):
        raise SetFileError(f"{source}: labels must be a tensor, found {describe(labels)}")
    labels = labels.detach()
    if labels.dim() == 2 and labels.is_floating_point():
        soft = labels.to(torch.float32).contiguous()
        return soft.argmax(dim=1), soft, "soft labels from the source file; hard labels = argmax"
    if labels.dim() == 1 and not labels.is_floating_point() and labels.dtype != torch.bool:
        return labels.to(torch.int64), None, "hard labels from the source file"
    if labels.dim() == 1 and labels.is_floating_point() and bool((labels == labels.round()).all()):
        return labels.to(torch.int64), None, "hard labels from the source file (stored as floats)"
    raise SetFileError(f"{source}: labels must be class indices [N] or soft labels [N, K], "
                       f"found {describe(labels)}")


def _as_lr(lr: float | str | os.PathLike | None) -> float | None:
    """A number, or a .pt file holding one (MTT's lr_best.pt)."""
    if lr is None or isinstance(lr, numbers.Real):
        return None if lr is None else float(lr)
    path = Path(lr)
    value = safe_torch_load(path)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return float(value.detach().reshape(()))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise SetFileError(f"{path}: expected a learned lr (one number), found {describe(value)}")


def describe(obj: Any, depth: int = 2) -> str:
    """A short account of a loaded object's structure, for error messages."""
    if isinstance(obj, torch.Tensor):
        return f"{_dtype(obj)} tensor {tuple(obj.shape)}"
    if isinstance(obj, dict):
        keys = list(obj)[:6]
        more = ", ..." if len(obj) > 6 else ""
        if depth <= 0:
            return f"dict with keys {keys}{more}"
        inner = ", ".join(f"{k!r}: {describe(obj[k], depth - 1)}" for k in keys)
        return f"dict {{{inner}{more}}}"
    if isinstance(obj, (list, tuple)):
        kind = type(obj).__name__
        if depth <= 0 or not obj:
            return f"{kind} of {len(obj)} items"
        return f"{kind} of {len(obj)} items, first {describe(obj[0], depth - 1)}"
    return type(obj).__name__


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
