"""Do sets transfer across the evaluator's width? Score sets under a registered protocol with the ConvNet's width
changed (everything else, seeds included, as the protocol says), beside the protocol itself, in one run.

  python benchmarks/width_probe.py --protocol dc --widths 32 --out benchmarks/results/fmnist-mtt-cpu/width.md \\
      benchmarks/results/fmnist-mtt-cpu/sets/mtt.fmnist-cpu-ipc1-seed0.h5 \\
      benchmarks/results/fmnist-random-baselines/sets/random-ipc1-seed0.h5

A diagnostic, not a leaderboard protocol: trajectory matching distils against experts of one architecture (the CPU
experts are width-32 ConvNets) while `dc` trains width-128 ConvNets, and a set that helps its own architecture but
not another one points at the architecture, not the images' quality. Final-epoch accuracy, listed seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, write_results  # noqa: E402

from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.evaluate import evaluate, get_protocol  # noqa: E402
from dsdistill.synset import SyntheticSet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sets", nargs="+", help="set files (.h5)")
    p.add_argument("--protocol", default="dc")
    p.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    base = get_protocol(args.protocol)
    rows = []
    for path in args.sets:
        synset = SyntheticSet.load(path)
        real = load_dataset(synset.dataset)
        for width in args.widths:
            options = dict(base.model_options)
            options["width"] = width
            protocol = dataclasses.replace(base, name=f"{base.name}-width{width}",
                                           model_options=tuple(sorted(options.items())))
            result = evaluate(synset, protocol, data=real).results[0]
            rows.append(f"| {Path(path).name} | {width} | {100 * result.mean:.2f} ± {100 * result.std:.2f} | "
                        f"{', '.join(f'{100 * a:.2f}' for a in result.accuracies)} |")
            print(rows[-1], flush=True)
    lines = header(f"Width transfer under {base.name} (v{base.version}) with the ConvNet width changed")
    lines += [f"Protocol {base.name} #{base.hash} with only `width` replaced; seeds {list(base.seeds)}; final epoch.", "",
              "| set | evaluator width | mean ± std (%) | per model (%) |", "|---|---|---|---|", *rows]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
