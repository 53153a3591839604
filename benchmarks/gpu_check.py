"""The GPU check's steps, in one process (benchmarks/gpu_check.sh runs it): every method for a few iterations at
CIFAR-10's shape through the CLI (--deterministic), one short dc evaluation, and the vectorised (vmap) and compiled (fast) evaluators against
the loop, with their training speed-ups. Each step's seconds and peak memory (torch.cuda.max_memory_allocated on CUDA, the peak resident set on
the CPU) go into the results file; a failing step is recorded with the end of its traceback and the next one runs.

Data: random images in CIFAR-10's native format (dsdistill/data/fakes.py), 300 per class (DM's real batch is 256),
so nothing is downloaded. The pool, experts and committee are built here, tiny (1-4 epochs), for the run only. MTT runs with lr_lr=0 (its learned step size fixed): on random pixels the
step size's gradient is huge and it turns negative at once (the check is of the code path, not of the images).

  python benchmarks/gpu_check.py --device cuda --out benchmarks/results/gpu-check.md
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, write_results  # noqa: E402
from dsdistill._provenance import peak_memory, reset_peak_memory  # noqa: E402
from dsdistill.cli import main as cli  # noqa: E402
from dsdistill.data import load_dataset, write_fake  # noqa: E402
from dsdistill.evaluate import evaluate, get_protocol  # noqa: E402
from dsdistill.synset import SyntheticSet  # noqa: E402
from dsdistill.synthesizers import resolve_method  # noqa: E402

METHODS = ("dm", "datadam", "ncfm", "{mtt}", "cvdd", "random", "herding", "k-center")
DM_FAMILY = ("dm", "datadam", "ncfm")
SELECTIONS = ("random", "herding", "k-center")


class Check:
    """Runs the steps; the results file is rewritten after every step, so a run cut short keeps what it did."""

    def __init__(self, device: str, out: str | None, preamble: list[str]) -> None:
        self.device, self.out, self.preamble, self.rows, self.failures = device, out, preamble, [], 0

    def write(self, final: bool = False) -> None:
        state = f"{self.failures} failing step(s)" + ("" if final else "; the run did not finish (cut short?)")
        lines = [*self.preamble, state + ".", "", "| step | status | seconds | peak MiB | note |",
                 "|---|---|---|---|---|", *self.rows]
        if final:
            write_results(self.out, lines)
        elif self.out:
            Path(self.out).write_text("\n".join(lines) + "\n")

    def step(self, name: str, fn) -> object:
        reset_peak_memory(self.device)
        start = time.perf_counter()
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                value = fn()
            if isinstance(value, int) and value != 0:
                raise RuntimeError(f"the command exited {value}: {log.getvalue().strip()[-300:]}")
            status, note = "ok", "" if isinstance(value, int) or value is None else str(value)
        except BaseException as err:  # noqa: BLE001 (recorded: the check goes on)
            if isinstance(err, KeyboardInterrupt):
                raise
            self.failures += 1
            value, status = None, "FAILED"
            note = " ".join(traceback.format_exc().strip().splitlines()[-1:])[-400:]
        seconds = time.perf_counter() - start
        mib, kind = peak_memory(self.device)
        note = note.replace("|", "/").replace("\n", " ")
        self.rows.append(f"| {name} | {status} | {seconds:.1f} | {mib:.0f} ({kind}) | {note} |")
        print(self.rows[-1], flush=True)
        self.write()
        return value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iterations", type=int, default=5, help="iterations per method")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the short dc evaluation (dc's own: 300)")
    ap.add_argument("--per-class", type=int, default=300, help="fake CIFAR-10 training images per class")
    ap.add_argument("--batch-real", type=int, default=None,
                    help="real images per class per iteration for dm/datadam/ncfm (default: each method's own)")
    ap.add_argument("--mtt", default="mtt.cifar10-ipc10", help="the MTT preset (its experts are built to fit it)")
    ap.add_argument("--mtt-set", action="append", default=[], metavar="KEY=VALUE",
                    help="more --set values for MTT (the CPU rehearsal shortens syn_steps)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    preamble = header("GPU check: every method a few iterations, a short dc evaluation, vmap against loop",
                      device=args.device)
    preamble += [f"Data: random images in CIFAR-10's format (fakes.py), {args.per_class} per class (no download); "
                 "pool, experts and committee built here, tiny, for this run only; each distill runs with "
                 "--deterministic. Peak memory: torch.cuda.max_memory_allocated on CUDA, the peak resident set "
                 "on the CPU, reset before each step.", ""]
    check = Check(args.device, args.out, preamble)
    mtt_preset = resolve_method(args.mtt)[1]
    expert_epochs = mtt_preset.get("max_start_epoch", 20) + mtt_preset.get("expert_epochs", 2)
    work = Path(tempfile.mkdtemp(prefix="dsdistill-gpu-check-"))
    root = check.step("fake CIFAR-10 (fakes.py)", lambda: str(write_fake(
        "cifar10", work / "data", train_per_class=args.per_class, test_per_class=20)))
    common = ["--device", args.device, "--data-root", str(root), "--quiet"]
    build = {"ncfm": (["pool", "--dataset", "cifar10", "--models", "2", "--epochs", "1", "--out", str(work / "pool")],
                      ["--set", f"pool={work / 'pool'}"]),
             "mtt": (["experts", "--dataset", "cifar10", "--experts", "1", "--epochs", str(expert_epochs), "--out",
                      str(work / "experts")], ["--set", f"experts={work / 'experts'}", "--set", "lr_lr=0",
                      *(f for kv in args.mtt_set for f in ("--set", kv))]),
             "cvdd": (["committee", "--dataset", "cifar10", "--members", "convnet-bn,resnet18-bn", "--epochs", "1",
                       "--holdout", "2", "--out", str(work / "committee")], ["--set", f"committee={work / 'committee'}"])}
    for method in METHODS:
        method = method.format(mtt=args.mtt)
        family = method.split(".")[0]
        extra: list[str] = []
        if family in build:
            command, extra = build[family]
            check.step(f"{command[0]} for {family}", lambda c=command: cli([*c, *common]))
        selection = family in SELECTIONS
        budget = [] if selection else ["--iterations", str(args.iterations)]
        if family == "cvdd":
            budget = ["--iterations", str(max(args.iterations, 10))]  # at least one step per IPC index
        if family in DM_FAMILY and args.batch_real:
            extra = [*extra, "--set", f"batch_real={args.batch_real}"]
        if family == "cvdd" and args.per_class < 300:
            extra = [*extra, "--set", f"candidates={args.per_class}"]  # RDED's 300 ranked per class, at most all
        out = work / f"{method}.h5"
        verb = "select" if selection else "distill"
        check.step(f"{verb} {method} IPC 10 ({' '.join(budget) or 'selection'}, --deterministic)",
                   lambda m=method, o=out, b=budget, e=extra, v=verb: cli(
                       [v, "--method", m, "--dataset", "cifar10", "--ipc", "10", "--out", str(o),
                        "--deterministic", *b, *e, *common]))
    real = load_dataset("cifar10", root, device=args.device)
    proto = dataclasses.replace(get_protocol("dc"), name=f"dc-{args.epochs}ep", epochs=args.epochs)
    target = work / "dm.h5"

    def score(path: str) -> str:
        report = evaluate(SyntheticSet.load(target), proto, data=real, device=args.device, path=path)
        result = report.results[0]
        accs = [100 * float(a) for a in result.accuracies]  # percent
        scores[path] = accs
        train_s[path] = result.train_seconds
        return f"accuracies (%) {', '.join(f'{a:.2f}' for a in accs)}; training {result.train_seconds:.1f} s"

    scores: dict[str, list[float]] = {}
    train_s: dict[str, float] = {}
    for path in ("loop", "vmap", "fast"):
        check.step(f"evaluate dm set, dc shortened to {args.epochs} epochs, {path}", lambda p=path: score(p))

    def compare() -> str:
        if not {"loop", "vmap"} <= set(scores):
            raise RuntimeError("the loop or the vmap evaluation failed")
        worst = max(abs(a - b) for a, b in zip(scores["loop"], scores["vmap"]))
        if worst > 2.0:
            raise RuntimeError(f"vmap and loop differ by up to {worst:.2f} points (over 2)")
        speed = "; ".join(f"{p} trains {train_s['loop'] / train_s[p]:.2f}x the loop's speed" for p in train_s
                          if p != "loop")
        return (f"largest per-seed difference {worst:.2f} points (same seeds; rounding apart they train alike); "
                f"{speed} (issue 20's GPU target: the N-model step at least 10x the one-model loop at IPC 10)")

    check.step("vmap and fast against loop", compare)
    check.write(final=True)
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
