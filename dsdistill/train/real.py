"""Train one model on the real training set with NCFM's recipe: NCFM's pool and CV-DD's committee need it.

The default recipe follows NCFM's official pretrain/pretrain_script.py (utils/train_val.py train_epoch): SGD,
MultiStepLR, per-sample DSA and CutMix. CV-DD's squeeze (its official squeeze/squeeze.py) is the same loop with
other choices, so they are options: optimizer "adam", schedule "cosine", crop_flip 4 (RandomCrop with padding 4 +
horizontal flip), no DSA, no CutMix (teachers.committee's "paper" preset). Unlike the official scripts, every random
draw (data order, augmentation, CutMix) comes from a generator derived from (seed, purpose, epoch, batch), so the
same seed gives the same weights.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._config import without_added_later
from ..augment import DSA, DSAConfig, dsa_strategy_for
from ..augment.crops import random_crop_flip
from ..augment.mix import apply_cutmix, sample_cutmix
from ..data import Split
from ..errors import ConfigError
from .loop import Augmentation, Data, MicroBatch, train_model
from .recipe import OPTIMIZERS, MultiStep, Recipe, Schedule, SmoothedCosine

EpochCallback = Callable[[int, nn.Module], None]

SCHEDULES: dict[str, Callable[["RealTrainConfig", int], Schedule]] = {
    # NCFM official: MultiStepLR at the milestone epochs
    "multistep": lambda config, epochs: MultiStep(tuple(milestone_epochs(config, epochs)), config.gamma),
    # CV-DD squeeze: CosineAnnealingLR(T_max=epochs) stepped per epoch, i.e. lr0 * (1 + cos(pi * e / E)) / 2
    "cosine": lambda config, epochs: SmoothedCosine(1.0),
}
# options added after folders were built, with the value that trains as before: at that value they stay out of a
# folder's identity, so pools and committees built before them still resume (as synthesizers' _ADDED_LATER)
_ADDED_LATER = {"optimizer": "sgd", "schedule": "multistep", "crop_flip": 0}


@dataclass(frozen=True)
class RealTrainConfig:
    """How to train on real data; every default is NCFM official pretrain/pretrain_script.py unless said."""

    lr: float = 0.01  # NCFM official pretrain/pretrain_script.py (config lr)
    momentum: float = 0.9  # NCFM official pretrain/pretrain_script.py
    weight_decay: float = 5e-4  # NCFM official pretrain/pretrain_script.py
    batch_size: int = 128  # NCFM official pretrain/pretrain_script.py (config batch_size)
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)  # NCFM official pretrain/pretrain_script.py: [2E//3, 5E//6]
    gamma: float = 0.2  # NCFM official pretrain/pretrain_script.py: MultiStepLR gamma
    dsa: bool = True  # NCFM official pretrain/pretrain_script.py: per-sample DiffAug (batch=False) on every batch
    # NCFM official pretrain/pretrain_script.py: aug_type color_crop_cutout minus cutout when CutMix is on
    # (utils diffaug/remove_aug). "auto" = DSA's own strategy for the dataset (dsa_strategy_for), e.g. for MTT.
    dsa_strategy: str = "color_crop"
    # NCFM official pretrain/pretrain_script.py: mix_p 0.5, mixup "cut", beta 1 (lambda ~ Beta(1, 1) = U(0, 1))
    cutmix_prob: float = 0.5
    optimizer: str = "sgd"  # NCFM official: SGD (CV-DD squeeze: "adam", torch.optim.Adam with L2 weight decay)
    schedule: str = "multistep"  # NCFM official: MultiStepLR (CV-DD squeeze: "cosine"); see SCHEDULES
    # ours: off, as NCFM. CV-DD squeeze: 4, torchvision RandomCrop(size, padding=4) + RandomHorizontalFlip before
    # normalising; here per image, padded with 0 in normalised space (the mean colour), no flip for digits
    crop_flip: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.lr <= 0 or not 0.0 <= self.cutmix_prob <= 1.0 or self.crop_flip < 0:
            raise ConfigError(f"need batch_size >= 1, lr > 0, cutmix_prob in [0, 1] and crop_flip >= 0; got {self}")
        if any(not 0.0 < m <= 1.0 for m in self.milestones):
            raise ConfigError(f"milestones are fractions of the epochs in (0, 1]; got {self.milestones}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        OPTIMIZERS.get(self.optimizer)

    def identity(self) -> dict[str, Any]:
        """The fields a folder records as its training (JSON-ready), without later options at their old value."""
        return without_added_later(json.loads(json.dumps(dataclasses.asdict(self))), _ADDED_LATER)


def milestone_epochs(config: RealTrainConfig, epochs: int) -> list[int]:
    """NCFM's integer milestones floor(fraction * epochs), e.g. 60 epochs -> [40, 50], 2 epochs -> [1, 1].

    Ours: a milestone at epoch 0 is dropped. The official formula gives [0, 0] for one epoch, and MultiStepLR
    then decays before the first step (lr x0.04 throughout), which is clearly not meant.
    """
    return [e for e in (math.floor(m * epochs + 1e-9) for m in config.milestones) if e > 0]


def make_augment(config: RealTrainConfig, digits: bool) -> Callable[[Tensor, torch.Generator], Tensor] | None:
    """The crop-and-flip, then per-sample DSA (each image its own values), of those that are on; None when neither."""
    steps: list[Callable[[Tensor, torch.Generator], Tensor]] = []
    if config.crop_flip:
        steps.append(lambda x, g: random_crop_flip(x, g, config.crop_flip, flip=not digits))
    if config.dsa:
        strategy = dsa_strategy_for(digits) if config.dsa_strategy == "auto" else config.dsa_strategy
        steps.append(DSA(DSAConfig(strategy=strategy)).per_sample)
    if len(steps) < 2:
        return steps[0] if steps else None

    def both(x: Tensor, generator: torch.Generator) -> Tensor:
        for step in steps:
            x = step(x, generator)
        return x

    return both


def real_recipe(config: RealTrainConfig, epochs: int) -> Recipe:
    """The optimiser and schedule the config names (NCFM: SGD with MultiStepLR, lr x gamma at each milestone epoch,
    momentum kept)."""
    return Recipe(lr=config.lr, batch_size=config.batch_size, optimizer=config.optimizer, momentum=config.momentum,
                  weight_decay=config.weight_decay, schedule=SCHEDULES[config.schedule](config, epochs))


def _mixed_loss(cutmix_prob: float) -> Callable[[nn.Module, MicroBatch], Tensor]:
    """Cross-entropy, or with probability cutmix_prob CutMix and its targets mixed by the pasted area (NCFM
    mix_p), every draw from make_generator(seed, "pretrain-cutmix", epoch, batch)."""

    def loss(model: nn.Module, batch: MicroBatch) -> Tensor:
        x, y, mix = batch.x, batch.y, batch.generator("pretrain-cutmix")
        if float(torch.rand(1, generator=mix)) >= cutmix_prob:
            return F.cross_entropy(model(x), y)
        params = sample_cutmix(x.shape, mix)
        out = model(apply_cutmix(x, params))
        kept = params.kept
        return F.cross_entropy(out, y) * kept + F.cross_entropy(out, y[params.perm.to(y.device)]) * (1.0 - kept)

    return loss


def train_on_real(model: nn.Module, split: Split, config: RealTrainConfig, seed: int, epochs: int, *,
                  digits: bool = False, on_epoch: EpochCallback | None = None, desc: str = "train") -> list[float]:
    """Train `model` in place on `split` for `epochs` epochs; returns the mean training loss of each epoch.

    `digits` picks DSA's strategy under dsa_strategy="auto" (no flips for digits). `on_epoch(epoch, model)` runs
    after each epoch. The model stays on its device; the split's tensors are moved to it batch by batch.
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    augment = make_augment(config, digits)
    losses: list[float] = []
    for end in train_model(model, Data(split.images, split.labels, "pretrain-order"), real_recipe(config, epochs),
                           seed, epochs, _mixed_loss(config.cutmix_prob),
                           augment=None if augment is None else Augmentation(augment, "pretrain-aug"), desc=desc):
        losses.append(end.loss)
        if on_epoch is not None:
            on_epoch(end.epoch, model)
    return losses


@torch.no_grad()
def test_accuracy(model: nn.Module, split: Split, batch: int = 500) -> float:
    """Top-1 accuracy on `split` in eval mode; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for x, y in zip(split.images.split(batch), split.labels.split(batch)):
        correct += int((model(x.to(device)).argmax(-1) == y.to(device)).sum())
    model.train(was_training)
    return correct / max(len(split), 1)


test_accuracy.__test__ = False  # type: ignore[attr-defined]  # pytest: a helper, not a test, when imported by tests
