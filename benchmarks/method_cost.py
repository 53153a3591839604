"""Seconds per iteration and peak memory of several synthesizers, measured in one run on the same data,
with ratios to the first method listed (the reference, e.g. DM).

Each cell runs in a fresh subprocess, so its peak memory (VmHWM on the CPU, torch.cuda.max_memory_allocated
on a GPU) is its own. A cell is METHOD[.preset][+key=value...], as in accuracy.py.

  python benchmarks/method_cost.py --specs dm.fmnist-cpu ncfm.fmnist-cpu+pool=DIR \\
      ncfm.fmnist-cpu+pool=DIR+sampler=learned --ipc 1 10 --out benchmarks/results/ncfm-cost-cpu.md
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, method_from_spec, peak_mib, run_worker, write_results  # noqa: E402
from dsdistill._provenance import reset_peak_memory  # noqa: E402


def worker(spec: str, ipc: int, iterations: int, device: str, dataset: str) -> dict:
    """One warm-up step, then `iterations` timed steps of the method's own loop body."""
    import torch
    from dsdistill.data import load_dataset
    real = load_dataset(dataset, device=device)
    method = method_from_spec(spec).method
    state = method.start(real, ipc, 0)
    method.step(state, real, 0, 0)
    if device.startswith("cuda"):  # on the CPU the peak stays the whole process's (VmHWM)
        reset_peak_memory(device)
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        method.step(state, real, it, 0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"seconds": (time.perf_counter() - start) / iterations, "peak_mib": peak_mib(device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", nargs="+", required=True, help="METHOD[.preset][+key=value...]; the first is the reference")
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--iterations", type=int, default=3, help="timed iterations per cell (after one warm-up)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=2, metavar=("SPEC", "IPC"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.iterations, args.device, args.dataset)))
        return
    rows = ["| method | IPC | s/it | x reference time | peak MiB | x reference memory |", "|---|---|---|---|---|---|"]
    for ipc in args.ipc:
        reference = None
        for spec in args.specs:
            got = run_worker(__file__, ["--specs", spec, "--worker", spec, str(ipc), "--iterations",
                                        str(args.iterations), "--device", args.device, "--dataset", args.dataset],
                             f"{spec} IPC {ipc}")
            reference = reference or got
            rows.append(f"| {spec} | {ipc} | {got['seconds']:.3f} | {got['seconds'] / reference['seconds']:.2f}x | "
                        f"{got['peak_mib']:.0f} | {got['peak_mib'] / reference['peak_mib']:.2f}x |")
            print(rows[-1], flush=True)
    mem = "peak GPU memory allocated" if args.device.startswith("cuda") else "peak resident memory (VmHWM, whole process)"
    write_results(args.out, header(f"Synthesizer cost per iteration on {args.dataset}", args.device) + [
        f"{args.iterations} timed iterations after one warm-up, each cell in a fresh process; memory is the {mem}. "
        f"Ratios are to the first method ({args.specs[0]}) at the same IPC.", "", *rows])


if __name__ == "__main__":
    main()
