"""How long a synthesizer runs: the Budget, and the one rule that picks it when none is given.

The rule (`choose_budget`), used by the factory (CLI, suites, benchmarks) and by `fit()` alike: explicit
iterations and/or minutes win; else the preset's `iterations`; else a method that schedules itself (CV-DD:
iterations_per_ipc x IPC) plans its own length in `plan_budget`; else DEFAULT_BUDGET.

DEFAULT_BUDGET is 100 iterations, in the API and the CLI alike (the CLI used to take 10 minutes): a count of
iterations gives the same bytes for the same seed on any machine at any load, the standard every other run
here keeps, where a wall-clock default makes the set depend on how busy the cores were. Give --minutes to
bound the time instead.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass
class Budget:
    iterations: int | None = None
    minutes: float | None = None
    snapshot_minutes: tuple[float, ...] = ()   # distillation minutes at which fit() hands a snapshot of the set to
                                               # its `snapshot` callback (accuracy against distillation time)

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise ConfigError("give a budget: --iterations N or --minutes M")
        if self.minutes is not None and not math.isfinite(self.minutes):
            raise ConfigError(f"--minutes must be a finite number of minutes, got {self.minutes}")  # nan never ends
        if self.iterations is not None and (isinstance(self.iterations, bool) or not isinstance(self.iterations, int)):
            raise ConfigError(f"--iterations must be a whole number, got {self.iterations!r}")
        if (self.iterations is not None and self.iterations < 1) or (self.minutes is not None and self.minutes <= 0):
            raise ConfigError("the budget must be positive")
        snaps = tuple(self.snapshot_minutes)
        if any(not math.isfinite(m) or m <= 0 for m in snaps) or list(snaps) != sorted(set(snaps)):
            raise ConfigError(f"--snapshot-minutes must be increasing positive minutes, got {','.join(map(str, snaps))}")
        self.snapshot_minutes = snaps

    def done(self, it: int, elapsed: float) -> bool:
        return ((self.iterations is not None and it >= self.iterations)
                or (self.minutes is not None and elapsed >= 60 * self.minutes))

    def describe(self) -> str:
        parts = ([f"{self.iterations} iteration{'s' * (self.iterations != 1)}"] if self.iterations is not None else []) + \
                ([f"{self.minutes:g} minutes"] if self.minutes is not None else [])
        snaps = f", snapshots at {', '.join(f'{m:g}' for m in self.snapshot_minutes)} min" if self.snapshot_minutes else ""
        return " or ".join(parts) + snaps


DEFAULT_BUDGET = Budget(iterations=100)


def choose_budget(method: Any, budget: Budget | None, preset_iterations: int | None) -> tuple[Budget | None, str]:
    """(the budget, where it came from). None: the method plans its own length (`schedules_itself`)."""
    if budget is not None:
        return budget, "given"
    if preset_iterations is not None:
        return Budget(iterations=preset_iterations), "preset"
    if method.schedules_itself:
        return None, "the method's own schedule"
    return DEFAULT_BUDGET, "the default"
