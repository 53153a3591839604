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

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._seed import make_generator
from ..augment.crops import random_resized_crop
from ..errors import ConfigError
from ..train.real import cutmix
from ..teachers.ensemble import Teacher
from .finished import ArchLog
from .trainer import TrainResult, train_each


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


def smoothed_cosine(lr0: float, epoch: int, epochs: int, eta: float) -> float:
    """EDC/CV-DD: lr0 * (1 + cos(pi * epoch / (epochs * eta))) / 2; eta 2 ends at half of lr0, eta 1 near 0."""
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * epoch / (epochs * eta)))


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


def _adamw(model: nn.Module, spec: KDSpec) -> torch.optim.Optimizer:
    """CV-DD: weight decay on weight tensors with dim > 1 only (no decay on BN/norm parameters or biases)."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=spec.lr)


def kd_step_loss(student: nn.Module, x: Tensor, target: Tensor, temperature: float) -> Tensor:
    """KL(target || softmax(student / T)), batchmean, no T^2 factor (CV-DD train_fkd.py)."""
    log_p = F.log_softmax(student(x) / temperature, dim=-1)
    return F.kl_div(log_p, target, reduction="batchmean")


def train_kd(factory: Callable[[], nn.Module], seeds: Sequence[int], images: Tensor, labels: LabelSource,
             spec: KDSpec, test_x: Tensor, test_y: Tensor, desc: str = "kd", log: ArchLog | None = None) -> TrainResult:
    """Train one student per seed on `images` against `labels`; final-epoch test accuracy of each."""
    n = len(images)

    def train_one(model: nn.Module, seed: int, first: int, state: dict | None) -> Iterator[torch.optim.Optimizer]:
        opt = _adamw(model, spec)
        if state is not None:
            opt.load_state_dict(state)
        for epoch in range(first, spec.epochs):
            for group in opt.param_groups:
                group["lr"] = smoothed_cosine(spec.lr, epoch, spec.epochs, spec.eta)
            order = torch.randperm(n, generator=make_generator(seed, "kd-order", epoch)).to(images.device)
            for b, idx in enumerate(order.split(spec.batch_size)):
                opt.zero_grad(set_to_none=True)
                micro = [m for m in idx.chunk(spec.accumulation) if len(m)]
                for k, midx in enumerate(micro):
                    gen = make_generator(seed, "kd-aug", epoch, b, k)
                    x = random_resized_crop(images[midx], gen, scale=spec.rrc_scale, flip=spec.flip)
                    perm, kept = torch.arange(len(midx), device=x.device), 1.0
                    if spec.cutmix:
                        x, perm, kept = cutmix(x, gen)
                    target = labels.targets(x, midx, perm, kept, spec.temperature)
                    loss = kd_step_loss(model, x, target, spec.temperature) / len(micro)
                    loss.backward()
                opt.step()
            yield opt

    return train_each(factory, seeds, images.device, train_one, spec.epochs, test_x, test_y, desc, log)
