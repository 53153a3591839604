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
    rows = ["| IPC | models | loop train s/epoch | vmap train s/epoch | train speed-up (loop / vmap) | "
            "loop test s | vmap test s | max accuracy difference |", "|---|---|---|---|---|---|---|---|"]
    for ipc in args.ipc:
        synset = create_synthesizer("random").fit(real, ipc, seed=0)
        train, test, accs = {}, {}, {}
        for path in ("loop", "vmap"):
            result = evaluate(synset, proto, data=real, device=args.device, path=path).results[0]
            train[path] = result.train_seconds / args.epochs
            test[path] = result.test_seconds
            accs[path] = result.accuracies
        diff = max(abs(a - b) for a, b in zip(accs["loop"], accs["vmap"]))
        rows.append(f"| {ipc} | {proto.num_models} | {train['loop']:.3f} | {train['vmap']:.3f} | "
                    f"{train['loop'] / train['vmap']:.2f}x | {test['loop']:.1f} | {test['vmap']:.1f} | {100 * diff:.2f} pts |")
        print(rows[-1], flush=True)
    write_results(args.out, header("Evaluator: vectorised (vmap) vs loop", args.device) + [
        f"Protocol {proto.name} shortened to {args.epochs} epochs, random Fashion-MNIST sets (seed 0). Training "
        "seconds per epoch are for all models together (model creation included); the test columns are the one "
        "pass over the 10,000 test images after the last epoch. Both "
        "paths train the same models with the same seeds; the last column compares their final accuracies.",
        "", *rows])


if __name__ == "__main__":
    main()
