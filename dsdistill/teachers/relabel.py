"""Relabel: attach a teacher's soft labels to any set (CV-DD's third stage; `dsdistill relabel`).

Two modes, recorded in the set (extra["teacher"]["mode"]) together with the teacher's members, weights and sha256:
- "online": nothing is stored; the soft-label protocol (kd) loads the named teacher and labels every crop the student
  sees (CV-DD's per-crop FKD labels, computed on the fly). Label bytes: the hard labels only; the report adds the
  teacher's checkpoint bytes.
- "stored": one logit vector per stored image, computed once with eval-mode BN, saved as `soft_labels` (float32
  [N, K]: N * K * 4 bytes). Static: the same target whatever crop the student sees. Ours, the cheap variant.
So a random or DM set can be scored under kd with the very labels a CV-DD set gets (like with like).
"""
from __future__ import annotations

import dataclasses
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..errors import ConfigError
from ..synset import SyntheticSet
from .committee import load_teacher
from .ensemble import RELABEL_TEMPERATURE, Teacher

MODES = ("online", "stored")
BN_MODES = {"online": "train", "stored": "eval"}
"""The teacher's BN mode per relabel mode: stored labels are one per image (eval-mode BN, batch-independent);
online labels are made per crop as the kd protocol's teacher makes them (train-mode BN, CV-DD's)."""


def teacher_record(teacher: Teacher) -> dict[str, Any]:
    """What a set stores to name its teacher: where, which members (by sha256) and their weights."""
    return {"path": teacher.source, "members": [{"name": n, "sha256": h} for n, h in zip(teacher.names, teacher.sha256)],
            "weights": [float(w) for w in teacher.weights], "checkpoint_bytes": teacher.checkpoint_bytes}


def relabel(synset: SyntheticSet, teacher: Teacher, mode: str, temperature: float | None = None) -> SyntheticSet:
    """A copy of `synset` labelled by `teacher` (online: named only; stored: logits in the file)."""
    if mode not in MODES:
        raise ConfigError(f"relabel mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "stored" and teacher.bn_mode != "eval":
        raise ConfigError("stored soft labels are computed with eval-mode BN (one label per image, batch-independent)")
    if mode == "stored" and synset.decoder != "none":
        raise ConfigError(f"the set's images decode ({synset.decoder}) into other training images; relabel it online")
    extra = {k: v for k, v in synset.extra.items() if k not in ("teacher", "soft_labels")}
    extra["teacher"] = {**teacher_record(teacher), "mode": mode, "bn": "train" if mode == "online" else "eval"}
    soft = None
    if mode == "stored":
        device = teacher.device
        with torch.no_grad():
            soft = torch.cat([teacher(x.to(device)) for x in synset.images.split(256)]).float().cpu()
        how = f", weights softmax(prior/{temperature:g})" if temperature is not None else ""
        extra["soft_labels"] = {"kind": "logits", "made": f"ensemble logits of {', '.join(teacher.names)} on the "
                                                         f"stored images, eval-mode BN{how}"}
    return dataclasses.replace(synset, soft_labels=soft, extra=extra)


def relabel_file(path: str | PathLike, teacher: str | PathLike, mode: str, out: str | PathLike, *,
                 temperature: float = RELABEL_TEMPERATURE, data_root: str | None = None,
                 device: str | torch.device = "cpu", command: str = "") -> tuple[SyntheticSet, Teacher]:
    """`dsdistill relabel`: the set at `path` labelled by `teacher` (a committee folder or member file, loaded in
    the BN mode `mode` needs), `command` recorded, saved to `out`. Returns the new set and the teacher."""
    if mode not in MODES:
        raise ConfigError(f"relabel mode must be one of {', '.join(MODES)}, got {mode!r}")
    synset = SyntheticSet.load(path)
    real = load_dataset(synset.dataset, data_root, device=device)
    loaded = load_teacher(Path(teacher), real, bn_mode=BN_MODES[mode], temperature=temperature, device=device)
    labelled = relabel(synset, loaded, mode, temperature)
    labelled.extra["command"] = command
    labelled.save(out)
    return labelled, loaded
