"""The whole training set's score, the upper reference every set is compared with: hours of training for one
number that depends only on the dataset, the protocol, the architectures and the teacher, so it is cached in the
user cache (dsdistill.evaluate.cache.whole_cache) and scored once. What `dsdistill evaluate --whole` runs.

It lives here, not in evaluate/, because the whole training set is made by a selection method (`whole`) and the
evaluator never knows the synthesizers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .._distributed import init_world, is_main_process
from .._io import read_json, write_json
from ..data import load_dataset, resolve_dataset
from ..errors import ConfigError
from ..evaluate import Protocol, evaluate, get_protocol
from ..evaluate.cache import resume_log, whole_cache
from ..models import MODELS
from ..synthesizers import create_synthesizer


@dataclass
class WholeScore:
    table: str                  # Report.table() of the score
    report: dict[str, Any]      # Report.to_json()
    cached: Path | None = None  # the cache file it was read from; None when scored now (then written there)

    def save_json(self, path: str | Path, command: str | None = None) -> None:
        """As Report.save_json, whether the score was made now or read from the cache."""
        write_json(path, {**self.report, **({"command": command} if command else {})})


def score_whole(dataset: str, protocol: Protocol | str = "dc", *, archs: Sequence[str] | None = None,
                data_root: str | None = None, device: str | torch.device = "auto", path: str = "auto",
                teacher: str | None = None) -> WholeScore | None:
    """The cached score, or the whole training set of `dataset` scored now and cached (None on ranks other
    than 0 under torchrun, which split its models)."""
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    archs = list(archs) if archs else None
    resolve_dataset(dataset)  # the names become a file name: known names only, before any path is built
    for arch in archs or [proto.architecture]:
        MODELS.get(arch)
    cache = whole_cache(dataset, proto.hash, archs or [proto.architecture], teacher)
    if cache.exists():
        if not is_main_process():
            return None
        try:
            stored = read_json(cache, "cached whole-set score", "it is scored again")
            return WholeScore(stored["table"], stored["report"], cached=cache)
        except (ConfigError, KeyError, TypeError):
            cache.unlink(missing_ok=True)  # a damaged cache entry costs a rescore, never a traceback
    with init_world(device) as world:
        real = load_dataset(dataset, data_root, device=world.device)
        synset = create_synthesizer("whole").fit(real)
        report = evaluate(synset, proto, archs=archs, data=real, device=world.device, path=path,
                          set_path=f"whole:{dataset}", teacher=teacher, world=world,
                          resume=resume_log(synset, proto.hash, archs, teacher))
    if not world.is_main:
        return None
    score = WholeScore(report.table(), report.to_json())
    write_json(cache, {"table": score.table, "report": score.report})
    return score


__all__ = ["WholeScore", "score_whole"]
