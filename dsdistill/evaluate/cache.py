"""What an evaluation keeps in the user cache beyond one process: the whole training set's score (hours of
training for one number, the same for every set compared with it) and the log that lets an interrupted
evaluation resume (dsdistill.evaluate.finished).

The folder is $DSDISTILL_CACHE, else $XDG_CACHE_HOME/dsdistill, else ~/.cache/dsdistill. A name is a key: a
file names everything its content depends on, so a changed protocol, set, architecture list or teacher never
finds another's file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

from .._io import file_part
from ..synset import SyntheticSet

CACHE_ENV = "DSDISTILL_CACHE"


def cache_dir() -> Path:
    """The user cache of dsdistill (read each call, so tests and users can point it elsewhere)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsdistill"


def whole_cache(dataset: str, protocol_hash: str, archs: Sequence[str], teacher: str | None = None) -> Path:
    """Where the whole training set's score under a protocol and architectures is cached. A teacher (soft-label
    protocols) joins the name, hashed, so two teachers never share a score; without one the name is the one
    earlier versions wrote, so their cached scores are still found."""
    name = f"{file_part(dataset)}-{protocol_hash}-{file_part('+'.join(archs))}"
    if teacher is not None:
        name += f"-teacher-{hashlib.sha256(str(teacher).encode()).hexdigest()[:12]}"
    return cache_dir() / "whole" / f"{name}.json"


def resume_log(synset: SyntheticSet, protocol_hash: str, archs: Sequence[str] | None,
               teacher: str | None) -> Path:
    """Where an evaluation logs its finished models, so that the same command, interrupted, resumes (the log is
    removed when the report is complete). Keyed by the set's payload, the protocol, the architectures asked for
    (None: the protocol's own) and the teacher as given."""
    what = json.dumps([synset.payload_sha256(), protocol_hash, None if archs is None else list(archs),
                       None if teacher is None else str(teacher)])
    return cache_dir() / "partial" / f"{hashlib.sha256(what.encode()).hexdigest()[:16]}.json"


__all__ = ["CACHE_ENV", "cache_dir", "resume_log", "whole_cache"]
