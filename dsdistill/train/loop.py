"""The one supervised training loop: epochs of shuffled batches, a loss per (micro-)batch, one optimiser step.

`train_epochs` is the loop itself, over any parameters and any batches: it builds the optimiser from a Recipe,
restores its state when resuming, applies the schedule at the start of each epoch, and per loaded batch zeroes the
gradients, back-propagates the loss of each micro-batch (divided by their number) and steps. It yields the
optimiser after every epoch, so a caller can record the parameters (MTT experts), save a resume point (the
evaluator) or stop. `train_model` is the loop for one model on one tensor dataset, which is what every trainer
but the evaluator's stacked (vmap) path needs: its batches come in the order `batch_order` draws and are augmented
with draws from `Augmentation`, both from generators derived from (seed, purpose, epoch[, batch]), so the same seed
gives the same weights and a resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from torch import Tensor, nn

from .._progress import progress
from .._seed import make_generator
from .recipe import Recipe

B = TypeVar("B")
Augment = Callable[[Tensor, torch.Generator], Tensor]


def batch_order(n: int, batch_size: int, seed: int, purpose: str, epoch: int, limit: int = 0) -> list[Tensor]:
    """The batches of one epoch: a permutation of range(n) from make_generator(seed, purpose, epoch), cut to its
    first `limit` entries (0 = all: a fresh random subset each epoch otherwise), in chunks of `batch_size`."""
    order = torch.randperm(n, generator=make_generator(seed, purpose, epoch))
    return list((order[:limit] if limit else order).split(batch_size))


@dataclass(frozen=True)
class Augmentation:
    """A random augmentation fn(x, generator) of every loaded batch, drawn from make_generator(seed, purpose,
    epoch, batch[, micro-batch]) and applied outside the autograd graph (no gradient to the data is needed)."""
    fn: Augment
    purpose: str

    def __call__(self, x: Tensor, seed: int, epoch: int, batch: int, *keys: object) -> Tensor:
        with torch.no_grad():
            return self.fn(x, make_generator(seed, self.purpose, epoch, batch, *keys))


@dataclass(frozen=True)
class Data:
    """A tensor dataset and how its epochs are drawn."""
    images: Tensor
    labels: Tensor | None
    order: str  # the purpose of the data-order generator: make_generator(seed, order, epoch)
    per_epoch: int = 0  # train each epoch on a fresh random subset of this many images (0 = all)

    @property
    def size(self) -> int:
        """Images per epoch."""
        return min(self.per_epoch, len(self.images)) if self.per_epoch else len(self.images)


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch as the loss sees it: where it is in the run, and its data on the model's device."""
    seed: int
    epoch: int
    batch: int  # loaded batch within the epoch
    micro: int  # micro-batch within the loaded batch (0 without accumulation)
    index: Tensor  # rows of Data.images (on the images' device)
    x: Tensor  # the images, augmented when the loop has an Augmentation
    raw: Tensor  # the images before augmentation
    y: Tensor | None

    def generator(self, purpose: str, *keys: object) -> torch.Generator:
        """A generator for a draw of this batch's own: make_generator(seed, purpose, epoch, batch, *keys)."""
        return make_generator(self.seed, purpose, self.epoch, self.batch, *keys)


@dataclass(frozen=True)
class EpochEnd:
    """What the loop hands back after each epoch."""
    epoch: int
    optimizer: torch.optim.Optimizer
    loss: float | None  # mean loss over the epoch's images (tracked only with a progress bar)


