"""What every method shares: a dataclass config, capability flags and fit(real, ipc, seed)."""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._config import check_values, make_config
from ..data import RealData
from ..errors import ConfigError
from ..synset import SyntheticSet


@dataclass
class NoConfig:
    """A method without options."""


class Method(abc.ABC):
    """A way to turn real data into a SyntheticSet at a chosen IPC."""

    name: ClassVar[str] = "?"
    Config: ClassVar[type] = NoConfig
    kind: ClassVar[str] = "synthesis"      # "synthesis", "selection", or "whole" (the whole training set: the upper
                                           # reference, no IPC, no seed; a record's `family` is its method's kind)
    needs_teacher: ClassVar[bool] = False  # works from models trained on the real data (a folder it must be given)
    teacher_folder: ClassVar[str] = ""     # the Config field naming that folder, by what builds it: "experts" or
                                           # "committee" (tests/conftest.py has one tiny folder of each)
    class_separable: ClassVar[bool] = True # classes can be processed independently (sharding)
    supports_view: ClassVar[bool] = True   # accepts FYI's flip view (the factory refuses flip otherwise)
    schedules_itself: ClassVar[bool] = False  # plans its own length when given no budget (CV-DD: per IPC index)
    soft_labels: ClassVar[bool] = False    # its sets carry their own soft labels (stored, or a teacher they name),
                                           # so a soft-label protocol (kd) needs no --teacher for them
    TINY: ClassVar[dict[str, Any]] = {}    # options that make a run on tests/conftest.py's tiny data quick (the
                                           # registry-wide tests use them, plus teacher_folder's tiny folder)

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None:
            config = make_config(self.Config, overrides)
        elif overrides:
            config = check_values(dataclasses.replace(config, **overrides))
        self.config = config
        self.preset_iterations: int | None = None  # the preset's budget (the factory sets it): fit()'s default

    @abc.abstractmethod
    def fit(self, real: RealData, ipc: int, seed: int = 0, *, budget: Any = None, checkpoint: Any = None,
            resume: bool = False, world: Any = None, snapshot: Any = None) -> SyntheticSet | None:
        """Build the set; real data is already on the device the method should use. Every method takes the same
        arguments and refuses others; a selection refuses a budget (it has none)."""


def not_separable(name: str) -> str:
    """The one refusal for a method whose objective couples the classes, under torchrun."""
    return (f"{name} is not class-separable (its objective couples all classes), so it cannot be split across "
            f"processes: run it in one process, without torchrun")


def check_seed(seed: int) -> None:
    """A seed is a non-negative whole number (every generator is derived from it): checked before any work, so a
    bad one never costs a run and a checkpoint (the set file would refuse it only at save)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative whole number, got {seed!r}")


def check_ipc(real: RealData, ipc: int) -> None:
    """IPC must be positive and no larger than the smallest class."""
    if ipc < 1:
        raise ConfigError(f"--ipc must be at least 1, got {ipc}")
    sizes = {c: len(real.train.class_index[c]) for c in real.class_ids}  # the classes this data holds
    c = min(sizes, key=lambda k: (sizes[k], k))
    smallest = sizes[c]
    if ipc > smallest:
        raise ConfigError(f"--ipc {ipc} is larger than class {c} ({real.class_names[c]!r}), "
                          f"which has {smallest} training images")


def class_major_labels(num_classes: int, ipc: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[0]*ipc + [1]*ipc + ...: the layout of every set we write."""
    return torch.arange(num_classes, device=device).repeat_interleave(ipc)


def new_set(real: RealData, images: torch.Tensor, method: str, config: Any, seed: int,
            labels: torch.Tensor | None = None, **fields: Any) -> SyntheticSet:
    """A SyntheticSet with the real data's metadata filled in (class-major labels unless given)."""
    if labels is None:
        labels = class_major_labels(real.num_classes, images.shape[0] // real.num_classes)
    zca = real.zca.state_dict() if real.zca is not None else None
    return SyntheticSet(
        images=images.detach().float().cpu().contiguous(),
        labels=labels.cpu(),
        dataset=real.name, num_classes=real.num_classes, class_names=list(real.class_names),
        mean=tuple(real.mean), std=tuple(real.std),
        image_space="zca" if zca is not None else "normalized",
        zca={k: v.detach().cpu() for k, v in zca.items()} if zca is not None else None,
        method=method, method_config=dataclasses.asdict(config), seed=seed, **fields,
    )
