"""Distribution-matching speed and memory: dsdistill's DM/DataDAM step (per-class and joint class
batching, and per-class with `compile=true`: the feature passes compiled by torch.compile) against a straightforward
per-class-loop implementation kept here as the reference (one forward per class, as DM's official
non-BN branch does), timed in the same run on the same data; prints the ratios, the losses (every implementation
reaches the reference's loss after the same steps: checked) and the achieved GFLOP/s as a fraction of the
machine's convolution roofline (benchmarks/roofline.py), measured in the same run.

Each measurement runs in a fresh subprocess so that its peak memory (VmHWM on the CPU,
torch.cuda.max_memory_allocated on a GPU) is its own.

  python benchmarks/synth_speed.py --ipc 1 10 50 --iterations 3 --out benchmarks/results/synth_speed-cpu.md
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, peak_mib, run_worker, write_results  # noqa: E402
from dsdistill._provenance import reset_peak_memory  # noqa: E402


def reference_step(method, state, real, it, seed) -> float:
    """The plain per-class loop: per class, augment, embed real and synthetic, add the loss; one step."""
    import torch
    import torch.nn.functional as F
    from dsdistill._seed import make_generator
    cfg = method.config
    net = method.random_network(real, seed, it)
    dsa = method.dsa(real)
    state.optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for c in range(real.num_classes):
        r = real.train.sample_class(c, cfg.batch_real, make_generator(seed, "real", c, it))
        s = method.view(state.class_slice(c))
        r, s = dsa.siamese(r, s, generator=make_generator(seed, "dsa", c, it))
        with torch.no_grad():
            r_maps, r_emb = net.features_and_embed(r)
        s_maps, s_emb = net.features_and_embed(s)
        loss = ((r_emb.mean(0) - s_emb.mean(0)) ** 2).sum()
        if method.name == "datadam":
            sam = 0.0
            for rm, sm in zip(r_maps[:-1], s_maps[:-1]):
                ra = F.normalize(rm.abs().pow(cfg.power).sum(1).flatten(1), dim=1).mean(0)
                sa = F.normalize(sm.abs().pow(cfg.power).sum(1).flatten(1), dim=1).mean(0)
                sam = sam + ((ra - sa) ** 2).sum()
            loss = cfg.loss_scale * (sam + cfg.task_balance * loss)
        loss.backward()
        total += loss.item()
    state.optimizer.step()
    return total


def worker(method_name: str, ipc: int, impl: str, iterations: int, device: str) -> dict:
    import torch
    from dsdistill.data import load_dataset
    from dsdistill.synthesizers import create_synthesizer
    real = load_dataset("fashion-mnist", device=device)
    method = create_synthesizer(method_name)
    state = method.start(real, ipc, 0)
    if impl == "reference":
        step = lambda it: reference_step(method, state, real, it, 0)  # noqa: E731
    else:  # dsdistill's step: IMPLS[impl] are its options
        method = create_synthesizer(method_name, **IMPLS[impl])
        step = lambda it: method.step(state, real, it, 0)["loss"]  # noqa: E731
    if impl == "reference":   # the step's FLOPs (the same math in every implementation), counted once, untimed
        from roofline import flops_of
        gflop = flops_of(lambda: step(0)) / 1e9
        state = method.start(real, ipc, 0)
    step(0)  # warm-up (and the compile)
    if device.startswith("cuda"):  # on the CPU the peak stays the whole process's (VmHWM)
        reset_peak_memory(device)
    t0 = time.perf_counter()
    losses = [step(it) for it in range(1, iterations + 1)]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    out = {"seconds": (time.perf_counter() - t0) / iterations, "peak_mib": peak_mib(device), "loss": losses[-1]}
    return {**out, "gflop": gflop} if impl == "reference" else out


# dsdistill's implementations and the options that make each
IMPLS = {"per-class": {"class_batching": "per-class"}, "joint": {"class_batching": "joint"},
         "compiled": {"class_batching": "per-class", "compile": True}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["dm", "datadam"])
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--iterations", type=int, default=3, help="timed iterations per measurement (after 1 warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "IPC", "IMPL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        m, ipc, impl = args.worker
        print(json.dumps(worker(m, int(ipc), impl, args.iterations, args.device)))
        return
    mem = "peak GPU memory allocated" if args.device.startswith("cuda") else "peak resident memory (VmHWM)"
    peak = None
    if not args.device.startswith("cuda"):
        peak = run_worker(str(Path(__file__).parent / "eval_speed.py"), ["--worker", "roofline", "0", "0"],
                          "roofline")["peak"]
    ours = list(IMPLS)
    rows = ["| method | IPC | reference s/it | " + " | ".join(f"{i} s/it" for i in ours) + " | "
            + " | ".join(f"speed-up {i}" for i in ours) + " | GFLOP/s reference / best (of roofline) | "
            "loss after the steps | reference MiB | " + " | ".join(f"{i} MiB" for i in ours) + " |",
            "|" + "---|" * (6 + 3 * len(ours))]
    for method in args.methods:
        for ipc in args.ipc:
            got = {}
            for impl in ("reference", *ours):
                got[impl] = run_worker(__file__, ["--worker", method, str(ipc), impl, "--iterations",
                                                  str(args.iterations), "--device", args.device],
                                       f"{method} IPC {ipc} {impl}")
            r = got["reference"]
            for impl in ours:  # the same function: the same loss after the same steps
                assert abs(r["loss"] - got[impl]["loss"]) <= 1e-3 * max(1.0, abs(r["loss"])), (r, got[impl])
            best = min(got[i]["seconds"] for i in ours)
            rate = lambda sec: r["gflop"] / sec  # noqa: E731
            roof = f"{rate(r['seconds']):.0f} / {rate(best):.0f}" + (
                f" ({100 * rate(r['seconds']) / peak:.0f}% / {100 * rate(best) / peak:.0f}%)" if peak else "")
            rows.append(f"| {method} | {ipc} | {r['seconds']:.2f} | "
                        + " | ".join(f"{got[i]['seconds']:.2f}" for i in ours) + " | "
                        + " | ".join(f"{r['seconds'] / got[i]['seconds']:.2f}x" for i in ours)
                        + f" | {roof} | {r['loss']:.4g} | {r['peak_mib']:.0f} | "
                        + " | ".join(f"{got[i]['peak_mib']:.0f}" for i in ours) + " |")
            print(rows[-1], flush=True)
    write_results(args.out, header("DM / DataDAM step: dsdistill vs a per-class-loop reference", args.device) + [
        f"Fashion-MNIST, default configs (paper values: 256 real images per class, ConvNet-3 instance norm), "
        f"{args.iterations} timed iterations after one warm-up (the compiled cell compiles in its warm-up); memory "
        f"is the {mem} of a fresh process per cell. Every implementation reaches the reference's loss after the "
        "same steps (checked to 1e-3 relative). per-class and joint are dsdistill's DM step with `class_batching` "
        "set; compiled is per-class with `--set compile=true`. "
        + (f"Convolution roofline measured in this run: {peak:.1f} GFLOP/s (fp32)." if peak else ""), "", *rows])


if __name__ == "__main__":
    main()
