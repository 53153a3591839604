"""Frozen, named, versioned evaluation protocols.

A protocol fixes everything that decides a score: architecture, optimiser, schedule, augmentation,
label mode and the listed seeds. Its hash goes into every report; only results with the same hash
are comparable. No protocol ever selects an epoch or a hyper-parameter on the test set: the score
is the accuracy of the FINAL epoch on the full test set.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    architecture: str = "convnet"          # DC/DSA/DM: ConvNet-3, width 128, instance norm
    model_options: tuple[tuple[str, Any], ...] = ()
    optimizer: str = "sgd"                 # DC utils.evaluate_synset
    lr: float = 0.01                       # DC: lr_net 0.01
    momentum: float = 0.9                  # DC
    weight_decay: float = 5e-4             # DC
    batch_size: int = 256                  # DC/DM batch_train 256
    epochs: int = 1000                     # DSA/DM: 1000 (DC without augmentation: 300)
    lr_decay_at: float = 0.5               # DC: lr x0.1 once, at half of the epochs, momentum reset
    lr_decay_factor: float = 0.1
    augmentation: str = "dsa"              # "dsa" (per-sample DSA, DSA/DM evaluation) or "none"
    label_mode: str = "hard"               # "hard": cross-entropy on the stored labels
    lr_source: str = "protocol"            # "protocol" or "set" (a learned step size carried by the set)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    extras: tuple[tuple[str, Any], ...] = field(default=())  # later protocol families (kd temperature, ...)

    @property
    def num_models(self) -> int:
        return len(self.seeds)

    def identity(self) -> dict[str, Any]:
        """Every field that decides a score (the description is documentation, not identity)."""
        d = dataclasses.asdict(self)
        d.pop("description")
        return d

    @property
    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def decay_epoch(self) -> int:
        return int(self.epochs * self.lr_decay_at)


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _add(p: Protocol) -> Protocol:
    PROTOCOLS.register(p.name)(p)
    return p


DC = _add(Protocol(
    name="dc", version=1,
    description="The standard hard-label score (DSA/DM evaluation): ConvNet-3 IN, SGD 0.01 mom 0.9 wd 5e-4, "
                "batch 256, 1000 epochs, lr x0.1 at half, per-sample DSA, final epoch, 5 listed seeds.",
))
DC_NOAUG = _add(dataclasses.replace(
    DC, name="dc-noaug", epochs=300, augmentation="none",
    description="The DC paper's baseline setting (its random/herding numbers): as dc but 300 epochs, no augmentation.",
))
DC_QUICK = _add(dataclasses.replace(
    DC, name="dc-quick", epochs=300, seeds=(0, 1, 2),
    description="CPU smoke score: as dc but 300 epochs and 3 models. Not comparable with dc.",
))
MTT = _add(dataclasses.replace(
    DC, name="mtt", lr_source="set",
    description="dc with the learned step size carried by the set (trajectory matching) as the training lr.",
))
SMOKE = _add(dataclasses.replace(
    DC, name="smoke", epochs=2, seeds=(0,), model_options=(("width", 16),),
    description="Installation check only (2 epochs, 1 narrow model): the score means nothing.",
))


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)
