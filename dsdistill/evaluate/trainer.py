"""Train N fresh models on a small training set and score each on the real test set.

Three paths compute the same function:
- `loop`: one model after another, plain modules and torch.optim (the reference path);
- `fast`: the loop with every forward compiled by torch.compile (engine.Engine), the CPU's fast path;
- `vmap`: the N models stacked with torch.func and trained as one vectorised model, each with its
  own init, data order and augmentation draws (for GPUs, models without batch-coupled
  normalisation; BatchNorm models always take the loop path).
Every random draw comes from a generator derived from (model seed, purpose, epoch, batch), so both
paths see the same draws and a rerun gives the same accuracies.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .._progress import progress
from .._seed import seeded_init
from ..train.loop import Augment, Augmentation, Data, MicroBatch, batch_order, train_epochs, train_model
from ..train.recipe import MultiStep, Recipe
from .engine import Engine
from .finished import ArchLog, FinishedModel, ModelPoint

ORDER, AUG = "eval-order", "eval-aug"  # the purposes of the data-order and augmentation generators


@dataclass(frozen=True)
class TrainSpec:
    """How to train (taken from a Protocol, with the lr resolved)."""
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    decay_epoch: int
    decay_factor: float
    precision: str = "fp32"    # Protocol.precision (engine.PRECISIONS)


@dataclass(frozen=True)
class TrainResult:
    accuracies: list[float]    # final-epoch test accuracy per model
    train_seconds: float       # model creation and training
    test_seconds: float        # the test passes after the last epoch (one per model on the loop path)

    @classmethod
    def of(cls, models: Sequence[FinishedModel]) -> "TrainResult":
        return cls([m.accuracy for m in models], sum(m.train_seconds for m in models),
                   sum(m.test_seconds for m in models))


def eval_recipe(spec: TrainSpec) -> Recipe:
    """DC's SGD; at the decay it re-creates the optimiser, which also drops the momentum (reset)."""
    return Recipe(lr=spec.lr, batch_size=spec.batch_size, momentum=spec.momentum, weight_decay=spec.weight_decay,
                  schedule=MultiStep((spec.decay_epoch,), spec.decay_factor, reset=True))


def cross_entropy_with(engine: Engine) -> Callable[[nn.Module, MicroBatch], Tensor]:
    def loss(model: nn.Module, batch: MicroBatch) -> Tensor:
        with engine.autocast(batch.x.device):
            return F.cross_entropy(engine.forward(model)(batch.x), batch.y)
    return loss


def make_models(factory: Callable[[], nn.Module], seeds: Sequence[int], device: torch.device) -> list[nn.Module]:
    return [seeded_init(factory(), seed, "eval-init").to(device) for seed in seeds]


@torch.no_grad()
def _accuracy(predict: Callable[[Tensor], Tensor], test_x: Tensor, test_y: Tensor, batch: int = 500) -> Tensor:
    """Correct counts per model; predict(x) returns logits [N, B, K]."""
    correct = None
    for xb, yb in zip(test_x.split(batch), test_y.split(batch)):
        hits = (predict(xb).argmax(-1) == yb).sum(-1)
        correct = hits if correct is None else correct + hits
    return correct.double() / len(test_y)


def score_models(models: Sequence[nn.Module], start: float, test_x: Tensor, test_y: Tensor,
                 engine: Engine = Engine()) -> TrainResult:
    """Final-epoch test accuracy of trained plain models, with the training time (since `start`) and the test time."""
    trained = time.perf_counter()
    forwards = [engine.forward(m) for m in models]

    def predict(x: Tensor) -> Tensor:
        with engine.autocast(x.device):
            return torch.stack([f(x) for f in forwards])

    accs = _accuracy(predict, test_x, test_y)
    return TrainResult(accs.tolist(), trained - start, time.perf_counter() - trained)


# train_one(model, seed, first_epoch, optimizer_state) trains epochs first_epoch.. and yields its optimiser after each
TrainOne = Callable[[nn.Module, int, int, "dict | None"], Iterator[torch.optim.Optimizer]]


def trains_with(data: Data, recipe: Recipe, epochs: int, loss: Callable[[nn.Module, MicroBatch], Tensor],
                augment: Augmentation | None = None) -> TrainOne:
    """A TrainOne that trains each model with dsdistill.train's loop, resuming from the epoch and state given."""

    def train_one(model: nn.Module, seed: int, first: int, state: dict | None) -> Iterator[torch.optim.Optimizer]:
        for end in train_model(model, data, recipe, seed, epochs, loss, augment=augment, first_epoch=first,
                               optimizer_state=state):
            yield end.optimizer

    return train_one


def train_each(factory: Callable[[], nn.Module], seeds: Sequence[int], device: torch.device, train_one: TrainOne,
               epochs: int, test_x: Tensor, test_y: Tensor, desc: str = "train",
               log: ArchLog | None = None, engine: Engine = Engine()) -> TrainResult:
    """One fresh model per seed, trained by `train_one` and scored as soon as it is trained. With a `log`
    (dsdistill.evaluate.finished) the models it holds are not retrained, the model in training is saved every
    minute or so, and an interrupted model continues from its saved epoch."""
    bar = progress(total=len(seeds) * epochs, desc=desc, unit="epoch")
    finished = []
    for seed in seeds:
        done = log.get(seed) if log is not None else None
        if done is None:
            done = _train_and_score(factory, seed, device, train_one, test_x, test_y, bar, log, engine)
        else:
            bar.update(epochs)
        finished.append(done)
    bar.close()
    return TrainResult.of(finished)


