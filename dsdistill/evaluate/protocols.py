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

    def extra(self, key: str, default: Any = None) -> Any:
        """A protocol-family option from `extras` (e.g. the kd temperature)."""
        return dict(self.extras).get(key, default)


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

# Soft-label knowledge distillation, CV-DD's post-eval (validate/train_fkd.py; reference/cvdd_fyi.md A4): the student
# sees only the synthetic images and learns KL(teacher || student) at temperature T. Scores under kd are NOT
# comparable with dc: every soft-label method should be compared with random selection scored under kd too.
KD = _add(Protocol(
    name="kd", version=1,
    description="Soft-label score (CV-DD post-eval): ConvNet-3 IN student, KL to the teacher's soft labels at T=20, "
                "AdamW 1e-3 wd 0.01 (weights only), batch 16 in 2 micro-batches, smoothed cosine (eta 1), 300 epochs, "
                "per-sample random-resized-crop + flip (none for digits) + CutMix, final epoch, 5 listed seeds.",
    architecture="convnet",       # ours: the DC evaluation net, so kd and dc differ in labels, not in the student
                                  # (CV-DD: CIFAR-style ResNet-18/50/101; pass --arch resnet18-bn for that student)
    optimizer="adamw",            # CV-DD train_fkd.py: AdamW
    lr=1e-3,                      # CV-DD scripts: 1e-3 for ResNet-18 on CIFAR-10 (untuned for ConvNet-3)
    momentum=0.0,                 # unused by AdamW (default betas 0.9, 0.999 as the official code)
    weight_decay=0.01,            # CV-DD train_fkd.py: 0.01 on weight tensors with dim > 1 only
    batch_size=16,                # CV-DD scripts: batch 16 ...
    epochs=300,                   # CV-DD scripts: 300 epochs
    lr_decay_at=1.0, lr_decay_factor=1.0,  # unused: the schedule is the smoothed cosine below
    augmentation="rrc_flip_cutmix",
    label_mode="soft",
    extras=(
        ("accumulation", 2),      # ... loaded, split into 2 micro-batches (8 each); one step per batch
        ("temperature", 20.0),    # CV-DD scripts: T = 20; KL with reduction batchmean and no T^2 factor
        ("eta", 1.0),             # EDC smoothed cosine lr0 * (1 + cos(pi * e / (E * eta))) / 2, stepped per epoch;
                                  # CV-DD: eta 1 for every CIFAR-10 student (2 elsewhere); eta 1 is plain cosine
        ("rrc_scale", (0.08, 1.0)),  # CV-DD: torchvision RandomResizedCrop default
        ("cutmix", True),         # CV-DD relabel/post-eval: CutMix on every batch, lambda ~ Beta(1, 1)
        ("teacher_bn", "train"),  # CV-DD relabel default (--eval-mode F): BSSL, BN on the micro-batch statistics
        ("prior_temperature", 10.0),  # CV-DD relabel: ensemble weights softmax(prior / 10)
    ),
))
KD_QUICK = _add(dataclasses.replace(
    KD, name="kd-quick", epochs=100, seeds=(0, 1, 2),
    description="CPU smoke score under soft labels: as kd but 100 epochs and 3 models. Not comparable with kd.",
))


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)
