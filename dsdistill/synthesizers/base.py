"""The synthesizer base: owns the loop, budget, seeding, progress, checkpoint/resume and export.

A method subclasses Synthesizer, declares a Config dataclass (extending SynthConfig) and writes
`step(state, real, it)`; everything else lives here. All randomness derives from
(seed, purpose, class, iteration), so a checkpoint needs no RNG state: resuming at iteration k
replays exactly the draws an uninterrupted run would make.

Sharding by class (torchrun, `fit(..., world=)`): classes keep their global ids everywhere, so a
rank that serves only some classes makes exactly the draws a single process makes for them. The
real data holds the rank's classes (`real.class_ids`), the state holds their images
(`State.class_slice` maps a global class to its rows), a separable method's per-class loops run
over `state.classes` and its step returns the per-class loss terms; once per iteration the ranks
exchange those terms (summed in class order, as one process sums them), their elapsed time and
their wish to checkpoint or stop, so every rank takes the same decisions; at the end rank 0
gathers the images. Each rank keeps its own checkpoint and the one before it, and --resume
restarts every rank from the newest iteration all of them have.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from .._config import without_added_later
from .._io import save_torch
from .._progress import progress
from .._seed import make_generator
from ..data import RealData
from .._distributed import World
from ..errors import CheckpointError, ConfigError, DivergedError
from ..synset import SyntheticSet
from .budget import Budget, choose_budget
from .method import Method, check_ipc, check_seed, class_major_labels, new_set, not_separable
from .sharding import agree, common_checkpoint, previous
from .views import view_for


@dataclass
class SynthConfig:
    """Options every synthesizer has."""
    init: str = "real"              # "real" (random real images per class; DC/DM), "noise" (N(0,1) in
                                    # normalised space), or "file:PATH" (a set file, e.g. a herding selection)
    flip: bool = False              # FYI: match every synthetic batch together with its mirror
    arch: str = "convnet"           # the network the set is matched against (DC/DM: ConvNet-3)
    norm: str = "instance"          # its normalisation (DM: instance norm)
    dsa: bool = True                # Siamese DSA on real and synthetic batches (DSA/DM)
    dsa_sampler: str = "auto"       # how a DSA draw picks its groups: dsa (one group, DSA's code) or fyi (a flip
                                    # always, then one other group: FYI's code); augment.DSA_SAMPLERS. auto (the
                                    # default) is fyi under --flip for the methods FYI's code covers (DM, MTT:
                                    # Synthesizer.fyi_sampler_under_flip), dsa otherwise; resolved when the method
                                    # is made, so a set file and a run's key hold dsa or fyi
    checkpoint_minutes: float = 5.0 # ours: save the run state this often (and on SIGINT/SIGTERM)
    checkpoint_every: int = 0       # ours: also every N iterations (0 = time only)
    log_points: int = 500           # ours: the stored loss curve is averaged down to at most this many points


@dataclass
class State:
    """What a run carries between iterations. Everything a method computes for a run lives here, never on the
    method object, so one object can run twice and a fresh one resumes a checkpoint. `extra` goes into the
    checkpoint; `context` is rebuilt at every start from the config, the data and the files the config names (all
    pinned by the checkpoint's identity), so a checkpoint never copies a committee or a pool."""
    images: Tensor | None = None                # [K*ipc, C, H, W], requires grad (set by Synthesizer.start)
    optimizer: torch.optim.Optimizer | None = None
    ipc: int = 0
    extra: dict[str, Any] = field(default_factory=dict)   # method state: tensors, plain values, or objects with
                                                          # state_dict/load_state_dict (saved as such)
    iteration: int = 0
    elapsed: float = 0.0
    losses: list[float] = field(default_factory=list)
    classes: tuple[int, ...] = ()                         # the (global) classes whose images this state
                                                          # holds, in order; () = all of them
    context: dict[str, Any] = field(default_factory=dict) # what setup read or built (models, experts), not saved
    budget: Budget | None = None                          # this run's budget (after plan_budget)
    world: World = field(default_factory=World)           # the process group (one process by default)

    def served(self, num_classes: int) -> tuple[int, ...]:
        """The classes this state holds: `classes`, or all of them when it is empty."""
        return self.classes or tuple(range(num_classes))

    def class_slice(self, c: int) -> Tensor:
        """Class c's images (c is the dataset's class id, also when only some classes are held)."""
        row = self.classes.index(c) if self.classes else c
        return self.images[row * self.ipc:(row + 1) * self.ipc]


AUTO_SAMPLER = "auto"

_OPERATIONAL = {"checkpoint_minutes", "checkpoint_every", "log_points",
                "joint_memory_gb"}  # how a joint pass is chunked in memory: the same function (synthesizers/joint.py)

# options added after records were stored, with the value that gives the bytes of before: at that value they stay
# out of a recipe and a checkpoint identity, so the keys of every record made before them stay valid (as zca does)
_ADDED_LATER = {"image_step": "per-iteration", "student_momentum": 0.0, "dsa_sampler": "dsa", "compile": False}


def stored_config(cls: type, method_config: dict[str, Any]) -> dict[str, Any]:
    """A set file's method_config as the options that remake it: an option added after the file was written gets
    the value that behaved as before (not today's default: NCFM's image step, --flip's DSA sampler, ...)."""
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    return {**{k: v for k, v in _ADDED_LATER.items() if k in fields}, **method_config}


def keyed_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config fields that decide a run's bytes and name it: not the operational ones, not later additions
    at their old behaviour."""
    return without_added_later({k: v for k, v in config.items() if k not in _OPERATIONAL}, _ADDED_LATER)


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the state was checkpointed."""


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag checked between iterations (so a checkpoint is never torn)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers, no graceful stop
            self._old.clear()
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Synthesizer(Method):
    """Base of every iterative synthesizer."""

    Config: ClassVar[type] = SynthConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    # FYI's code (cvlab-yonsei/FYI) runs its flip with its own DSA sampler for these methods (DC/DSA/DM and MTT);
    # elsewhere the flip view is our extension and keeps the method's augmentation
    fyi_sampler_under_flip: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if getattr(self.config, "dsa_sampler", None) == AUTO_SAMPLER:
            chosen = "fyi" if self.config.flip and self.fyi_sampler_under_flip else "dsa"
            self.config = dataclasses.replace(self.config, dsa_sampler=chosen)

    # ---- what a method implements
    def setup(self, real: RealData, state: State, seed: int) -> None:
        """Before the images: check the config, read what the method works from (a committee, a pool, experts) into
        state.context and fix its plan (CV-DD's voters) in state.extra."""

    def plan_budget(self, budget: Budget | None, state: State) -> Budget:
        """This run's budget. None only for a method that schedules itself, which plans its length here."""
        if budget is None:
            raise ConfigError(f"{self.name} plans no length of its own: give a budget (--iterations N or --minutes M)")
        return budget

    def make_optimizer(self, images: Tensor) -> torch.optim.Optimizer:
        raise NotImplementedError

    def init_extra(self, real: RealData, state: State, seed: int) -> None:
        """Method state beyond the images (learned lr, sampler network...)."""

    def step(self, state: State, real: RealData, it: int, seed: int) -> dict[str, Any]:
        """One iteration: compute the loss, update state.images; return figures ({'loss': ...}). A
        class-separable method also returns 'class_losses': the per-class (per-group) terms of the
        classes in state.classes, in order; the base then sums them over every rank in class order
        (`sum_in_order`), so a sharded run records the single-process loss."""
        raise NotImplementedError

    def end_iteration(self, state: State, real: RealData, loss: float) -> None:
        """After each iteration, with the loss over ALL classes (e.g. a plateau schedule on it)."""

    def shard_problem(self, real: RealData) -> str | None:
        """Why this configuration cannot be split by class across processes (None: it can)."""
        return None if self.class_separable else not_separable(self.name)

    # ---- shared machinery
    @property
    def view(self):
        return view_for(self.config.flip)

    def init_images(self, real: RealData, state: State, seed: int) -> Tensor:
        kind, ipc = self.config.init, state.ipc
        if kind == "real":
            return torch.cat([real.train.sample_class(c, ipc, make_generator(seed, "init", c))
                              for c in real.class_ids]).clone()
        if kind == "noise":
            return noise_images(real, ipc, seed)
        if kind.startswith("file:"):
            return self._init_from_file(kind[5:], real, ipc)
        raise ConfigError(f"unknown init {kind!r}; use real, noise or file:PATH")

    @staticmethod
    def _init_from_file(path: str, real: RealData, ipc: int) -> Tensor:
        init = SyntheticSet.load(path)
        c, h = init.images.shape[1], init.images.shape[-1]
        if (c, h) != (real.channels, real.image_size):
            raise ConfigError(f"init file {path} has {c}-channel {h}px images; {real.name} has "
                              f"{real.channels}-channel {real.image_size}px")
        if init.dataset != real.name:
            raise ConfigError(f"init file {path} was made from {init.dataset}, not {real.name}")
        expected = class_major_labels(real.num_classes, ipc)
        if len(init.labels) != len(expected) or not torch.equal(init.labels, expected):
            raise ConfigError(f"init file {path} does not hold {ipc} images per class in class order")
        rows = torch.cat([torch.arange(c * ipc, (c + 1) * ipc) for c in real.class_ids])
        return init.images[rows].to(real.train.images.device).clone()

    def _identity(self, real: RealData, ipc: int, seed: int, world: World) -> dict[str, Any]:
        """What must match for a checkpoint to continue this run (how often we save does not)."""
        config = keyed_config(dataclasses.asdict(self.config))
        identity = {"method": self.name, "config": config, "dataset": real.name,
                    "ipc": ipc, "seed": seed, "zca": real.zca is not None}
        if world.sharded:
            identity["shard"] = {"rank": world.rank, "size": world.size, "classes": list(real.class_ids)}
        return identity

    def _save_checkpoint(self, path: Path, state: State, identity: dict[str, Any], keep_previous: bool = False) -> None:
        if keep_previous and path.exists():  # sharded: a rank that dies mid-save leaves the others one ahead
            os.replace(path, previous(path))
        save_torch(path, {
            "identity": identity, "iteration": state.iteration, "elapsed": state.elapsed,
            "images": state.images.detach().cpu(), "optimizer": state.optimizer.state_dict(),
            "extra": {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.extra.items()},
            "losses": list(state.losses),
        })

    def _read_checkpoint(self, path: Path, state: State, identity: dict[str, Any]) -> dict[str, Any]:
        if Path(path).is_dir():
            raise CheckpointError(f"--resume: --checkpoint {path} is a folder; give the checkpoint file "
                                  f"(by default OUT.ckpt, beside the set)")
        try:
            ckpt = torch.load(path, map_location=state.images.device, weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"--resume: no checkpoint at {path}; start without --resume") from None
        except Exception as err:
            raise CheckpointError(f"--resume: checkpoint {path} is unreadable ({type(err).__name__}): not a "
                                  "dsdistill checkpoint, or damaged; start without --resume, or give the right "
                                  "--checkpoint") from None
        problem = checkpoint_problem(ckpt, state)
        if problem:
            raise CheckpointError(f"--resume: checkpoint {path} is not a dsdistill checkpoint of a run like this one "
                                  f"({problem}); start without --resume, or give the right --checkpoint")
        if ckpt.get("identity") != identity:
            diff = [k for k in identity if ckpt.get("identity", {}).get(k) != identity[k]]
            raise CheckpointError(f"--resume: checkpoint {path} belongs to another run (differs in {', '.join(diff)})")
        return ckpt

    def _load_checkpoint(self, path: Path, state: State, identity: dict[str, Any], world: World) -> None:
        read = lambda p: self._read_checkpoint(p, state, identity)  # noqa: E731
        ckpt = read(path) if not world.sharded else common_checkpoint(world, path, read)
        with torch.no_grad():
            state.images.copy_(ckpt["images"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        for key, value in ckpt["extra"].items():
            live = state.extra.get(key)
            if hasattr(live, "load_state_dict"):
                live.load_state_dict(value)
            else:
                state.extra[key] = value
        state.iteration, state.elapsed, state.losses = ckpt["iteration"], ckpt["elapsed"], list(ckpt["losses"])

    def start(self, real: RealData, ipc: int, seed: int = 0, *, budget: Budget | None = None,
              world: World | None = None) -> State:
        """A run's state before its first iteration: setup, budget, images, optimizer, extra (what fit starts
        from; the benchmarks time `step` from it)."""
        state = State(ipc=ipc, classes=real.class_ids, world=world or World())
        self.setup(real, state, seed)
        chosen, _ = choose_budget(self, budget, self.preset_iterations)
        state.budget = self.plan_budget(chosen, state)
        images = self.init_images(real, state, seed).detach().requires_grad_(True)
        state.images, state.optimizer = images, self.make_optimizer(images)
        self.init_extra(real, state, seed)
        return state

    def fit(self, real: RealData, ipc: int, seed: int = 0, *, budget: Budget | None = None,
            checkpoint: str | Path | None = None, resume: bool = False,
            world: World | None = None, snapshot: Callable[[SyntheticSet], None] | None = None) -> SyntheticSet | None:
        """Run to the budget and export. Without a budget: the preset's iterations, else the method's own schedule,
        else DEFAULT_BUDGET (`budget.choose_budget`). At each of the budget's snapshot_minutes of distillation time
        the set as it stands goes to `snapshot` (its distill_seconds and distill_iterations say when; extra
        "snapshot_minutes" names the time asked for); a resumed run skips the times its checkpoint had passed.
        Under torchrun (`world` sharded) `real` holds this rank's classes (`distributed.load_shard`); rank 0 returns
        the whole set, the other ranks None."""
        world = world or World()
        self._check_classes(real, world)
        check_seed(seed)
        check_ipc(real, ipc)
        if self.config.flip and real.digits and world.is_main:
            warnings.warn(f"--flip on {real.name}: digits are not mirror-symmetric, FYI's premise fails there",
                          stacklevel=2)
        state = self.start(real, ipc, seed, budget=budget, world=world)
        budget = state.budget
        identity = self._identity(real, ipc, seed, world)
        ckpt_path = world.checkpoint_path(checkpoint) if checkpoint else None
        if resume:
            if ckpt_path is None:
                raise CheckpointError("--resume needs a checkpoint path")
            self._load_checkpoint(ckpt_path, state, identity, world)
        last_save, saved_at = time.monotonic(), state.iteration if resume else -1
        pending = self._snapshot_plan(budget, snapshot, world, state.elapsed)
        start_elapsed = state.elapsed
        start = time.monotonic()
        total = budget.iterations
        bar = progress(total=total, initial=state.iteration, desc=self.name, unit="it")
        with _StopSignals() as signals:
            while not budget.done(state.iteration, state.elapsed):
                figures = self.step(state, real, state.iteration, seed)
                every = self.config.checkpoint_every
                due = (time.monotonic() - last_save >= 60 * self.config.checkpoint_minutes
                       or (every > 0 and (state.iteration + 1) % every == 0))
                loss, elapsed, due, stop = agree(world, figures.get("class_losses", figures.get("loss", 0.0)),
                                                  start_elapsed + time.monotonic() - start, due, signals.stop)
                if not math.isfinite(loss):
                    where = f"; the last good checkpoint is {ckpt_path}" if ckpt_path and ckpt_path.exists() else ""
                    raise DivergedError(f"{self.name}: the loss became {loss} at iteration {state.iteration}; "
                                        f"stopped{where}. Try a smaller learning rate.")
                self.end_iteration(state, real, loss)
                state.losses.append(loss)
                state.iteration += 1
                state.elapsed = elapsed
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}")
                while pending and state.elapsed >= 60 * pending[0]:
                    taken = self.export(real, state, seed)
                    taken.extra["snapshot_minutes"] = pending.pop(0)
                    snapshot(taken)
                if ckpt_path and (due or stop):
                    self._save_checkpoint(ckpt_path, state, identity, keep_previous=world.sharded)
                    last_save, saved_at = time.monotonic(), state.iteration
                if stop:
                    bar.close()
                    raise Interrupted(f"stopped at iteration {state.iteration}; checkpoint: {ckpt_path}")
        bar.close()
        if ckpt_path and saved_at != state.iteration:
            self._save_checkpoint(ckpt_path, state, identity, keep_previous=world.sharded)
        if not world.sharded:
            return self.export(real, state, seed)
        images = world.gather_rows(self.stored_images(real, state).detach(), "gathering the images on rank 0")
        return self.export(real, state, seed, images) if images is not None else None

    @staticmethod
    def _snapshot_plan(budget: Budget | None, snapshot: Callable | None, world: World, elapsed: float) -> list[float]:
        """The snapshot minutes still ahead of `elapsed` (a resumed run wrote the earlier ones)."""
        minutes = list(budget.snapshot_minutes) if budget is not None else []
        if not minutes:
            return []
        if snapshot is None:
            raise ConfigError("snapshot_minutes needs a snapshot callback (fit(..., snapshot=fn))")
        if world.sharded:
            raise ConfigError("--snapshot-minutes runs in one process: a snapshot would gather every rank's images")
        return [m for m in minutes if 60 * m > elapsed]

    def _check_classes(self, real: RealData, world: World) -> None:
        """One process needs every class; a rank exactly the classes it serves."""
        held, everything = real.class_ids, tuple(range(real.num_classes))
        if not world.sharded:
            if held != everything:
                raise ConfigError(f"the real data holds only classes {list(held)}; a set needs every class: load the "
                                  f"whole dataset (or split the classes across processes with torchrun)")
            return
        problem = self.shard_problem(real)
        if problem:
            raise ConfigError(problem)
        if held != tuple(world.block(real.num_classes)):
            raise ConfigError(f"{world.describe()} serves classes {list(world.block(real.num_classes))} but the real "
                              f"data holds {list(held)}: load it with dsdistill.load_shard")

    def stored_images(self, real: RealData, state: State) -> Tensor:
        """The images as the set file stores them (a method that optimises pixels converts here)."""
        return state.images

    def set_fields(self) -> dict[str, Any]:
        """Extra SyntheticSet fields, e.g. a decoder."""
        return {}

    def export(self, real: RealData, state: State, seed: int, images: Tensor | None = None) -> SyntheticSet:
        """The set; `images` are all classes' stored images when they were gathered from the ranks."""
        images = self.stored_images(real, state) if images is None else images
        synset = new_set(real, images, self.name, self.config, seed,
                         distill_seconds=state.elapsed, distill_iterations=state.iteration, **self.set_fields())
        synset.extra["loss_curve"] = _downsample(state.losses, self.config.log_points)
        return synset


def checkpoint_problem(ckpt: Any, state: State) -> str | None:
    """What makes `ckpt` unusable for `state` (None: nothing), so a foreign or damaged file is one line, never a
    traceback half-way through restoring it."""
    if not isinstance(ckpt, dict):
        return f"it holds a {type(ckpt).__name__}, not a dict"
    missing = [k for k in ("identity", "images", "optimizer", "iteration", "elapsed", "losses", "extra") if k not in ckpt]
    if missing:
        return f"no {', '.join(missing)}"
    images = ckpt["images"]
    if not isinstance(images, Tensor) or images.shape != state.images.shape or images.dtype != state.images.dtype:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        return f"images {shape}, this run has {tuple(state.images.shape)}"
    if not isinstance(ckpt["iteration"], int) or isinstance(ckpt["iteration"], bool) or ckpt["iteration"] < 0:
        return f"iteration {ckpt['iteration']!r} is not a whole number"
    if not isinstance(ckpt["optimizer"], dict) or not isinstance(ckpt["extra"], dict) or \
            not isinstance(ckpt["losses"], (list, tuple)) or not isinstance(ckpt["elapsed"], (int, float)):
        return "optimizer, extra, losses or elapsed of the wrong kind"
    return None


def noise_images(real: RealData, ipc: int, seed: int) -> Tensor:
    """N(0, 1) images, one generator per class (so a rank draws its classes' noise alone)."""
    shape = (ipc, real.channels, real.image_size, real.image_size)
    return torch.cat([torch.randn(shape, generator=make_generator(seed, "init-noise", c))
                      for c in real.class_ids]).to(real.train.images.device)


def _downsample(values: list[float], points: int) -> dict[str, list[float]]:
    """Window means, so a long curve fits in a file attribute."""
    if not values:
        return {"iteration": [], "loss": []}
    window = max(1, math.ceil(len(values) / points))
    its, means = [], []
    for i in range(0, len(values), window):
        chunk = values[i:i + window]
        its.append(i + len(chunk) - 1)
        means.append(sum(chunk) / len(chunk))
    return {"iteration": its, "loss": means}
