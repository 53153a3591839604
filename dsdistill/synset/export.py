"""A set for tools that do not read HDF5: an image folder (`torchvision.datasets.ImageFolder`) or a numpy .npz.

- ``imagefolder``: the decoded training images (the decoder applied, as the evaluator trains on them), turned
  back into pixels and written as 8-bit PNGs, ``KK-<class name>/NNNNN.png``. The class index prefix is there
  because ImageFolder numbers classes in sorted folder order: with it, ImageFolder's class index is the set's
  label. ``manifest.json`` names the set's payload sha256, its normalisation, the de-normalisation used and how
  many pixel values were clipped to [0, 1] (a PNG is lossy: 8 bits, clipped).
- ``npz``: the stored images exactly (float32, in the set's space), labels, soft labels and lr when present, the
  ZCA state of a ZCA set (``zca_<key>``), and ``metadata`` (a JSON string): enough to rebuild the same payload.
"""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .._io import atomic_folder, atomic_path, check_output
from ..data import ZCA
from ..errors import ConfigError
from .set import SyntheticSet

FORMATS: dict[str, Callable[[SyntheticSet, Path, str], dict[str, Any]]] = {}


def export_format(name: str) -> Callable:
    def decorator(fn: Callable) -> Callable:
        FORMATS[name] = fn
        return fn
    return decorator


def _metadata(synset: SyntheticSet, command: str) -> dict[str, Any]:
    meta = {"format": "dsdistill-export", "payload_sha256": synset.payload_sha256(), "dataset": synset.dataset,
            "method": synset.method, "ipc": synset.ipc, "num_classes": synset.num_classes,
            "class_names": list(synset.class_names), "image_space": synset.image_space,
            "mean": list(synset.mean), "std": list(synset.std), "decoder": synset.decoder, "lr": synset.lr,
            "seed": synset.seed, "source_command": synset.extra.get("command", "")}
    if command:
        meta["command"] = command
    return meta


def to_pixels(synset: SyntheticSet, images: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Images in [0, 1] pixel space (not yet clipped) and the formula used: x * std + mean per channel, or the
    inverse of the set's own ZCA whitening (whose input was [0, 1] pixels)."""
    if synset.image_space == "zca":
        return (ZCA.from_state_dict(synset.zca).inverse(images),
                "inverse of the set's ZCA whitening, then clip to [0, 1] and round(255 * pixel)")
    mean = torch.tensor(synset.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(synset.std, dtype=images.dtype).view(1, -1, 1, 1)
    return images * std + mean, "pixel = clip(x * std + mean, 0, 1) per channel, then round(255 * pixel)"


def class_folder(index: int, name: str, num_classes: int) -> str:
    """'03-Dress': the index keeps ImageFolder's sorted order equal to the labels; the name is made a safe single
    path component ('T-shirt/top' -> 'T-shirt_top')."""
    safe = re.sub(r"[^\w.+-]+", "_", name).strip("._") or "class"
    return f"{index:0{len(str(num_classes - 1))}d}-{safe}"


@export_format("imagefolder")
def export_imagefolder(synset: SyntheticSet, out: Path, command: str = "") -> dict[str, Any]:
    from PIL import Image  # late: Pillow is torchvision's dependency, used only here

    data = synset.as_dataset(decoded=True)
    pixels, formula = to_pixels(synset, data.images.float().cpu())
    clipped = int(((pixels < 0) | (pixels > 1)).sum())
    array = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = data.targets.cpu().tolist()
    folders = [class_folder(k, n, synset.num_classes) for k, n in enumerate(synset.class_names)]
    with atomic_folder(out) as tmp:
        for folder in folders:
            (tmp / folder).mkdir()
        files = []
        for i, (img, label) in enumerate(zip(array, labels)):
            name = f"{folders[label]}/{i:05d}.png"
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(tmp / name, format="png")
            files.append({"file": name, "label": label})
        manifest = {**_metadata(synset, command), "images": len(files), "classes": folders,
                    "denormalisation": formula, "clipped_values": clipped,
                    "clipped_fraction": clipped / max(1, pixels.numel()), "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


@export_format("npz")
def export_npz(synset: SyntheticSet, out: Path, command: str = "") -> dict[str, Any]:
    arrays: dict[str, np.ndarray] = {"images": synset.images.detach().cpu().numpy(),
                                     "labels": synset.labels.detach().cpu().numpy()}
    if synset.soft_labels is not None:
        arrays["soft_labels"] = synset.soft_labels.detach().cpu().numpy()
    for key, value in (synset.zca or {}).items():
        arrays[f"zca_{key}"] = value.detach().cpu().numpy()
    meta = _metadata(synset, command)
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return {**meta, "images": len(synset.images)}


def load_npz(path: str | os.PathLike) -> SyntheticSet:
    """The set an `npz` export holds (the same payload sha256), for a round trip back to dsdistill."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["metadata"]))
        zca = {k.removeprefix("zca_"): torch.from_numpy(npz[k]) for k in npz.files if k.startswith("zca_")} or None
        soft = torch.from_numpy(npz["soft_labels"]) if "soft_labels" in npz.files else None
        images, labels = torch.from_numpy(npz["images"]), torch.from_numpy(npz["labels"])
    synset = SyntheticSet(images=images, labels=labels, soft_labels=soft, zca=zca, lr=meta["lr"],
                          dataset=meta["dataset"], num_classes=meta["num_classes"], class_names=meta["class_names"],
                          mean=tuple(meta["mean"]), std=tuple(meta["std"]), image_space=meta["image_space"],
                          decoder=meta["decoder"], method=meta["method"], seed=meta["seed"])
    synset.validate(source=str(path))
    return synset


def export_set(path: str | os.PathLike, fmt: str, out: str | os.PathLike, command: str = "") -> dict[str, Any]:
    """`dsdistill export`: the set file at `path` written as `fmt` to `out` (checked before any work); returns
    the manifest (or the npz metadata)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    target = check_output(out, folder=fmt == "imagefolder")
    if fmt == "imagefolder" and target.exists():
        raise ConfigError(f"--out {target} exists; remove it or choose another folder")
    return FORMATS[fmt](SyntheticSet.load(path), target, command)


__all__ = ["FORMATS", "class_folder", "export_set", "load_npz", "to_pixels"]
