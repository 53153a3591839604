"""Keep freed memory in the process (glibc) instead of returning it to the OS after every step.

Convolution activations here are tens to hundreds of MiB; glibc serves such blocks with mmap and
unmaps them on free, so every training step pays page faults to get zeroed pages back (measured
on 2 cores: a DM step spent about a third of its time in the kernel). Raising the mmap and trim
thresholds makes the allocator reuse the blocks. Called by the CLI and the benchmarks only: a
library import should not change the host process's allocator.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Tune glibc malloc; returns False (and does nothing) where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    big = 2 ** 31 - 1
    return all(mallopt(option, value) == 1 for option, value in
               ((_M_MMAP_THRESHOLD, big), (_M_TRIM_THRESHOLD, big), (_M_TOP_PAD, 2 ** 28)))
