"""The end of a distillation run: the set written, then its checkpoints removed.

A checkpoint exists to resume an unfinished run. Once the set is safely on disk (written whole, `SyntheticSet.save`
goes through a temporary and a rename) it only costs space and invites a `--resume` of a finished run, so it goes;
a failure or an interrupt never reaches here, so the checkpoint stays for `--resume`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .._distributed import World
from .._io import Stamp
from ..synset import SyntheticSet
from .sharding import previous


def save_and_clear(synset: SyntheticSet | None, out: str | os.PathLike, checkpoint: str | os.PathLike | None,
                   world: World | None = None, unchanged_since: Stamp | bool = False) -> list[Path]:
    """Write `synset` to `out` (rank 0 holds it; None on the other ranks under torchrun), then remove this rank's
    checkpoint and the one before it; returns the files removed. Under torchrun every rank first waits for rank 0
    to have written the set, so no checkpoint goes before the set exists. unchanged_since: as SyntheticSet.save (a
    target another run wrote meanwhile is not replaced, and the checkpoint stays)."""
    world = world or World()
    if synset is not None:
        synset.save(out, unchanged_since)
    if world.sharded:
        world.broadcast(True, "waiting for rank 0 to write the set")
    removed = []
    if checkpoint is not None:
        path = world.checkpoint_path(checkpoint)
        for file in (path, previous(path)):
            if file.exists():
                file.unlink()
                removed.append(file)
    return removed


__all__ = ["save_and_clear"]
