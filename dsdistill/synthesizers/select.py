"""Selection baselines: random, herding, k-center (per class) and the whole training set.

They are the references every distilled result stands beside, scored under the same protocol.
Herding and k-center work on ConvNet-3 embeddings (`features`): by default a ConvNet trained for
`feature_epochs` epoch(s) on the real training set (ours: the DC paper selects coresets with
ConvNet features but does not state the training; one epoch is CPU-sized and well above chance),
or a randomly initialised one (`features=random`, the DM embedding).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._progress import progress
from .._seed import make_generator, seeded_init
from ..data import RealData, Split
from ..errors import ConfigError
from ..models import create_model
from ..synset import SyntheticSet
from ..train.loop import Data, train_model
from ..train.recipe import Recipe
from .method import Method, NoConfig, check_ipc, check_seed, new_set
from .registry import register


def refuse_run_options(method: Method, budget: Any, checkpoint: Any, resume: bool, world: Any,
                       snapshot: Any = None) -> None:
    """A selection is one pass with no iterations: a budget, a checkpoint or a process group means a mistake."""
    given = [name for name, value in (("budget", budget), ("checkpoint", checkpoint), ("resume", resume),
                                      ("world", world), ("snapshot", snapshot)) if value]
    if given:
        raise ConfigError(f"{method.name} is a {method.kind} method: it takes no {', '.join(given)} (no iterations "
                          "to budget, checkpoint or split)")


class Selector(Method):
    """Picks `ipc` real images per class; the subclass says which (indices within the class)."""

    kind = "selection"
    supports_view = False   # it matches no synthetic batch, so there is no view to mirror

    def prepare(self, real: RealData, seed: int) -> Any:
        """Per-fit set-up shared by all classes (e.g. a feature network), handed to select_class."""
        return None

    @abc.abstractmethod
    def select_class(self, real: RealData, c: int, ipc: int, seed: int, prepared: Any = None) -> Tensor:
        """Positions within real.train.class_index[c] of the chosen images."""

    def fit(self, real: RealData, ipc: int, seed: int = 0, *, budget: Any = None, checkpoint: Any = None,
            resume: bool = False, world: Any = None, snapshot: Any = None) -> SyntheticSet:
        refuse_run_options(self, budget, checkpoint, resume, world, snapshot)
        check_seed(seed)
        check_ipc(real, ipc)
        prepared = self.prepare(real, seed)
        chosen = []
        for c in progress(range(real.num_classes), desc=f"{self.name} select", unit="class"):
            positions = self.select_class(real, c, ipc, seed, prepared)
            chosen.append(real.train.class_index[c][positions.to(real.train.class_index[c].device)])
        indices = torch.cat(chosen)
        synset = new_set(real, real.train.images[indices], self.name, self.config, seed)
        synset.extra["train_indices"] = indices.cpu().tolist()
        return synset


@register("random")
class RandomSelection(Selector):
    """IPC images per class drawn uniformly without replacement."""

    def select_class(self, real: RealData, c: int, ipc: int, seed: int, prepared: Any = None) -> Tensor:
        gen = make_generator(seed, "random-select", c)
        return torch.randperm(len(real.train.class_index[c]), generator=gen)[:ipc]


@dataclass
class FeatureConfig:
    features: str = "trained"      # "trained" or "random" (see module docstring; ours)
    feature_epochs: int = 1        # ours: CPU-sized
    arch: str = "convnet"          # DC: coresets with ConvNet features
    batch_size: int = 256


def _train_feature_net(net: nn.Module, split: Split, epochs: int, batch_size: int, seed: int) -> None:
    """A short plain SGD training (DC's evaluation optimiser) so the embedding means something."""
    data = Data(split.images, split.labels, "feature-order")
    recipe = Recipe(lr=0.01, batch_size=batch_size, momentum=0.9, weight_decay=5e-4)  # constant lr
    for _ in train_model(net, data, recipe, seed, epochs,
                         lambda model, batch: F.cross_entropy(model(batch.x), batch.y), desc="feature net"):
        pass
    net.eval()


class FeatureSelector(Selector):
    Config = FeatureConfig

    def prepare(self, real: RealData, seed: int) -> nn.Module:
        """The feature network (trained or random), in eval mode."""
        cfg = self.config
        if cfg.features not in ("trained", "random"):
            raise ConfigError(f"features must be 'trained' or 'random', got {cfg.features!r}")
        net = create_model(cfg.arch, real.channels, real.num_classes, real.image_size)
        net = seeded_init(net, seed, "feature-net").to(real.train.images.device)
        if cfg.features == "trained":
            _train_feature_net(net, real.train, cfg.feature_epochs, cfg.batch_size, seed)
        return net.eval()

    @torch.no_grad()
    def class_features(self, real: RealData, c: int, net: nn.Module) -> Tensor:
        images = real.train.class_images(c)
        return torch.cat([net.embed(x) for x in images.split(self.config.batch_size)]).double()

    def select_class(self, real: RealData, c: int, ipc: int, seed: int, prepared: Any = None) -> Tensor:
        return self.pick(self.class_features(real, c, prepared), ipc)

    @staticmethod
    @abc.abstractmethod
    def pick(features: Tensor, k: int) -> Tensor:
        """Indices of k rows of `features`."""


@register("herding")
class Herding(FeatureSelector):
    """Greedy herding (Welling 2009): each pick brings the running mean closest to the class mean."""

    @staticmethod
    def pick(features: Tensor, k: int) -> Tensor:
        target = features.mean(0)
        total = torch.zeros_like(target)
        available = torch.ones(len(features), dtype=torch.bool, device=features.device)
        picks = []
        for step in range(1, k + 1):
            dist = ((target - (total + features) / step) ** 2).sum(1)
            dist[~available] = float("inf")
            i = int(dist.argmin())
            picks.append(i)
            available[i] = False
            total += features[i]
        return torch.tensor(picks)


@register("k-center")
class KCenter(FeatureSelector):
    """Greedy k-center (Sener & Savarese 2018): start nearest the class mean, then add the point
    farthest from everything chosen so far (as in the DC repo's issue #21 pseudo-code)."""

    @staticmethod
    def pick(features: Tensor, k: int) -> Tensor:
        first = int(((features - features.mean(0)) ** 2).sum(1).argmin())
        picks = [first]
        nearest = ((features - features[first]) ** 2).sum(1)
        for _ in range(k - 1):
            i = int(nearest.argmax())
            picks.append(i)
            nearest = torch.minimum(nearest, ((features - features[i]) ** 2).sum(1))
        return torch.tensor(picks)


@register("whole")
class WholeDataset(Method):
    """The full training set: the upper reference. `ipc` and `seed` change nothing (a suite runs it once, IPC 0)."""

    kind = "whole"
    Config = NoConfig
    supports_view = False

    def fit(self, real: RealData, ipc: int = 0, seed: int = 0, *, budget: Any = None, checkpoint: Any = None,
            resume: bool = False, world: Any = None, snapshot: Any = None) -> SyntheticSet:
        refuse_run_options(self, budget, checkpoint, resume, world, snapshot)
        order = torch.cat(real.train.class_index)
        return new_set(real, real.train.images[order], self.name, self.config, seed,
                       labels=real.train.labels[order])
