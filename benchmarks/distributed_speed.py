"""One distillation with 1 and with P gloo processes (torchrun, CPU) on this machine, timed in the same
run, with the ratio; and the per-class cost behind an ImageNet-1K projection.

  python benchmarks/distributed_speed.py --processes 2 --method dm.fmnist-cpu --ipc 10 --iterations 20 \\
      --project 64:4 224:5 --out benchmarks/results/distributed-cpu.md

Each run is `dsdistill distill` in a fresh process tree: `python -m dsdistill` for 1 process, `torchrun
--standalone --nproc_per_node P -m dsdistill` for P. Threads: the baseline single process uses torch's default
(every core); under torchrun dsdistill gives each CPU rank cores // P threads (torchrun alone would give 1), so
the runs never oversubscribe the cores. One more single process runs with cores // P threads: a sharded set is
byte-identical to the one-process set made with as many threads per process (the thread count changes the
reduction order of CPU kernels), and the table checks it. Reported per run: the distillation loop's seconds (the set's
distill_seconds: under torchrun the slowest rank's), the whole command's wall seconds (start-up, data loading,
the gather and the write included), the peak resident memory of the largest process of the tree, and whether
the set is byte-identical to the 1-process set (payload sha256).

--project SIZE:DEPTH times the method's step for ONE class at SIZE px, 3 channels, ConvNet-DEPTH (random
pixels: the cost does not depend on them), and also scales the Fashion-MNIST run's per-class cost by the ratio
of 3x3-convolution multiply-adds, and projects ImageNet-1K (1000 classes, about 1281 training
images per class) from it: per-iteration time with P ranks = ceil(1000 / P) x the per-class time, and memory
per rank = that many classes of real data as dsdistill keeps it (float32 in memory) + the measured step peak.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, header, method_from_spec, run_worker, status_mib, write_results  # noqa: E402

IMAGENET_CLASSES = 1000
IMAGENET_PER_CLASS = 1281  # 1,281,167 training images / 1000 classes


def measure(command: list[str]) -> dict:
    """Run `command` in this (fresh) process's child; wall seconds and the largest process's peak RSS."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux; max over the tree
    return {"wall": wall, "peak_mib": peak}


def distill_run(processes: int, threads: int, args: argparse.Namespace, folder: Path) -> dict:
    out = folder / f"p{processes}-t{threads}.h5"
    launcher = ([sys.executable, "-m", "dsdistill"] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                 "-m", "dsdistill"])
    command = [*launcher, "distill", "--method", args.method, "--ipc", str(args.ipc), "--iterations",
               str(args.iterations), "--seed", "0", "--out", str(out), "--device", "cpu", "--quiet",
               *(["--data-root", args.data_root] if args.data_root else []),
               *[x for kv in args.set for x in ("--set", kv)]]
    # a fresh interpreter per run, so RUSAGE_CHILDREN covers this run's process tree only
    threads_env = {"OMP_NUM_THREADS": str(threads)} if processes == 1 else {"DSDISTILL_THREADS": str(threads)}
    result = run_worker(__file__, ["--measure", json.dumps(command)], f"{processes} process(es) x {threads} thread(s)",
                        env={**os.environ, "PYTHONPATH": str(ROOT.parent), **threads_env})
    from dsdistill.synset import SyntheticSet
    synset = SyntheticSet.load(out)
    result.update(loop=synset.distill_seconds, sha=synset.payload_sha256(), classes=synset.num_classes)
    return result


def conv_macs(channels: int, size: int, depth: int, width: int = 128) -> int:
    """Multiply-adds of ConvNet-depth's 3x3 convolutions for one image (each block: conv at its input
    resolution, then a 2x2 pool), the part of the cost that grows with resolution and depth."""
    macs, c_in = 0, channels
    for _ in range(depth):
        macs += size * size * c_in * width * 9
        c_in, size = width, size // 2
    return macs


def project_worker(spec: str, overrides: list[str], size: int, depth: int, ipc: int, iterations: int) -> dict:
    """Seconds of one class's share of an iteration at SIZE px / ConvNet-DEPTH, and the step's peak memory."""
    import torch
    from dsdistill.data import RealData, Split
    method = method_from_spec(spec, [*overrides, f"depth={depth}"]).method
    n = max(method.config.batch_real, ipc)
    gen = torch.Generator().manual_seed(0)
    train = Split.from_tensors(torch.randn(n, 3, size, size, generator=gen), torch.zeros(n, dtype=torch.int64),
                               IMAGENET_CLASSES)
    real = RealData(name="imagenet-1k (random pixels)", train=train, test=train,
                    class_names=[str(c) for c in range(IMAGENET_CLASSES)], mean=(0.485, 0.456, 0.406),
                    std=(0.229, 0.224, 0.225), digits=False, classes=(0,))
    state = method.start(real, ipc, 0)
    method.step(state, real, 0, 0)  # warm-up
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        method.step(state, real, it, 0)
    seconds = (time.perf_counter() - start) / iterations
    return {"seconds": seconds, "peak_mib": status_mib("VmHWM"), "batch_real": method.config.batch_real,
            "width": method.config.width}


