"""What Synthesizer.fit needs to run one class block per process under torchrun (see base.py's
docstring for the scheme): the per-iteration agreement and the choice of checkpoint to resume."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from .._distributed import World
from ..errors import CheckpointError


def sum_in_order(terms: list[float]) -> float:
    """Left-to-right sum from 0.0: exactly how one process adds its per-class losses."""
    total = 0.0
    for t in terms:
        total += t
    return total


def on_host(values: Sequence[Tensor], parts: Sequence[Mapping[str, Tensor]] = ()) -> tuple[list[float], list[dict[str, float]]]:
    """0-dim tensors read as Python floats in ONE transfer (one host synchronisation on a GPU, where a `.item()`
    per class waits for the device each time). The floats are those `.item()` gives (read through float64)."""
    flat = [*values, *(v for p in parts for v in p.values())]
    numbers = torch.stack([v.reshape(()).double() for v in flat]).tolist() if flat else []
    head, rest = numbers[:len(values)], iter(numbers[len(values):])
    return head, [{k: next(rest) for k in p} for p in parts]


def agree(world: World, loss: float | list[float], elapsed: float, save: bool,
          stop: bool) -> tuple[float, float, bool, bool]:
    """The iteration's loss over all classes and what every rank does next: the slowest rank's
    elapsed time (one budget for all), save if any rank's checkpoint is due, stop if any rank was
    signalled. One small collective per iteration; none in a single process."""
    terms = [float(t) for t in loss] if isinstance(loss, (list, tuple)) else [float(loss)]
    if not world.sharded:
        return sum_in_order(terms), elapsed, save, stop
    ranks = world.all_gather((terms, elapsed, save, stop), "the per-iteration loss exchange")
    return (sum_in_order([t for r in ranks for t in r[0]]), max(r[1] for r in ranks),
            any(r[2] for r in ranks), any(r[3] for r in ranks))


def previous(path: Path) -> Path:
    """Where a rank keeps the checkpoint before its last one."""
    return path.with_name(path.name + ".prev")


def common_checkpoint(world: World, path: Path, read: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Each rank has its last checkpoint and the one before (a rank that died while saving leaves
    the others one ahead); every rank continues from the newest iteration all ranks have. Decided
    together, so every rank returns the same iteration or raises the same error."""
    found: dict[int, dict[str, Any]] = {}
    problem = ""
    for candidate in (path, previous(path)):
        try:
            ckpt = read(candidate)
            found[ckpt["iteration"]] = ckpt
        except CheckpointError as err:
            if candidate == path:  # a missing previous checkpoint is normal
                problem = str(err)
    everyone = world.all_gather((sorted(found), problem), "comparing the ranks' checkpoints")
    common = set.intersection(*(set(its) for its, _ in everyone))
    if not common:
        problems = [f"rank {r}: {why}" for r, (_, why) in enumerate(everyone) if why]
        have = ", ".join(f"rank {r}: {its or 'none'}" for r, (its, _) in enumerate(everyone))
        raise CheckpointError("; ".join(problems) if problems else
                              f"--resume: the ranks have no checkpoint at a common iteration ({have}); "
                              "start without --resume")
    return found[max(common)]
