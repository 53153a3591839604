"""The models an evaluation has finished, logged one by one, and the one it is training, saved every minute or
so: an interrupted evaluation resumes where it stood instead of from scratch (a kd score at IPC 10 is 48 CPU
minutes; a model on the whole training set is hours even on a GPU).

Every model depends only on its own seed (trainer.py: init, data order and augmentation draws come from
generators derived from (seed, epoch, batch)), so a model trained before the interruption scores exactly what
it would score now, and one resumed after epoch e from its weights and optimiser state continues exactly as
it would have: there is no other random state to restore. The log keeps each finished model's final-epoch
accuracy and seconds; the model in training goes to a second file (`<log>.model.pt`). Both name what the
models depend on beside their seed (set, protocol, teacher); those of another evaluation are ignored.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .._io import save_torch, write_json

SAVE_EVERY_SECONDS = 60.0   # ours: how much training an interruption may cost, against a save's few MB


@dataclass
class ModelPoint:
    """Where one model's training stands after `epoch` epochs: what it resumes from."""
    epoch: int
    model: dict[str, Any]        # state_dict (BN running statistics included)
    optimizer: dict[str, Any]    # state_dict (momentum / Adam moments, current lr)
    train_seconds: float         # spent on it so far, over every run


@dataclass(frozen=True)
class FinishedModel:
    accuracy: float          # final-epoch test accuracy
    train_seconds: float     # creation and training
    test_seconds: float      # its test pass


class FinishedModels:
    """An atomic JSON log of finished models, keyed by architecture and seed (in memory only without a path)."""

    def __init__(self, path: str | Path | None, identity: dict[str, Any]) -> None:
        self.path = None if path is None else Path(path)
        self.identity = json.loads(json.dumps(identity))  # as it reads back from the file
        self.models: dict[str, FinishedModel] = {}
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, ValueError):
                saved = {}  # a damaged log costs only the models it held
            if saved.get("identity") == self.identity:
                self.models = {k: FinishedModel(**v) for k, v in saved.get("models", {}).items()}
        self.resumed = len(self.models)
        self.last_save = time.monotonic()

    @property
    def point_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".model.pt")

    def point(self, arch: str, seed: int, device: torch.device) -> ModelPoint | None:
        """The saved state of this model, if the interrupted run was training it."""
        where = self.point_path
        if where is None or not where.exists():
            return None
        try:
            saved = torch.load(where, map_location=device, weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged file costs only the epochs it held
            return None
        if saved.get("identity") != self.identity or saved.get("key") != f"{arch}/{seed}":
            return None
        return ModelPoint(**saved["point"])

    def save_point(self, arch: str, seed: int, point: Callable[[], ModelPoint]) -> None:
        """Save the model in training when SAVE_EVERY_SECONDS have passed since the last save."""
        if self.path is None or time.monotonic() - self.last_save < SAVE_EVERY_SECONDS:
            return
        save_torch(self.point_path, {"identity": self.identity, "key": f"{arch}/{seed}", "point": asdict(point())})
        self.last_save = time.monotonic()

    def get(self, arch: str, seed: int) -> FinishedModel | None:
        return self.models.get(f"{arch}/{seed}")

    def add(self, arch: str, seed: int, model: FinishedModel) -> None:
        self.models[f"{arch}/{seed}"] = model
        if self.path is not None:
            write_json(self.path, {"identity": self.identity,
                                   "models": {k: asdict(v) for k, v in self.models.items()}})
            self.point_path.unlink(missing_ok=True)

    def for_arch(self, arch: str) -> "ArchLog":
        return ArchLog(self, arch)

    def remove(self) -> None:
        """Drop the log once the complete report is safely written."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.point_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ArchLog:
    """The log of one architecture's models: what the trainers see."""
    log: FinishedModels
    arch: str

    def get(self, seed: int) -> FinishedModel | None:
        return self.log.get(self.arch, seed)

    def add(self, seed: int, model: FinishedModel) -> None:
        self.log.add(self.arch, seed, model)

    def point(self, seed: int, device: torch.device) -> ModelPoint | None:
        return self.log.point(self.arch, seed, device)

    def save_point(self, seed: int, point: Callable[[], ModelPoint]) -> None:
        self.log.save_point(self.arch, seed, point)