def projection(args: argparse.Namespace, preset_iterations: int | None, measured: dict) -> list[str]:
    """measured: the 1-process Fashion-MNIST run (its per-class cost is scaled by conv multiply-adds)."""
    fmnist_class_s = measured["loop"] / args.iterations / measured["classes"]
    fmnist_macs = conv_macs(1, 28, 3, method_from_spec(args.method, args.set).method.config.width)
    rows = ["| size | ConvNet depth | s per class-iteration, measured | scaled from Fashion-MNIST (MAC ratio) "
            "| step peak MiB | real data per class (float32) | ranks | classes per rank | s per iteration "
            "| hours for the run | memory per rank |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    total_iterations = preset_iterations or 20000
    for item in args.project:
        size, depth = (int(x) for x in item.split(":"))
        got = run_worker(__file__, ["--project-worker", str(size), str(depth), "--method", args.method, "--ipc",
                                    str(args.ipc), "--project-iterations", str(args.project_iterations),
                                    *[x for kv in args.set for x in ("--set", kv)]],
                         f"projection {size} px, depth {depth}")
        per_class_gib = IMAGENET_PER_CLASS * 3 * size * size * 4 / 2 ** 30
        for ranks in args.project_ranks:
            classes = math.ceil(IMAGENET_CLASSES / ranks)
            per_it = classes * got["seconds"]
            memory = classes * per_class_gib + got["peak_mib"] / 1024
            ratio = conv_macs(3, size, depth, got["width"]) / fmnist_macs
            rows.append(f"| {size} | {depth} | {got['seconds']:.3f} | {fmnist_class_s * ratio:.3f} ({ratio:.3g}x) "
                        f"| {got['peak_mib']:.0f} | {per_class_gib:.2f} GiB "
                        f"| {ranks} | {classes} | {per_it:.1f} | {per_it * total_iterations / 3600:.1f} "
                        f"| {memory:.1f} GiB |")
            print(rows[-1], flush=True)
    return [f"ImageNet-1K at IPC {args.ipc}, projected from one class's step measured here ({args.method}, "
            f"{got['batch_real']} real images per class, width {got['width']}, {args.project_iterations} timed steps "
            f"after a warm-up), and scaled from the 1-process Fashion-MNIST run above ({fmnist_class_s:.3f} s per "
            f"class-iteration at 28 px, ConvNet-3) by the ratio of 3x3-convolution multiply-adds; "
            f"{total_iterations} iterations "
            f"({'the preset' if preset_iterations else 'DM paper'}). Time assumes every rank as fast as this "
            "machine's cores and no cost for the per-iteration exchange (a few floats per class); memory assumes "
            "the whole per-class train split in float32, as dsdistill's loader keeps it.", "", *rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", default=[2], help="process counts besides 1 (default: 2)")
    p.add_argument("--method", default="dm.fmnist-cpu", help="METHOD[.preset] (default: dm.fmnist-cpu)")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method override (repeatable)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--project", nargs="*", default=[], metavar="SIZE:DEPTH",
                   help="ImageNet-1K projection points, e.g. 64:4 224:5 (none: skip)")
    p.add_argument("--project-iterations", type=int, default=2)
    p.add_argument("--project-ranks", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--out", default=None)
    p.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    p.add_argument("--project-worker", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    if args.project_worker:
        print(json.dumps(project_worker(args.method, args.set, *args.project_worker, args.ipc,
                                        args.project_iterations)))
        return
    preset_iterations = method_from_spec(args.method, args.set).method.preset_iterations
    rows = ["| processes | threads per process | loop s | loop speed-up | command wall s | wall speed-up "
            "| peak MiB (largest process) | same set as 1 process with as many threads |",
            "|---|---|---|---|---|---|---|---|"]
    cores = len(os.sched_getaffinity(0))
    # 1 process with every core (the baseline), then, per P, 1 process and P processes with cores // P threads
    # each: the pair whose sets must be byte-identical (the thread count changes CPU reduction order)
    cells = [(1, cores)] + [cell for n in args.processes if n > 1
                            for cell in ((1, max(1, cores // n)), (n, max(1, cores // n)))]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {cell: distill_run(*cell, args, Path(tmp)) for cell in dict.fromkeys(cells)}
    base = runs[(1, cores)]
    for (n, threads), r in runs.items():
        same = "yes" if r["sha"] == runs[(1, threads)]["sha"] else "NO"
        rows.append(f"| {n} | {threads} | {r['loop']:.1f} | {base['loop'] / r['loop']:.2f}x | {r['wall']:.1f} | "
                    f"{base['wall'] / r['wall']:.2f}x | {r['peak_mib']:.0f} | {same} |")
        print(rows[-1], flush=True)
    lines = header(f"Distillation with 1 and {', '.join(map(str, args.processes))} gloo processes (torchrun, CPU)")
    lines += [f"`dsdistill distill --method {args.method} --ipc {args.ipc} --iterations {args.iterations}` on "
              f"{'Fashion-MNIST' if not args.data_root else args.data_root} ({base['classes']} classes split in "
              "contiguous blocks), speed-ups against the first row (one process, every core).", "", *rows, ""]
    if args.project:
        lines += projection(args, preset_iterations, runs[(1, cores)])
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