def train_epochs(params: Iterable[Tensor], recipe: Recipe, epochs: int, batches: Callable[[int], Iterable[Sequence[B]]],
                 loss: Callable[[B], Tensor], *, first_epoch: int = 0, optimizer_state: dict | None = None,
                 on_loss: Callable[[B, Tensor], None] | None = None) -> Iterator[torch.optim.Optimizer]:
    """Train `params` for epochs first_epoch..epochs-1; `batches(epoch)` gives each optimiser step's micro-batches
    and `loss(micro_batch)` their loss. Yields the optimiser after each epoch (to save, record or stop).

    Resuming: pass the epoch to start from and the optimiser's saved state_dict; the schedule sets the lr of that
    epoch (and drops the state there if it resets at that epoch, as an uninterrupted run does)."""
    opt = recipe.build(params)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    for epoch in range(first_epoch, epochs):
        recipe.start_epoch(opt, epoch, epochs)
        for micro in batches(epoch):
            opt.zero_grad(set_to_none=True)
            for mb in micro:
                value = loss(mb)
                if on_loss is not None:
                    on_loss(mb, value)
                (value / len(micro) if len(micro) > 1 else value).backward()
            opt.step()
        yield opt


class _LossBar:
    """A per-batch progress bar showing the epoch and its running mean loss (one float() sync per batch)."""

    def __init__(self, desc: str, total: int) -> None:
        self.bar = progress(total=total, desc=desc, unit="batch")
        self.total, self.seen, self.last_batch = 0.0, 0, -1

    def __call__(self, mb: MicroBatch, value: Tensor) -> None:
        self.total += float(value.detach()) * len(mb.index)
        self.seen += len(mb.index)
        if mb.batch != self.last_batch:
            self.last_batch = mb.batch
            self.bar.update(1)
        self.bar.set_postfix(epoch=mb.epoch + 1, loss=f"{self.total / self.seen:.3f}")

    def close(self) -> None:
        self.bar.close()

    def epoch_mean(self) -> float:
        mean = self.total / max(self.seen, 1)
        self.total, self.seen, self.last_batch = 0.0, 0, -1
        return mean


def train_model(model: nn.Module, data: Data, recipe: Recipe, seed: int, epochs: int,
                loss: Callable[[nn.Module, MicroBatch], Tensor], *, augment: Augmentation | None = None,
                first_epoch: int = 0, optimizer_state: dict | None = None,
                desc: str | None = None) -> Iterator[EpochEnd]:
    """Train `model` (put in train mode) on `data` with train_epochs; yields an EpochEnd after each epoch.

    Each loaded batch is split into recipe.accumulation micro-batches, moved to the model's device and augmented
    (`augment` draws from (seed, its purpose, epoch, batch), and the micro-batch with accumulation);
    `loss(model, micro_batch)` gives its loss. With `desc`, a per-batch progress bar shows the running loss and
    every EpochEnd carries the epoch's mean loss."""
    device = next(model.parameters()).device

    def batches(epoch: int) -> Iterator[list[MicroBatch]]:
        for b, idx in enumerate(batch_order(len(data.images), recipe.batch_size, seed, data.order, epoch,
                                            data.per_epoch)):
            idx = idx.to(data.images.device)
            chunks = [c for c in idx.chunk(recipe.accumulation) if len(c)]
            yield [micro_batch(c, epoch, b, k) for k, c in enumerate(chunks)]

    def micro_batch(idx: Tensor, epoch: int, b: int, k: int) -> MicroBatch:
        raw = data.images[idx].to(device)
        # with accumulation each micro-batch draws its own augmentation (key k); without, the batch key alone
        x = raw if augment is None else augment(raw, seed, epoch, b, *((k,) if recipe.accumulation > 1 else ()))
        y = None if data.labels is None else data.labels[idx].to(device)
        return MicroBatch(seed, epoch, b, k, idx, x, raw, y)

    bar = None
    if desc is not None:
        bar = _LossBar(desc, (epochs - first_epoch) * math.ceil(data.size / recipe.batch_size))
    model.train()
    try:
        for epoch, opt in enumerate(train_epochs(model.parameters(), recipe, epochs, batches,
                                                 lambda mb: loss(model, mb), first_epoch=first_epoch,
                                                 optimizer_state=optimizer_state, on_loss=bar),
                                    start=first_epoch):
            yield EpochEnd(epoch, opt, None if bar is None else bar.epoch_mean())
    finally:
        if bar is not None:
            bar.close()
