"""MTT's gradient modes against the number of inner steps N: seconds per iteration and peak memory of `unroll`
(full backpropagation, MTT's reference) and `exact-constant-memory` (the same gradient, one step's graph at a time),
measured in one run. Goal: the constant-memory peak grows by at most 20% from N=10 to N=80 while unroll grows
about linearly.

Each cell runs in a fresh subprocess doing real MTT iterations (`mtt` synthesizer, Fashion-MNIST) so its memory is
its own. On the CPU the figure is the growth of the resident set over the iterations (warm-up included): the
kernel's peak (VmHWM) is reset after set-up (/proc/self/clear_refs) and the resident size at that moment
subtracted, so the data set and the interpreter are not counted; the whole-process peak is printed too. On a GPU it is
torch.cuda.max_memory_allocated after a reset. Experts: a throwaway folder (1 expert, 1 short epoch) unless
--experts is given; the cost of an iteration does not depend on how well the expert was trained.

  python benchmarks/trajectory_memory.py --steps 10 20 40 80 --ipc 1 --out benchmarks/results/trajectory-memory-cpu.md
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, peak_mib, run_worker, status_mib, write_results  # noqa: E402
from dsdistill._provenance import reset_peak_memory  # noqa: E402

MODES = ("unroll", "exact-constant-memory")


def worker(mode: str, steps: int, ipc: int, iterations: int, experts: str, device: str, dataset: str,
           segment: int) -> dict:
    import torch
    from dsdistill.data import load_dataset
    from dsdistill.synthesizers import create_synthesizer
    real = load_dataset(dataset, device=device)
    # the step size is not learned here (lr_lr 0): the throwaway expert barely moves, so its normalised distance
    # has a huge lr gradient; the cost of an iteration is the same either way
    method = create_synthesizer("mtt", experts=experts, syn_steps=steps, gradient=mode, expert_epochs=1,
                                max_start_epoch=1, segment=segment, lr_lr=0.0)
    state = method.start(real, ipc, 0)
    # the baseline: data, experts, images; everything after is the iterations' (on the CPU the reset sets VmHWM
    # to the current resident size)
    reset_peak_memory(device)
    base = torch.cuda.memory_allocated() / 2 ** 20 if device.startswith("cuda") else status_mib("VmRSS")
    method.step(state, real, 0, 0)  # warm-up (allocator, kernels); its memory counts, its time does not
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        method.step(state, real, it, 0)
    peak = peak_mib(device)
    return {"seconds": (time.perf_counter() - start) / iterations, "extra_mib": peak - base, "peak_mib": peak}


def torch_threads() -> int:
    import torch
    return torch.get_num_threads()


def make_experts(folder: str, dataset: str, width: int) -> None:
    from dsdistill.data import load_dataset
    from dsdistill.teachers.experts import ExpertConfig, build_experts
    build_experts(load_dataset(dataset), folder, experts=1, epochs=1, model_options={"width": width},
                  config=ExpertConfig(images_per_epoch=512))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40, 80], help="inner steps N")
    p.add_argument("--ipc", type=int, nargs="+", default=[1])
    p.add_argument("--iterations", type=int, default=2, help="timed iterations per cell (after one warm-up)")
    p.add_argument("--width", type=int, default=32, help="ConvNet width of the throwaway experts (default 32, as "
                                                         "the CPU default of `dsdistill experts`)")
    p.add_argument("--experts", default=None, help="an expert folder to use instead of a throwaway one")
    p.add_argument("--segment", type=int, default=0, help="exact-constant-memory: keep every k-th snapshot")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=4, metavar=("MODE", "N", "IPC", "EXPERTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        mode, n, ipc, experts = args.worker
        print(json.dumps(worker(mode, int(n), int(ipc), args.iterations, experts, args.device, args.dataset,
                                args.segment)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        experts = args.experts
        if experts is None:
            experts = str(Path(tmp) / "experts")
            make_experts(experts, args.dataset, args.width)
        rows = ["| IPC | mode | N | s/it | MiB above set-up (peak) | x its N=%d | whole-process peak MiB |"
                % args.steps[0], "|---|---|---|---|---|---|---|"]
        growth = []
        for ipc in args.ipc:
            for mode in MODES:
                first = None
                for n in args.steps:
                    got = run_worker(__file__, ["--worker", mode, str(n), str(ipc), experts, "--iterations",
                                                str(args.iterations), "--device", args.device, "--dataset",
                                                args.dataset, "--segment", str(args.segment)],
                                     f"{mode} N={n} IPC {ipc}")
                    first = first or got
                    rows.append(f"| {ipc} | {mode} | {n} | {got['seconds']:.3f} | {got['extra_mib']:.1f} | "
                                f"{got['extra_mib'] / max(first['extra_mib'], 1e-9):.2f}x | {got['peak_mib']:.0f} |")
                    print(rows[-1], flush=True)
                    last = got
                growth.append(f"IPC {ipc}, {mode}: N {args.steps[0]} -> {args.steps[-1]} ({args.steps[-1] / args.steps[0]:.0f}x"
                              f" steps): memory above set-up x{last['extra_mib'] / max(first['extra_mib'], 1e-9):.2f}, "
                              f"whole-process peak x{last['peak_mib'] / first['peak_mib']:.2f}, "
                              f"time per iteration x{last['seconds'] / first['seconds']:.2f}")
    mem = ("peak GPU memory allocated above the allocation before the timed iterations" if args.device.startswith("cuda")
           else "peak resident set above the set-up's (VmHWM reset after set-up, minus VmRSS then; warm-up included)")
    write_results(args.out, header(f"MTT gradient modes: cost against the inner steps N on {args.dataset}", args.device) + [
        f"{args.iterations} timed iterations of the `mtt` synthesizer after one warm-up, each cell in a fresh process; "
        f"{torch_threads()} torch thread(s); ConvNet width {args.width if args.experts is None else '(the given experts)'}, full synthetic batch, "
        f"expert_epochs 1, segment {args.segment}. Memory: {mem}.", "", *rows, "", *[f"- {g}" for g in growth]])


if __name__ == "__main__":
    main()
