"""What the set-file commands do, one function each, so the command line only parses and prints:
`dsdistill info` (describe), `dsdistill show` (draw) and `dsdistill import` (import_for_dataset)."""
from __future__ import annotations

import json
import os
from typing import Any

from ..data import DATASETS, ZCA
from . import SyntheticSet, import_set, save_grid  # the package's names: this module is not part of its __init__


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A set file's metadata, one entry per line `dsdistill info` prints, in that order (the file is checked
    on loading: a damaged one is refused)."""
    s = SyntheticSet.load(path)
    rows: dict[str, Any] = {
        "file": str(path), "dataset": s.dataset, "method": s.method, "ipc": s.ipc,
        "images": f"{tuple(s.images.shape)} float32, space {s.image_space}", "labels": f"{len(s.labels)} hard"
        + (f" + soft {tuple(s.soft_labels.shape)}" if s.soft_labels is not None else ""),
        "label bytes": s.label_bytes, "learned lr": s.lr, "decoder": s.decoder, "seed": s.seed,
        "distillation": f"{s.distill_iterations} iterations, {s.distill_seconds:.1f} s",
        "payload sha256": s.payload_sha256(), "method config": json.dumps(s.method_config, sort_keys=True),
    }
    if "command" in s.extra:
        rows["command"] = s.extra["command"]
    if s.extra.get("teacher"):
        t = s.extra["teacher"]
        rows["soft labels"] = (f"{t.get('mode', 'stored')}, teacher {t.get('path')}: "
                               + ", ".join(f"{m['name']} ({m['sha256'][:12]})" for m in t.get("members", [])))
    rows.update(s.file_info)
    return rows


def draw(path: str | os.PathLike, out: str | os.PathLike, max_per_class: int = 10) -> None:
    """A class-by-class PNG grid of a set file, in pixels: a ZCA set is unwhitened first (its space is whitened
    [0, 1] pixels), a normalised one unnormalised (save_grid)."""
    synset = SyntheticSet.load(path)
    to_pixels = ZCA.from_state_dict(synset.zca).inverse if synset.zca is not None else None
    save_grid(synset, out, to_pixels=to_pixels, max_per_class=max_per_class)


def import_for_dataset(source: str | os.PathLike, out: str | os.PathLike, *, dataset: str = "fashion-mnist",
                       labels_path: str | os.PathLike | None = None, experiment: int = 0,
                       method: str = "imported", command: str = "") -> SyntheticSet:
    """import_set with the facts of a registered dataset (classes, mean and std the images were normalised
    with), saved to `out`; `command` is recorded in the file (every file says what produced it)."""
    spec = DATASETS.get(dataset)
    synset = import_set(source, labels_path=labels_path, dataset=spec.name, num_classes=spec.num_classes,
                        class_names=None, mean=spec.mean, std=spec.std, experiment=experiment, method=method)
    if command:
        synset.extra.setdefault("command", command)
    synset.save(out)
    return synset


__all__ = ["describe", "draw", "import_for_dataset"]
