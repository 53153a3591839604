"""How many epochs the whole-training-set reference needs (issue 23's `dc-whole`), chosen on a held-out split of
the training set, never on the test set.

dc trains 1000 epochs, sized for sets of 10-500 images; on the whole training set (60,000 Fashion-MNIST images)
that would be ~440 CPU hours, and nobody trains so. The whole reference keeps dc's recipe (ConvNet-3, SGD 0.01
momentum 0.9 wd 5e-4, batch 256, per-sample DSA, lr x0.1 at half, the final epoch) and needs only its length E.

The rule (ours): train with dc's constant first-half lr on the training set less 100 images per class (the
committee's seeded holdout split), score the held-out images after every epoch, and call P the first epoch whose
held-out accuracy is within `--tolerance` points of the best of the run; E = 2P, so the constant half of a dc-whole
run reaches the plateau and the decayed half refines it, as in dc. The curve, P and E go to the results file.
The run keeps a checkpoint after every epoch (the model, its optimiser, the curve) and resumes from it, so it can
run in pieces.

  python benchmarks/whole_epochs.py --epochs 30 --out benchmarks/results/whole-epochs-cpu.md
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, write_results  # noqa: E402

import torch  # noqa: E402

from dsdistill._io import save_torch  # noqa: E402
from dsdistill.augment import DSA, DSAConfig, dsa_strategy_for  # noqa: E402
from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.evaluate import get_protocol  # noqa: E402
from dsdistill.evaluate.trainer import (ORDER, AUG, TrainSpec, _accuracy, cross_entropy_with,  # noqa: E402
                                       eval_recipe, make_models)
from dsdistill.evaluate.engine import Engine  # noqa: E402
from dsdistill.models import create_model  # noqa: E402
from dsdistill.teachers.committee import holdout_split  # noqa: E402
from dsdistill.train.loop import Augmentation, Data, train_model  # noqa: E402

HOLDOUT = 100   # per class, as the committee's validation split (1000 of 60,000 images)


def held_out_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The evaluator's own batched accuracy (trainer._accuracy), in eval mode."""
    model.eval()
    accuracy = float(_accuracy(lambda xb: model(xb).unsqueeze(0), x, y)[0])
    model.train()
    return accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30, help="epochs of the constant-lr run (the curve's length)")
    p.add_argument("--tolerance", type=float, default=0.5, help="points below the run's best that count as reached")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="runs/whole-epochs.ckpt")
    p.add_argument("--path", default="fast", choices=["loop", "fast"])
    p.add_argument("--train-per-class", type=int, default=0, help="train on this many images per class (0 = all; "
                   "a smoke run, not the reference)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    dc = get_protocol("dc")
    real = load_dataset("fashion-mnist", device="cpu")
    rest, val = holdout_split(real, HOLDOUT, seed=0)
    index = torch.cat([r[:args.train_per_class] if args.train_per_class else r for r in rest])
    data = Data(real.train.images[index], real.train.labels[index], ORDER)
    # dc's first half: constant lr (a decay epoch past the end never fires)
    spec = TrainSpec(epochs=args.epochs, lr=dc.lr, momentum=dc.momentum, weight_decay=dc.weight_decay,
                     batch_size=dc.batch_size, decay_epoch=args.epochs + 1, decay_factor=dc.lr_decay_factor)
    factory = lambda: create_model(dc.architecture, real.channels, real.num_classes, real.image_size)  # noqa: E731
    model = make_models(factory, [args.seed], torch.device("cpu"))[0]
    ckpt, first, state, curve, seconds = Path(args.checkpoint), 0, None, [], 0.0
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        first, state, curve, seconds = saved["epoch"], saved["optimizer"], saved["curve"], saved["seconds"]
        print(f"resuming at epoch {first}", flush=True)
    augment = Augmentation(DSA(DSAConfig(strategy=dsa_strategy_for(real.digits))).per_sample, AUG)
    loss = cross_entropy_with(Engine(compiled=args.path == "fast"))
    start, elapsed = time.perf_counter(), seconds
    for end in train_model(model, data, eval_recipe(spec), args.seed, args.epochs, loss, augment=augment,
                           first_epoch=first, optimizer_state=state):
        curve.append(held_out_accuracy(model, val.images, val.labels))
        elapsed = seconds + time.perf_counter() - start
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        save_torch(ckpt, {"model": model.state_dict(), "optimizer": end.optimizer.state_dict(),
                          "epoch": end.epoch + 1, "curve": curve, "seconds": elapsed})
        print(f"epoch {end.epoch + 1}: held-out {100 * curve[-1]:.2f}% ({elapsed / 60:.1f} min)", flush=True)
    best = max(curve)
    plateau = next(e + 1 for e, acc in enumerate(curve) if acc >= best - args.tolerance / 100)
    rows = ["| epoch | held-out accuracy (%) |", "|---|---|"] + [f"| {e + 1} | {100 * a:.2f} |"
                                                                   for e, a in enumerate(curve)]
    write_results(args.out, header("Epochs of the whole-training-set reference, from a held-out curve") + [
        f"dc's recipe at its constant lr ({dc.lr}) for {args.epochs} epochs on the training set less {HOLDOUT} "
        f"images per class (seeded holdout split; model seed {args.seed}, path {args.path}), scored on those "
        f"{len(val.labels)} held-out images after every epoch; no test image is used. Best {100 * best:.2f}%; "
        f"the first epoch within {args.tolerance} points of it: P = {plateau}. Chosen length E = 2P = "
        f"{2 * plateau} epochs (lr x{dc.lr_decay_factor} at half). {len(index)} training images; training took "
        f"{elapsed / 60:.1f} minutes on this machine (resumes included).", "",
        json.dumps({"plateau": plateau, "epochs": 2 * plateau}), "", *rows])


if __name__ == "__main__":
    main()
