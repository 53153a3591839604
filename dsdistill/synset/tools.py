"""What the set-file commands do, one function each, so the command line only parses and prints:
`dsdistill info` (describe), `dsdistill show` (draw) and `dsdistill import` (import_for_dataset)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from .._io import check_output
from .._text import count
from ..data import DATASETS, ZCA, load_dataset
from .tensors import check_shape
from . import SyntheticSet, import_set, save_grid  # the package's names: this module is not part of its __init__


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A set file's metadata, one entry per line `dsdistill info` prints, in that order (the file is checked
    on loading: a damaged one is refused)."""
    s = SyntheticSet.load(path)
    rows: dict[str, Any] = {
        "file": str(path), "dataset": s.dataset, "method": s.method, "ipc": s.ipc,
        "classes": f"{s.num_classes}: " + ", ".join(s.class_names),
        "images": f"{tuple(s.images.shape)} float32, space {s.image_space}", "labels": f"{len(s.labels)} hard"
        + (f" + soft {tuple(s.soft_labels.shape)}" if s.soft_labels is not None else ""),
        "label bytes": s.label_bytes, "learned lr": s.lr, "decoder": s.decoder, "seed": s.seed,
        "distillation": f"{count(s.distill_iterations, 'iteration')}, {s.distill_seconds:.1f} s",
        "payload sha256": s.payload_sha256(), "method config": json.dumps(s.method_config, sort_keys=True),
    }
    curve = loss_summary(s.extra.get("loss_curve"))
    if curve:
        rows["loss curve"] = curve
    if "command" in s.extra:
        rows["command"] = s.extra["command"]
    if s.extra.get("teacher"):
        t = s.extra["teacher"]
        rows["soft labels"] = (f"{t.get('mode', 'stored')}, teacher {t.get('path')}: "
                               + ", ".join(f"{m['name']} ({m['sha256'][:12]})" for m in t.get("members", [])))
    rows.update(s.file_info)
    return rows


def loss_summary(curve: Any) -> str:
    """'first 1.23 (it 0), last 0.456 (it 99), min 0.401 (it 87), 100 points over 100 iterations' for the
    stored curve (window means of the per-iteration loss), or '' when there is none."""
    if not isinstance(curve, dict) or not curve.get("loss"):
        return ""
    its, losses = list(curve.get("iteration", [])), [float(v) for v in curve["loss"]]
    its = its if len(its) == len(losses) else list(range(len(losses)))
    low = min(range(len(losses)), key=losses.__getitem__)
    return (f"first {losses[0]:.4g} (it {its[0]}), last {losses[-1]:.4g} (it {its[-1]}), min {losses[low]:.4g} "
            f"(it {its[low]}), {count(len(losses), 'point')} over {count(int(its[-1]) + 1, 'iteration')}")


def draw(path: str | os.PathLike, out: str | os.PathLike, max_per_class: int = 10) -> None:
    """A class-by-class PNG grid of a set file, in pixels: a ZCA set is unwhitened first (its space is whitened
    [0, 1] pixels), a normalised one unnormalised (save_grid)."""
    synset = SyntheticSet.load(path)
    to_pixels = ZCA.from_state_dict(synset.zca).inverse if synset.zca is not None else None
    save_grid(synset, out, to_pixels=to_pixels, max_per_class=max_per_class)


def import_for_dataset(source: str | os.PathLike, out: str | os.PathLike, *, dataset: str = "fashion-mnist",
                       labels_path: str | os.PathLike | None = None, experiment: int = 0,
                       method: str = "imported", command: str = "", lr: float | str | os.PathLike | None = None,
                       zca: bool = False, data_root: str | os.PathLike | None = None) -> SyntheticSet:
    """import_set with the facts of a registered dataset (classes, class names, mean and std the images were
    normalised with), saved to `out`; `command` is recorded in the file (every file says what produced it).

    lr: the learned step size (a number or MTT's lr_best.pt), kept in the set so `--protocol mtt` trains with it.
    zca: the images are ZCA-whitened as MTT whitens CIFAR (kornia ZCA, eps 0.1, fit on the [0, 1] train
    pixels): the dataset is loaded to fit that whitening, and the set carries it (the evaluator whitens the
    test images with it). The images must have the dataset's channels and size: a 3-channel tensor under the
    default fashion-mnist is refused, naming --dataset."""
    spec = DATASETS.get(dataset)
    check_output(out)
    synset = import_set(source, labels_path=labels_path, dataset=spec.name, num_classes=spec.num_classes,
                        class_names=list(spec.class_names) or None, mean=spec.mean, std=spec.std,
                        experiment=experiment, method=method, lr=lr, check=lambda images: check_shape(spec, images))
    if zca:  # after every cheap check: fitting the whitening loads the dataset
        whitening = load_dataset(spec.name, data_root, zca=True, device="cpu").zca
        synset = dataclasses.replace(synset, image_space="zca", zca=whitening.state_dict())
        synset.extra["source"]["zca"] = f"fit here on the {spec.name} train pixels (kornia ZCA, eps {whitening.eps})"
    if command:
        synset.extra.setdefault("command", command)
    synset.save(out)
    return synset


__all__ = ["describe", "draw", "import_for_dataset", "loss_summary"]
