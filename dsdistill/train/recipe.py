"""How a model is optimised: the optimiser and its learning-rate schedule, as one frozen recipe.

Every trainer in dsdistill (evaluation, kd students, MTT experts, NCFM's pool, CV-DD's committee, the selection
baselines' feature net) is one `Recipe`. The schedule gives the lr of each epoch as a pure function of the epoch, so
a run resumed at epoch e sets the lr an uninterrupted run has there; it is applied at the start of the epoch.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import torch
from torch import Tensor

from .._registry import Registry
from ..errors import ConfigError


class Schedule(Protocol):
    def lr(self, lr0: float, epoch: int, epochs: int) -> float:
        """The learning rate of epoch `epoch` (0-based) of `epochs`."""

    def resets(self, epoch: int) -> bool:
        """Whether the optimiser's state (momentum, moments) is dropped at the start of `epoch`."""


@dataclass(frozen=True)
class MultiStep:
    """lr0, multiplied by gamma ** k at the start of each milestone epoch listed k times (torch's MultiStepLR,
    whose float products this repeats in the same order). `reset` drops the optimiser state at each milestone:
    DC's evaluation re-creates its SGD at the decay, which also clears the momentum."""

    milestones: tuple[int, ...] = ()
    gamma: float = 1.0
    reset: bool = False

    def lr(self, lr0: float, epoch: int, epochs: int) -> float:
        lr = lr0
        for milestone, count in sorted(Counter(self.milestones).items()):
            if milestone <= epoch:
                lr = lr * self.gamma ** count
        return lr

    def resets(self, epoch: int) -> bool:
        return self.reset and epoch in self.milestones


def smoothed_cosine(lr0: float, epoch: int, epochs: int, eta: float) -> float:
    """EDC/CV-DD: lr0 * (1 + cos(pi * epoch / (epochs * eta))) / 2; eta 2 ends at half of lr0, eta 1 near 0."""
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * epoch / (epochs * eta)))


@dataclass(frozen=True)
class SmoothedCosine:
    """EDC/CV-DD's "smoothed" cosine, set once per epoch (see smoothed_cosine)."""

    eta: float = 1.0

    def lr(self, lr0: float, epoch: int, epochs: int) -> float:
        return smoothed_cosine(lr0, epoch, epochs, self.eta)

    def resets(self, epoch: int) -> bool:
        return False


ParamGroups = list[dict]
OPTIMIZERS: Registry[Callable[["Recipe", ParamGroups], torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def _sgd(recipe: "Recipe", groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(recipe: "Recipe", groups: ParamGroups) -> torch.optim.Optimizer:
    # CV-DD squeeze: torch.optim.Adam with weight_decay, i.e. L2 added to the gradient (not AdamW's decoupled decay)
    return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(recipe: "Recipe", groups: ParamGroups) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)


@dataclass(frozen=True)
class Recipe:
    """The optimiser, its hyper-parameters, the batch and the schedule of one training run."""

    lr: float
    batch_size: int
    optimizer: str = "sgd"  # a name in OPTIMIZERS
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0
    # CV-DD's AdamW: weight decay on weight tensors with dim > 1 only (none on norm parameters and biases)
    decay_matrices_only: bool = False
    schedule: Schedule = field(default_factory=MultiStep)
    accumulation: int = 1  # micro-batches per optimiser step (each loaded batch split in this many chunks)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.accumulation < 1:
            raise ConfigError(f"training needs lr > 0, batch_size >= 1 and accumulation >= 1; got {self}")
        OPTIMIZERS.get(self.optimizer)

    def build(self, params: Iterable[Tensor]) -> torch.optim.Optimizer:
        """The optimiser over `params` (its lr is set per epoch by the schedule)."""
        params = list(params)
        if self.decay_matrices_only:
            groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": self.weight_decay},
                      {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
        else:
            groups = [{"params": params}]
        return OPTIMIZERS.get(self.optimizer)(self, groups)

    def start_epoch(self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
        """Set the lr of `epoch` and drop the optimiser state where the schedule says so."""
        if self.schedule.resets(epoch):
            optimizer.state.clear()
        lr = self.schedule.lr(self.lr, epoch, epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
