"""Evaluator speed: a reference written here that follows the DC evaluator step by step, our loop, and our fast
(compiled) path, on the same random Fashion-MNIST sets and the dc recipe, timed in one run; prints the ratios and
the accuracies side by side.

The reference is DC's utils.evaluate_synset (VICO-UoE/DatasetCondensation), one model at a time: a TensorDataset
and a shuffling DataLoader (batch 256), per-batch DSA of every loaded batch, the loss's .item() and a numpy
accuracy per batch, the SGD re-created at the decay, then the test pass through a DataLoader of 256.

Every (implementation, IPC) cell runs in its own process (its own allocator and compile caches), the cells of a
round interleaved so a change in machine load touches all three alike; each trains one model for --epochs epochs
and takes one test pass. The table projects a full dc evaluation (1000 epochs x 5 models, 5 test passes, the
fast path's compile once) from the measured seconds per epoch and per test pass.

  python benchmarks/eval_speed.py --ipc 1 10 50 --epochs 40 --rounds 2 --out benchmarks/results/eval_speed-cpu.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, run_worker, write_results  # noqa: E402

IMPLS = ("reference", "loop", "fast")
FULL_EPOCHS, FULL_MODELS = 1000, 5


def _set(ipc: int):
    from dsdistill.data import load_dataset
    from dsdistill.synthesizers import create_synthesizer
    real = load_dataset("fashion-mnist", device="cpu")
    return real, create_synthesizer("random").fit(real, ipc, seed=0)


def reference(ipc: int, epochs: int) -> dict:
    """DC's evaluate_synset, written out: its loop, its loaders, its per-batch host syncs."""
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from dsdistill.augment import DSA, DSAConfig, dsa_strategy_for
    from dsdistill.models import create_model
    real, synset = _set(ipc)
    torch.manual_seed(0)
    net = create_model("convnet", 1, 10, 28)
    dsa = DSA(DSAConfig(strategy=dsa_strategy_for(real.digits))).per_sample
    gen = torch.Generator().manual_seed(0)
    lr, decay = 0.01, epochs // 2
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    criterion = nn.CrossEntropyLoss()
    trainloader = DataLoader(TensorDataset(synset.images, synset.labels), batch_size=256, shuffle=True, num_workers=0)
    testloader = DataLoader(TensorDataset(real.test.images, real.test.labels), batch_size=256, shuffle=False,
                            num_workers=0)

    def epoch(mode: str, loader, aug: bool) -> float:
        net.train() if mode == "train" else net.eval()
        loss_avg, acc_avg, num = 0.0, 0.0, 0
        for img, lab in loader:
            if aug:
                img = dsa(img, gen)
            output = net(img)
            loss = criterion(output, lab)
            acc_avg += np.sum(np.equal(np.argmax(output.cpu().data.numpy(), axis=-1), lab.cpu().data.numpy()))
            loss_avg += loss.item() * lab.shape[0]
            num += lab.shape[0]
            if mode == "train":
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return acc_avg / num

    start = time.perf_counter()
    for ep in range(epochs):
        epoch("train", trainloader, aug=True)
        if ep + 1 == decay:
            lr *= 0.1
            optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=0.0005)
    trained = time.perf_counter()
    with torch.no_grad():
        acc = epoch("test", testloader, aug=False)
    return {"train_s": trained - start, "test_s": time.perf_counter() - trained, "accuracy": float(acc),
            "compile_s": 0.0}


def ours(ipc: int, epochs: int, path: str) -> dict:
    """dsdistill's evaluator on one model of dc shortened to `epochs`; the fast path's compile is timed apart
    (the first epoch's extra seconds over the steady ones)."""
    import dataclasses

    from dsdistill.evaluate import evaluate, get_protocol
    real, synset = _set(ipc)
    proto = dataclasses.replace(get_protocol("dc"), name="speed", epochs=epochs, seeds=(0,))
    one = dataclasses.replace(proto, epochs=1)
    start = time.perf_counter()
    first = evaluate(synset, one, data=real, device="cpu", path=path).results[0]   # compiles (fast) and warms up
    first_s = time.perf_counter() - start
    result = evaluate(synset, proto, data=real, device="cpu", path=path).results[0]
    per_epoch = result.train_seconds / epochs
    compile_s = max(0.0, first_s - per_epoch - result.test_seconds) if path == "fast" else 0.0
    return {"train_s": result.train_seconds, "test_s": result.test_seconds, "accuracy": result.accuracies[0],
            "compile_s": compile_s, "first_s": first.train_seconds}