def _train_and_score(factory: Callable[[], nn.Module], seed: int, device: torch.device, train_one: TrainOne,
                     test_x: Tensor, test_y: Tensor, bar: Any, log: ArchLog | None, engine: Engine) -> FinishedModel:
    start = time.perf_counter()
    model = make_models(factory, [seed], device)[0]
    point = log.point(seed, device) if log is not None else None
    epoch, spent = (point.epoch, point.train_seconds) if point else (0, 0.0)
    if point:
        model.load_state_dict(point.model)
        bar.update(epoch)
    model.train()
    for opt in train_one(model, seed, epoch, point.optimizer if point else None):
        epoch += 1
        bar.update(1)
        if log is not None:
            log.save_point(seed, lambda: ModelPoint(epoch, model.state_dict(), opt.state_dict(),
                                                    spent + time.perf_counter() - start))
    model.eval()
    scored = score_models([model], start, test_x, test_y, engine)
    done = FinishedModel(scored.accuracies[0], spent + scored.train_seconds, scored.test_seconds)
    if log is not None:
        log.add(seed, done)
    return done


def train_loop(factory: Callable[[], nn.Module], seeds: Sequence[int], images: Tensor, labels: Tensor,
               spec: TrainSpec, augment: Augment | None, test_x: Tensor, test_y: Tensor,
               desc: str = "train", log: ArchLog | None = None, compiled: bool = False) -> TrainResult:
    """Reference path: plain modules, one after another (compiled: the fast path, engine.Engine)."""
    engine = Engine(spec.precision, compiled)
    aug = None if augment is None else Augmentation(augment, AUG)
    train_one = trains_with(Data(images, labels, ORDER), eval_recipe(spec), spec.epochs, cross_entropy_with(engine),
                            aug)
    return train_each(factory, seeds, images.device, train_one, spec.epochs, test_x, test_y, desc, log, engine)


def train_fast(factory: Callable[[], nn.Module], seeds: Sequence[int], images: Tensor, labels: Tensor,
               spec: TrainSpec, augment: Augment | None, test_x: Tensor, test_y: Tensor,
               desc: str = "train", log: ArchLog | None = None) -> TrainResult:
    """The loop with each forward compiled (engine.Engine): the same models and draws, fused kernels."""
    return train_loop(factory, seeds, images, labels, spec, augment, test_x, test_y, desc, log, compiled=True)


def train_vmap(factory: Callable[[], nn.Module], seeds: Sequence[int], images: Tensor, labels: Tensor,
               spec: TrainSpec, augment: Augment | None, test_x: Tensor, test_y: Tensor,
               desc: str = "train", log: ArchLog | None = None) -> TrainResult:
    """Fast path: the models `log` does not hold yet trained together (_train_stacked), each logged with an
    equal share of the seconds (they ran as one)."""
    pending = [seed for seed in seeds if log is None or log.get(seed) is None]
    fresh: dict[int, FinishedModel] = {}
    if pending:
        out = _train_stacked(factory, pending, images, labels, spec, augment, test_x, test_y, desc)
        for seed, acc in zip(pending, out.accuracies):
            fresh[seed] = FinishedModel(acc, out.train_seconds / len(pending), out.test_seconds / len(pending))
            if log is not None:
                log.add(seed, fresh[seed])
    finished = [fresh.get(seed) or log.get(seed) for seed in seeds]
    return TrainResult.of(finished)


def _train_stacked(factory: Callable[[], nn.Module], seeds: Sequence[int], images: Tensor, labels: Tensor,
                   spec: TrainSpec, augment: Augment | None, test_x: Tensor, test_y: Tensor,
                   desc: str = "train") -> TrainResult:
    """The N models as one vectorised model (torch.func.stack_module_state + vmap).

    SGD with momentum and weight decay is elementwise, so one optimiser over the stacked parameters
    performs exactly the N separate updates; the loss is the sum of the per-model mean losses, so
    each model's gradient is its own.
    """
    start = time.perf_counter()
    device = images.device
    models = make_models(factory, seeds, device)
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    del models

    def forward(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    batched = vmap(forward)
    shared_input = vmap(forward, in_dims=(0, 0, None))
    n_models, recipe = len(seeds), eval_recipe(spec)
    aug = None if augment is None else Augmentation(augment, AUG)

    def batches(epoch: int) -> Iterator[list[tuple[Tensor, Tensor]]]:
        """Batch b of every model at once: each its own order and augmentation draws, as on the loop path."""
        orders = [batch_order(len(images), spec.batch_size, seed, ORDER, epoch) for seed in seeds]
        for b in range(len(orders[0])):
            xs = [images[o[b]] if aug is None else aug(images[o[b]], seed, epoch, b) for o, seed in zip(orders, seeds)]
            yield [(torch.stack(xs), torch.stack([labels[o[b]] for o in orders]))]

    engine = Engine(spec.precision)

    def loss(batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        with engine.autocast(device):
            per_sample = F.cross_entropy(batched(params, buffers, x).flatten(0, 1), y.flatten(), reduction="none")
        return per_sample.view(n_models, -1).mean(1).sum()

    bar = progress(total=spec.epochs, desc=desc, unit="epoch")
    for _ in train_epochs(params.values(), recipe, spec.epochs, batches, loss):
        bar.update(1)
    bar.close()
    trained = time.perf_counter()
    def predict(x: Tensor) -> Tensor:
        with engine.autocast(device):
            return shared_input(params, buffers, x)

    accs = _accuracy(predict, test_x, test_y)
    return TrainResult(accs.tolist(), trained - start, time.perf_counter() - trained)
