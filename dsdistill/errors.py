"""User-facing errors. The CLI prints any DsdistillError on one line and exits with code 2;
everything else is an internal error (exit 1, traceback)."""
from __future__ import annotations


class DsdistillError(Exception):
    """A mistake the user can fix; the message says what to do."""


class UnknownNameError(DsdistillError):
    """An unknown dataset, model, method, protocol or option name."""


class ConfigError(DsdistillError):
    """A bad configuration value or an impossible request (e.g. IPC larger than a class)."""


class DataNotFoundError(DsdistillError):
    """Real data is missing or damaged."""


class SetFileError(DsdistillError):
    """A synthetic-set file is missing, malformed, truncated or of an unknown version."""


class CheckpointError(DsdistillError):
    """A checkpoint, pool, expert or committee file is missing or does not match the run."""


class DivergedError(DsdistillError):
    """An optimisation produced a non-finite loss; the last good checkpoint is kept."""


class DistributedError(DsdistillError):
    """Under torchrun: the process group could not start (bad MASTER_ADDR / MASTER_PORT, rank 0 unreachable), or
    a collective failed because another rank died or hung (checkpoints are kept)."""
