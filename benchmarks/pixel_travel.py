"""How far a synthesizer moved its images from its own initialisation, in [0, 1] pixel units.

A distillation-side diagnostic (no test data): it tells an under-converged run (images barely moved within
the budget) from a loss that moves them but to no use. The initialisation is rebuilt from the set's own
method config and seed, so it is exactly what the run started from.

  python benchmarks/pixel_travel.py benchmarks/results/*/sets/*ipc1-seed0.h5 --out benchmarks/results/x.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, write_results  # noqa: E402

from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.synset import SyntheticSet  # noqa: E402
from dsdistill.synthesizers import create_synthesizer  # noqa: E402
from dsdistill.synthesizers.base import stored_config  # noqa: E402
from dsdistill.synthesizers.registry import SYNTHESIZERS  # noqa: E402


def travel(path: str, real_cache: dict) -> str:
    synset = SyntheticSet.load(path)
    real = real_cache.setdefault(synset.dataset, load_dataset(synset.dataset, device="cpu"))
    cls = SYNTHESIZERS.get(synset.method)
    method = create_synthesizer(synset.method, **stored_config(cls, synset.method_config))
    start = method.stored_images(real, method.start(real, synset.ipc, synset.seed)).detach()   # the init, stored
    moved = real.to_pixels(synset.images) - real.to_pixels(start)
    lr = synset.method_config.get("lr_img", "-")
    # NCFM's image step (a set made before the option existed took one step per iteration)
    step = synset.method_config.get("image_step", "per-iteration") if synset.method == "ncfm" else "-"
    return (f"| {Path(path).name} | {synset.method} | {lr} | {step} | {synset.distill_iterations} | "
            f"{moved.abs().mean():.4f} | {moved.pow(2).mean().sqrt():.4f} | {moved.abs().max():.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", nargs="+", help="set files made by synthesizers")
    p.add_argument("--out", default=None, help="markdown file to write (atomically)")
    args = p.parse_args()
    rows = ["| set | method | lr_img | image step | iterations | mean abs travel | rms travel | max abs travel |",
            "|---|---|---|---|---|---|---|---|"]
    cache: dict = {}
    for path in args.sets:
        rows.append(travel(path, cache))
        print(rows[-1], flush=True)
    write_results(args.out, header("Pixel travel from the initialisation ([0, 1] pixel units)", "cpu") + [
        "Each set's initialisation is rebuilt from its method config and seed; travel = final - initial "
        "image, in pixel units (the dataset's normalisation undone).", "", *rows])


if __name__ == "__main__":
    main()
