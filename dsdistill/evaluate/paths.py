"""`--path auto`: which training path an evaluation takes, chosen from measurement on the machine it runs on.

On CUDA: vmap for models without batch norm (one stream of launches for the N models), else the loop. On the CPU
the vectorised path lost to the loop (0.64-0.96x, benchmarks/results/eval_speed-cpu.md), and the compiled path
(`fast`) wins only where its compile time (15-40 s cold, 1-2 s with inductor's cache warm) is paid back. So auto
times a few training steps of each path on this set's batch shape, once per machine, architecture, batch shape and
precision (the timings are cached: $DSDISTILL_CACHE/paths.json), and takes `fast` when the run is long enough
that it finishes sooner, compile included. A short run (tests, smoke scores) never compiles. The cached timings
make the choice stable on a machine, so a rerun takes the same path and gives the same bytes.
"""
from __future__ import annotations

import json
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._io import atomic_path
from .._provenance import hardware
from .cache import cache_dir
from .engine import Engine
from .trainer import TrainSpec

SHORT_RUN_SECONDS = 120.0   # ours: a run the loop finishes in this time never compiles (compile costs 15-40 s)
PROBE_STEPS = 3             # timed steps per path, after one untimed step (the fast path's compile)


def choose_path(device: torch.device, batch_norm: bool, factory: Callable[[], nn.Module], images: Tensor,
                labels: Tensor, spec: TrainSpec, models: int) -> tuple[str, str]:
    """(path, why) for `--path auto`; why is "" where there was nothing to measure."""
    if device.type == "cuda":
        return ("loop" if batch_norm else "vmap"), ""
    batch = images[:spec.batch_size], labels[:spec.batch_size]
    steps = spec.epochs * math.ceil(len(images) / spec.batch_size) * models
    model = factory()   # its class and size name the timings: a narrow ConvNet must not reuse a wide one's
    size = sum(p.numel() for p in model.parameters())
    key = (f"{hardware(features=True)} | {type(model).__name__} {size} params | {tuple(batch[0].shape)} | "
           f"{spec.precision}")
    timings = _cached(key)
    if timings is None:
        loop_step = _step_seconds(factory, batch, Engine(spec.precision))[1]
        if loop_step * steps < SHORT_RUN_SECONDS:   # not cached: a longer run measures the fast path too
            return "loop", ""   # a short run: not worth compiling
        compile_s, fast_step = _step_seconds(factory, batch, Engine(spec.precision, compiled=True))
        timings = {"loop_step": loop_step, "fast_step": fast_step, "fast_compile": compile_s}
        _store(key, timings)
    loop_total = timings["loop_step"] * steps
    fast_total = timings["fast_step"] * steps + timings["fast_compile"]
    path = "fast" if fast_total < loop_total else "loop"
    return path, (f"auto: {path} (measured on this machine: loop {1e3 * timings['loop_step']:.1f} ms/step, fast "
                  f"{1e3 * timings['fast_step']:.1f} ms/step + {timings['fast_compile']:.0f} s compile, {steps} steps)")


def _step_seconds(factory: Callable[[], nn.Module], batch: tuple[Tensor, Tensor],
                  engine: Engine) -> tuple[float, float]:
    """(first step's seconds, mean seconds of the next PROBE_STEPS) of SGD on a throwaway model."""
    model = factory().to(batch[0].device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = engine.forward(model)
    times = []
    for _ in range(PROBE_STEPS + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with engine.autocast(batch[0].device):
            loss = F.cross_entropy(forward(batch[0]), batch[1])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return times[0], sum(times[1:]) / PROBE_STEPS


def _file():
    return cache_dir() / "paths.json"


def _cached(key: str) -> dict | None:
    try:
        return json.loads(_file().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _store(key: str, timings: dict) -> None:
    try:
        known = json.loads(_file().read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known[key] = timings
    try:
        _file().parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(_file()) as tmp:
            tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    except OSError:
        pass   # a read-only cache only costs the measurement next time
