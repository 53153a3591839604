"""Progress bars for long loops (tqdm: a maintained, terminal-aware bar is better than a hand-written one)."""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from tqdm.auto import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """--quiet turns every bar off for the whole process."""
    global _QUIET
    _QUIET = quiet


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", leave: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; silent with --quiet, or when stderr is not a terminal unless
    DSDISTILL_PROGRESS=1 (keeps CI logs and redirected output readable)."""
    forced = os.environ.get("DSDISTILL_PROGRESS", "") not in ("", "0")
    disable = _QUIET or (not sys.stderr.isatty() and not forced)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable,
                dynamic_ncols=True, file=sys.stderr, **kwargs)
