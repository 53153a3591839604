"""The soft-label trainer (protocol family `kd`): CV-DD's post-eval (validate/train_fkd.py), reimplemented.

A fresh student is trained only on the synthetic images. Each loaded batch (16) is split into micro-batches (2 x 8);
every image gets its own random-resized-crop and flip, every micro-batch one CutMix; the loss is
KL(teacher || student) at temperature T (reduction batchmean, no T^2 factor, divided by the micro-batch count, as
the official code); AdamW with weight decay on weight tensors only; the "smoothed" cosine lr is set per epoch.
The score is the FINAL-epoch test accuracy (the official code keeps the best of its test evaluations: optimistic,
not done here).

Soft targets come from a LabelSource:
- StoredLabels: one logit vector per image, stored in the set file. These are STATIC: the same target whatever
  crop the student sees (CutMix mixes the two images' target distributions by the pasted area);
- OnlineLabels: the teacher labels exactly the crop the student sees (CV-DD/FKD's per-crop labels, computed on the
  fly instead of replayed from files; equivalent up to the random draws).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augment.crops import random_resized_crop
from ..augment.mix import apply_cutmix, sample_cutmix
from ..errors import ConfigError
from ..teachers.ensemble import Teacher
from ..train.loop import Data, MicroBatch
from ..train.recipe import Recipe, SmoothedCosine
from .finished import ArchLog
from .trainer import TrainResult, train_each, trains_with


@dataclass(frozen=True)
class KDSpec:
    """How to train a student under a soft-label protocol (taken from a Protocol's fields and extras)."""
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    accumulation: int
    temperature: float
    eta: float
    rrc_scale: tuple[float, float]
    flip: bool
    cutmix: bool

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.eta <= 0 or self.accumulation < 1:
            raise ConfigError(f"kd needs temperature > 0, eta > 0 and accumulation >= 1; got {self}")


class StoredLabels:
    """Static soft labels from the set file (logits [N, K])."""

    kind = "stored"

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    def targets(self, x: Tensor, index: Tensor, perm: Tensor, kept: float, temperature: float) -> Tensor:
        p = torch.softmax(self.logits[index] / temperature, dim=-1)
        return kept * p + (1.0 - kept) * p[perm]


class OnlineLabels:
    """The teacher's soft labels of the exact (cropped, mixed) micro-batch the student sees."""

    kind = "online"

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher

    def targets(self, x: Tensor, index: Tensor, perm: Tensor, kept: float, temperature: float) -> Tensor:
        return torch.softmax(self.teacher(x) / temperature, dim=-1)


LabelSource = StoredLabels | OnlineLabels


def kd_recipe(spec: KDSpec) -> Recipe:
    """CV-DD: AdamW with weight decay on weight tensors (dim > 1) only, the smoothed cosine set per epoch, the
    loaded batch split into `accumulation` micro-batches per step."""
    return Recipe(lr=spec.lr, batch_size=spec.batch_size, optimizer="adamw", weight_decay=spec.weight_decay,
                  decay_matrices_only=True, schedule=SmoothedCosine(spec.eta), accumulation=spec.accumulation)


def kd_step_loss(student: nn.Module, x: Tensor, target: Tensor, temperature: float) -> Tensor:
    """KL(target || softmax(student / T)), batchmean, no T^2 factor (CV-DD train_fkd.py)."""
    log_p = F.log_softmax(student(x) / temperature, dim=-1)
    return F.kl_div(log_p, target, reduction="batchmean")


def train_kd(factory: Callable[[], nn.Module], seeds: Sequence[int], images: Tensor, labels: LabelSource,
             spec: KDSpec, test_x: Tensor, test_y: Tensor, desc: str = "kd", log: ArchLog | None = None) -> TrainResult:
    """Train one student per seed on `images` against `labels`; final-epoch test accuracy of each."""
    def loss(model: nn.Module, batch: MicroBatch) -> Tensor:
        """Per micro-batch: each image its own crop and flip, then one CutMix, every draw from one generator
        make_generator(seed, "kd-aug", epoch, batch, micro); the teacher (or the stored labels) gives the target."""
        gen = batch.generator("kd-aug", batch.micro)
        x = random_resized_crop(batch.x, gen, scale=spec.rrc_scale, flip=spec.flip)
        perm, kept = torch.arange(len(x), device=x.device), 1.0
        if spec.cutmix:
            params = sample_cutmix(x.shape, gen)
            x, perm, kept = apply_cutmix(x, params), params.perm.to(x.device), params.kept
        return kd_step_loss(model, x, labels.targets(x, batch.index, perm, kept, spec.temperature), spec.temperature)

    train_one = trains_with(Data(images, None, "kd-order"), kd_recipe(spec), spec.epochs, loss)
    return train_each(factory, seeds, images.device, train_one, spec.epochs, test_x, test_y, desc, log)
