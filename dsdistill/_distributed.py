"""Scaling out with torch.distributed under torchrun: which share of the work a process does, and
how the shares come back together.

    torchrun --nproc_per_node 2 -m dsdistill distill --method dm --ipc 10 --out dm.h5

Single process (no torchrun environment, or WORLD_SIZE=1): `World()` is rank 0 of 1 and every
helper returns at once; torch.distributed is never initialised. Under torchrun, `init_world`
reads RANK / WORLD_SIZE / LOCAL_RANK, starts a process group (NCCL when the device is CUDA, each
rank on cuda:LOCAL_RANK; gloo on the CPU, with the cores divided between the ranks of a machine)
with a collective timeout, so a rank waiting on a dead or hung peer fails with a clear error
instead of waiting forever.

The seam, for any command or method whose work splits into independent items (a few lines):

    with init_world(args.device) as world:
        mine = world.share(items)               # a contiguous block of the items, in item order
        results = [work(i) for i in mine]
        merged = world.all_gather(results)      # every rank: one entry per rank, in rank (= item) order
        decided = world.broadcast(choice)       # rank 0's object (a decision, a record, a set) on every rank
        rows = world.gather_rows(tensor)        # big tensors: concatenated on rank 0, None elsewhere
        total = world.ordered_sum(stats)        # small per-item rows summed in item order, on every rank
        if world.is_main: write the file

Users today: `Synthesizer.fit(..., world=)` shares the classes (DM, DataDAM, NCFM, CV-DD; CV-DD's
BatchNorm-statistics term, its one quantity over all classes, adds the classes' moments with
`ordered_sum`), `evaluate(..., world=)` shares the (architecture x seed) models, and the bench runner
does both for each cell of a suite, with rank 0 alone reading and writing the store.

Contiguous blocks (not round-robin): concatenating the blocks in rank order restores item order, so
merging needs no index bookkeeping; class costs are equal for every registered dataset, so the
balance is the same (ranks differ by at most one item either way).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist   # torch imports it anyway; a build without it says so in dist.is_available()

from ._device import resolve_device
from ._progress import set_quiet
from .data import load_dataset, resolve_dataset
from .errors import ConfigError, DistributedError

T = TypeVar("T")
TIMEOUT_ENV = "DSDISTILL_DIST_TIMEOUT"      # minutes a collective may wait for a peer
THREADS_ENV = "DSDISTILL_THREADS"           # torch threads per CPU rank (default: cores / local ranks)
DEFAULT_TIMEOUT_MINUTES = 10.0
SHARDED_COMMANDS = frozenset({"distill", "evaluate", "compare", "bench"})
"""The commands whose work splits across torchrun processes: their library functions take a World
(Synthesizer.fit, evaluate, the bench runner). Every other command refuses torchrun (check_command)."""


@dataclass(frozen=True)
class World:
    """This process's place among the torchrun processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""  # "gloo" or "nccl"; "" in a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.size} ({self.backend})" if self.sharded else "one process"

    # ---- sharing
    def block(self, n: int) -> range:
        """This rank's contiguous block of range(n): the first n % size ranks take one item more."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    def share(self, items: Sequence[T]) -> list[T]:
        return [items[i] for i in self.block(len(items))]

    def checkpoint_path(self, path: str | os.PathLike) -> Path:
        """One checkpoint per rank (OUT.ckpt -> OUT.rank1-of-2.ckpt), so each rank can resume its share."""
        path = Path(path)
        return path if not self.sharded else path.with_name(f"{path.stem}.rank{self.rank}-of-{self.size}{path.suffix}")

    # ---- merging (collectives; a dead or hung peer becomes a DistributedError)
    def all_gather(self, obj: Any, what: str = "exchange") -> list[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every rank (small picklable objects)."""
        if not self.sharded:
            return [obj]
        out: list[Any] = [None] * self.size
        self._collective(what, dist.all_gather_object, out, obj)
        return out

    def broadcast(self, obj: T, what: str = "broadcast") -> T:
        """Rank 0's object on every rank (picklable, CPU tensors): what rank 0 alone decided or read."""
        if not self.sharded:
            return obj
        box = [obj if self.is_main else None]
        self._collective(what, dist.broadcast_object_list, box, 0)
        return box[0]

    def gather_rows(self, rows: torch.Tensor, what: str = "gather") -> torch.Tensor | None:
        """The ranks' tensors concatenated along dim 0 on rank 0 (None on the others). Point-to-point,
        so blocks may differ in length and rank 0 holds exactly the result, never a padded copy."""
        if not self.sharded:
            return rows
        shapes = self.all_gather((tuple(rows.shape), str(rows.dtype).removeprefix("torch.")), what)
        local = rows.detach().to(self.device).contiguous()
        if not self.is_main:
            self._collective(what, dist.send, local, 0)
            return None
        parts = [local]
        for src in range(1, self.size):
            shape, dtype = shapes[src]
            buffer = torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
            self._collective(what, dist.recv, buffer, src)
            parts.append(buffer)
        return torch.cat(parts).cpu()

    def ordered_sum(self, rows: torch.Tensor, what: str = "ordered sum") -> torch.Tensor:
        """The sum over dim 0 of every rank's rows, in item order, on every rank: 0 + r_0 + r_1 + ... added
        left to right exactly as one process adds its rows, so the bits do not depend on the process count
        (an all-reduce would add per-rank partial sums). Relayed: each rank adds its rows to the running sum
        of the rank before and passes it on; the last rank broadcasts the total. P small messages in a row:
        for per-item statistics (a few thousand numbers), not for big tensors."""
        total = torch.zeros(rows.shape[1:], dtype=rows.dtype, device=rows.device)
        if not self.sharded:
            for row in rows:
                total = total + row
            return total
        total = total.to(self.device)
        if self.rank > 0:
            self._collective(what, dist.recv, total, self.rank - 1)
        for row in rows.to(self.device):
            total = total + row
        if self.rank < self.size - 1:
            self._collective(what, dist.send, total, self.rank + 1)
        self._collective(what, dist.broadcast, total, self.size - 1)
        return total.to(rows.device)

    def _collective(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except RuntimeError as err:  # DistBackendError, gloo "connection closed by peer", timeouts
            first = re.sub(r"^\[[^\]]*\]\s*", "", (str(err).strip().splitlines() or [type(err).__name__])[0])[:160]
            raise DistributedError(
                f"{self.describe()}: {what} failed ({first}); another rank died or hung (its own error is in "
                f"the log above). Every finished checkpoint is kept: rerun the same command with --resume") from None


def torchrun_env() -> tuple[int, int, int, int] | None:
    """(rank, world size, local rank, local world size) under torchrun with more than one process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers; launch with torchrun") from None
    return None if size <= 1 else (rank, size, local, local_size)


def is_main_process() -> bool:
    """Rank 0 or no torchrun; readable before any process group exists (for progress bars, prints)."""
    try:
        env = torchrun_env()
    except ConfigError:  # malformed variables: the command itself reports them
        return True
    return env is None or env[0] == 0


def quiet_unless_main(quiet: bool) -> None:
    """Progress bars off when asked, and on every rank but 0 under torchrun: one bar per job, not P interleaved."""
    set_quiet(quiet or not is_main_process())


def single_process(what: str, why: str = "") -> None:
    """Refuse, before any work, to run `what` under torchrun: it does not split its work, so every process
    would do all of it (and write the same files)."""
    if torchrun_env() is not None:
        raise ConfigError(f"{what} does not split its work across processes{why}: run it in one process, "
                          "without torchrun")


def check_command(command: str) -> None:
    """The sharding policy of the command line: `dsdistill COMMAND` under torchrun only for SHARDED_COMMANDS."""
    if command not in SHARDED_COMMANDS:
        single_process(f"`dsdistill {command}`", f" (torchrun does that for {', '.join(sorted(SHARDED_COMMANDS))})")


def threads_per_rank(local_size: int) -> int:
    """CPU ranks on one machine share its cores: cores // ranks (torchrun's own default is 1 thread)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(f"${THREADS_ENV} must be a whole number of torch threads per process, at least 1; "
                              f"got {raw!r} (unset it for cores / local processes)")
        return value
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_size))


