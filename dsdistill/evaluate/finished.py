"""The models an evaluation has finished, logged one by one so that an interrupted evaluation resumes at the
next model instead of from scratch (a kd score at IPC 10 is 48 CPU minutes; the whole training set is hours).

Every model depends only on its own seed (trainer.py: init, data order and augmentation draws come from
generators derived from it), so a model trained before the interruption scores exactly what it would score
now; the log keeps its final-epoch accuracy and seconds. The log names what its models depend on beside
their seed (set, protocol, teacher); a log of another evaluation is ignored and overwritten.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._io import write_json


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

    def get(self, arch: str, seed: int) -> FinishedModel | None:
        return self.models.get(f"{arch}/{seed}")

    def add(self, arch: str, seed: int, model: FinishedModel) -> None:
        self.models[f"{arch}/{seed}"] = model
        if self.path is not None:
            write_json(self.path, {"identity": self.identity,
                                   "models": {k: asdict(v) for k, v in self.models.items()}})

    def for_arch(self, arch: str) -> "ArchLog":
        return ArchLog(self, arch)

    def remove(self) -> None:
        """Drop the log once the complete report is safely written."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ArchLog:
    """The log of one architecture's models: what the trainers see."""
    log: FinishedModels
    arch: str

    def get(self, seed: int) -> FinishedModel | None:
        return self.log.get(self.arch, seed)

    def add(self, seed: int, model: FinishedModel) -> None:
        self.log.add(self.arch, seed, model)
