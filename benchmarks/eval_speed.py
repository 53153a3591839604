"""Evaluator speed: the vectorised N-model path (torch.func vmap) against the plain loop, timed in
the same run on the same set, protocol and seeds; prints seconds per epoch and the ratio, and
checks that both paths give the same accuracies.

  python benchmarks/eval_speed.py --ipc 1 10 50 --epochs 20 --out benchmarks/results/eval_speed-cpu.md
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, write_results  # noqa: E402

from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.evaluate import evaluate, get_protocol  # noqa: E402
from dsdistill.synthesizers import create_synthesizer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--epochs", type=int, default=20, help="epochs per timing (the dc protocol runs 1000)")
    p.add_argument("--protocol", default="dc")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="markdown file for the results")
    args = p.parse_args()
    real = load_dataset("fashion-mnist", device=args.device)
    proto = dataclasses.replace(get_protocol(args.protocol), epochs=args.epochs)
    rows = ["| IPC | models | loop s/epoch | vmap s/epoch | speed-up (loop / vmap) | max accuracy difference |",
            "|---|---|---|---|---|---|"]
    for ipc in args.ipc:
        synset = create_synthesizer("random").fit(real, ipc, seed=0)
        times, accs = {}, {}
        for path in ("loop", "vmap"):
            t0 = time.perf_counter()
            rep = evaluate(synset, proto, data=real, device=args.device, path=path)
            times[path] = (time.perf_counter() - t0) / args.epochs
            accs[path] = rep.results[0].accuracies
        diff = max(abs(a - b) for a, b in zip(accs["loop"], accs["vmap"]))
        rows.append(f"| {ipc} | {proto.num_models} | {times['loop']:.3f} | {times['vmap']:.3f} | "
                    f"{times['loop'] / times['vmap']:.2f}x | {100 * diff:.2f} pts |")
        print(rows[-1], flush=True)
    write_results(args.out, header("Evaluator: vectorised (vmap) vs loop", args.device) + [
        f"Protocol {proto.name} shortened to {args.epochs} epochs (time per epoch includes the final test pass "
        "amortised over the epochs), random Fashion-MNIST sets. Both paths train the same models with the "
        "same seeds; the last column compares their final accuracies.", "", *rows])


if __name__ == "__main__":
    main()