def timeout_minutes() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_MINUTES
    except ValueError:
        raise ConfigError(f"${TIMEOUT_ENV} must be a number of minutes, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"${TIMEOUT_ENV} must be positive, got {raw!r}")
    return value


@contextlib.contextmanager
def init_world(device: str | torch.device = "auto") -> Iterator[World]:
    """The World of this process; under torchrun a process group lives for the block's duration."""
    env = torchrun_env()
    dev = resolve_device(device)
    if env is None:
        yield World(device=dev)
        return
    rank, size, local_rank, local_size = env
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)  # one GPU per rank, whatever index --device named
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        torch.set_num_threads(threads_per_rank(local_size))
        backend = "gloo"
    start_process_group(backend, rank, size)
    yield World(rank, size, dev, backend)
    # Only after success (after a failure the process just exits). The barrier first: a rank that tears gloo
    # down while a peer still drains the last exchange can abort in C++ ("terminate called without an
    # active exception", seen about once in three full test runs on 2 cores).
    dist.barrier()
    dist.destroy_process_group()


def start_process_group(backend: str, rank: int, size: int) -> None:
    """torch.distributed's env:// start, with its failures (no or bad MASTER_ADDR / MASTER_PORT, rank 0
    unreachable, the peers not arriving in time) as one line: the C++ message alone names no variable."""
    timeout = timeout_minutes()
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout))
    except (RuntimeError, ValueError, OSError) as err:  # DistNetworkError / DistStoreError are RuntimeErrors
        first = re.sub(r"^\[[^\]]*\]\s*", "", (str(err).strip().splitlines() or [type(err).__name__])[0])[:200]
        where = f"{os.environ.get('MASTER_ADDR', '(unset)')}:{os.environ.get('MASTER_PORT', '(unset)')}"
        raise DistributedError(
            f"rank {rank} of {size} ({backend}): could not start the process group at MASTER_ADDR:MASTER_PORT "
            f"{where} ({first}); launch with torchrun, which sets both (on several machines: the same reachable "
            f"--rdzv-endpoint HOST:PORT on each; peers more than ${TIMEOUT_ENV} = {timeout:g} minutes apart time out)"
        ) from None


def load_shard(world: World, name: str, root: str | os.PathLike | None = None, *, zca: bool = False,
               device: str | torch.device = "cpu"):
    """The real data this rank serves: only its classes are read (folder datasets decode only those
    class folders; the in-memory formats parse their file and keep those classes). Exception: with
    ZCA, or for datasets whose statistics are computed (grayscale image folders), every rank reads
    the whole train split, fits on it exactly as a single process would, then keeps its classes."""
    if not world.sharded:
        return load_dataset(name, root, zca=zca, device=device)
    spec = resolve_dataset(name)
    mine = list(world.block(spec.num_classes))
    if not mine:
        raise ConfigError(f"{world.size} processes for {spec.num_classes} classes: rank {world.rank} has no class; "
                          f"use at most {spec.num_classes} processes")
    if zca or not spec.mean:
        return load_dataset(name, root, zca=zca, device=device).subset(mine)
    return load_dataset(name, root, zca=zca, device=device, classes=mine)