def epoch_gflop(ipc: int) -> float:
    """GFLOP of one training epoch of ConvNet-3 on an IPC set (forward and backward of every batch of 256), as
    torch.utils.flop_counter counts them."""
    import torch

    from dsdistill.models import create_model
    from roofline import flops_of
    net = create_model("convnet", 1, 10, 28)
    x = torch.randn(10 * ipc, 1, 28, 28)
    return sum(flops_of(lambda: net(b).sum().backward()) for b in x.split(256)) / 1e9


def worker(impl: str, ipc: int, epochs: int) -> None:
    from dsdistill._malloc import keep_freed_memory
    keep_freed_memory()
    if impl == "roofline":
        from roofline import conv_peak
        print(json.dumps({"peak": conv_peak()}))
        return
    out = reference(ipc, epochs) if impl == "reference" else ours(ipc, epochs, impl)
    print(json.dumps({**out, "epoch_gflop": epoch_gflop(ipc)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--epochs", type=int, default=40, help="epochs per timed model (dc trains 1000)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every cell (median taken)")
    p.add_argument("--out", default=None, help="markdown file for the results")
    p.add_argument("--worker", nargs=3, metavar=("IMPL", "IPC", "EPOCHS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    peak = run_worker(__file__, ["--worker", "roofline", "0", "0"], "roofline")["peak"]
    print(f"convolution roofline: {peak:.1f} GFLOP/s", flush=True)
    runs: dict[tuple[str, int], list[dict]] = {}
    for r in range(args.rounds):
        for ipc in args.ipc:
            for impl in IMPLS:
                got = run_worker(__file__, ["--worker", impl, str(ipc), str(args.epochs)], f"{impl} IPC {ipc}")
                runs.setdefault((impl, ipc), []).append(got)
                print(f"round {r} IPC {ipc} {impl}: {got}", flush=True)
    rows = ["| IPC | implementation | train s/epoch | GFLOP/s (of roofline) | test pass s | compile s | "
            "projected dc s (1000 ep x 5) | speed-up over the reference | accuracy after the short run (%) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for ipc in args.ipc:
        projected = {}
        for impl in IMPLS:
            got = runs[(impl, ipc)]
            per_epoch = statistics.median(g["train_s"] for g in got) / args.epochs
            test_s = statistics.median(g["test_s"] for g in got)
            compile_s = statistics.median(g["compile_s"] for g in got)
            projected[impl] = FULL_MODELS * (FULL_EPOCHS * per_epoch + test_s) + compile_s
            accs = ", ".join(f"{100 * g['accuracy']:.2f}" for g in got)
            achieved = got[0]["epoch_gflop"] / per_epoch
            rows.append(f"| {ipc} | {impl} | {per_epoch:.4f} | {achieved:.1f} ({100 * achieved / peak:.0f}%) | "
                        f"{test_s:.2f} | {compile_s:.1f} | "
                        f"{projected[impl]:.0f} | {projected['reference'] / projected[impl]:.2f}x | {accs} |")
            print(rows[-1], flush=True)
    write_results(args.out, header("Evaluator speed: DC's evaluator (reference), our loop, our fast path") + [
        f"Convolution roofline measured in this run (benchmarks/roofline.py: 3x3 128->128 conv, forward + backward, "
        f"fp32): {peak:.1f} GFLOP/s. Achieved GFLOP/s counts the training step's FLOPs (torch.utils.flop_counter) "
        "over its seconds, augmentation and data handling included.", "",
        f"One model per cell, dc's recipe shortened to {args.epochs} epochs (lr decay at half), a random Fashion-MNIST "
        f"set of seed 0 per IPC, every cell in its own process, {args.rounds} interleaved rounds (medians; the "
        "accuracies of every round listed). The projection is 5 models x 1000 epochs plus 5 test passes plus one "
        "compile. The reference draws its own data order and augmentation (torch's global RNG), so its accuracy "
        "is another sample of the same recipe; loop and fast train the same model with the same draws.",
        "", *rows])


if __name__ == "__main__":
    main()
