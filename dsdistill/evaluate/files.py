"""Scoring set files the way `dsdistill evaluate` and `dsdistill compare` do: every file is read and checked
before any model trains, the real data is loaded once per dataset, and each evaluation logs its finished models
in the user cache (cache.resume_log), so the same command, interrupted, resumes where it stood.

Under torchrun every rank runs this: each evaluation splits its (architecture x seed) models across the ranks
(evaluate(world=)), and rank 0 alone gets the reports (the others get None: they print nothing).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .._distributed import init_world
from ..data import RealData, load_dataset
from ..synset import SyntheticSet
from . import evaluate, get_protocol
from .cache import resume_log
from .protocols import Protocol
from .report import Report


def score_files(set_paths: Sequence[str | Path], protocol: Protocol | str = "dc", *,
                archs: Sequence[str] | None = None, data_root: str | None = None,
                device: str | torch.device = "auto", path: str = "auto",
                teacher: str | None = None) -> list[Report] | None:
    """One report per file, in order (None on ranks other than 0). archs, path and teacher as evaluate()'s."""
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    archs = list(archs) if archs else None
    reports: list[Report] = []
    data: dict[str, RealData] = {}
    with init_world(device) as world:
        synsets = [SyntheticSet.load(p) for p in set_paths]  # check every file before any training
        for set_path, synset in zip(set_paths, synsets):
            if synset.dataset not in data:
                data[synset.dataset] = load_dataset(synset.dataset, data_root, device=world.device)
            reports.append(evaluate(synset, proto, archs=archs, data=data[synset.dataset], device=world.device,
                                    path=path, set_path=str(set_path), teacher=teacher, world=world,
                                    resume=resume_log(synset, proto.hash, archs, teacher)))
    return reports if world.is_main else None


__all__ = ["score_files"]
