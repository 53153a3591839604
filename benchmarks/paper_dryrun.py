"""Paper-settings dry run: does every published cell fit one 80 GB GPU, and how long would it take?

Each cell (a method's published preset at a dataset's real shape and IPC) runs 2 iterations on the CPU in a fresh
process, on random images of the real shape, and records:
- seconds per iteration, measured (the second iteration; the first pays lazy set-up and is the one whose FLOPs are
  counted, so the counter's overhead stays out of the timing) on `--classes` classes and
  projected to all K classes linearly (every method here costs per class: DM/DataDAM/NCFM match class by class,
  MTT trains on K x IPC images, CV-DD steps one image of every class);
- the CPU's peak resident memory at those classes, measured;
- the projected GPU memory at all K classes, from the same per-image activation estimate that bounds a joint pass
  (synthesizers/joint.py): the real training set resident on the device + the synthetic images with gradient and
  two optimiser moments + the activations of one pass (a joint pass within joint_memory_gb for DM/DataDAM/NCFM;
  the N unrolled student steps for MTT; both voters over every class for CV-DD) + 1 GiB of CUDA context;
- the matrix FLOPs of one iteration (torch's FlopCounterMode, at all K classes by the same linear projection) and
  GPU hours at the published iteration count at an ASSUMED sustained 10 TFLOP/s (about half an A100's FP32 peak;
  an assumption, not a measurement: benchmarks/gpu_check.sh measures the real figure on a GPU).

Stand-ins, each said in the table: NCFM's extractor is a random ConvNet (the pool's interpolated weights cost one
load_state_dict per iteration; the matching pass is the same ConvNet); MTT's experts and CV-DD's committee are
built here for the timing only, on 2 images per class for as few epochs as the preset reads (their weights do not
change the cost of an iteration). Cells the toolkit has no preset for are listed as not run, with why.

  python benchmarks/paper_dryrun.py --out benchmarks/results/paper-dryrun-cpu.md
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import hardware, header, peak_mib, utc_now, write_results  # noqa: E402

ASSUMED_TFLOPS = 10.0   # ours: sustained FP32 on one datacentre GPU (about half an A100's 19.5 TFLOP/s peak)
GPU_GB = 80.0           # the question asked: one 80 GB GPU
CONTEXT_GB = 1.0        # ours: CUDA context, cuDNN/cuBLAS workspaces
PUBLISHED = {"dm": 20000, "datadam": 8000, "ncfm": 20000, "mtt": 5000}  # cvdd: 4000 per IPC index (its preset)
DATASETS = ("cifar10", "cifar100", "tiny-imagenet")
IPCS = (1, 10, 50)
# Tiny-ImageNet: DM, DataDAM, NCFM, MTT and CV-DD all report it; the toolkit has MTT presets for CIFAR only.
MTT_PRESETS = {("cifar10", 1), ("cifar10", 10), ("cifar10", 50), ("cifar100", 1), ("cifar100", 10)}


def cells(quick: bool = False) -> list[dict]:
    """Every cell, cheapest first (so a time limit cuts the dearest)."""
    out = []
    for dataset in DATASETS:
        for ipc in IPCS:
            for method in ("dm", "datadam", "ncfm", "mtt", "cvdd"):
                spec = f"{method}.paper"
                if method == "mtt":
                    spec = f"mtt.{dataset}-ipc{ipc}" if (dataset, ipc) in MTT_PRESETS else ""
                out.append({"dataset": dataset, "ipc": ipc, "method": method, "spec": spec})
    rank = {"cifar10": 0, "cifar100": 1, "tiny-imagenet": 2}
    out.sort(key=lambda c: (rank[c["dataset"]], c["ipc"]))
    return out[:1] if quick else out


# ---------------------------------------------------------------- the worker: one cell in its own process
def fake_real(dataset: str, classes: int, per_class: int, seed: int = 0):
    """Random images of `dataset`'s real shape and statistics, `classes` classes of `per_class` images."""
    import torch

    from dsdistill.data import RealData, Split
    from dsdistill.data.spec import DATASETS as SPECS
    spec = SPECS.get(dataset)
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        labels = torch.arange(classes).repeat_interleave(n)
        return Split.from_tensors(torch.randn(len(labels), spec.channels, spec.image_size, spec.image_size,
                                              generator=g), labels, classes)

    return spec, RealData(name=dataset, train=split(per_class), test=split(1), class_names=[str(i) for i in range(classes)],
                          mean=spec.mean or (0.5,) * spec.channels, std=spec.std or (0.25,) * spec.channels,
                          digits=spec.digits)


def native_train_size(dataset: str) -> int:
    return {"cifar10": 50000, "cifar100": 50000, "tiny-imagenet": 100000}[dataset]


def build_method(cell: dict, real, folder: Path):
    """The cell's method, with the stand-ins the docstring names."""
    from dsdistill.synthesizers import create_synthesizer, resolve_method
    from dsdistill.teachers.committee import PAPER_MEMBERS, build_committee, parse_members
    from dsdistill.teachers.experts import ExpertConfig, build_experts
    from dsdistill.train.real import RealTrainConfig
    cls, preset = resolve_method(cell["spec"])
    options = {k: v for k, v in preset.items() if k != "iterations"}
    if cell["method"] == "ncfm":
        options["extractor"] = "random"
    if cell["method"] == "mtt":
        epochs = options.get("max_start_epoch", 20) + options.get("expert_epochs", 2)
        build_experts(real, folder / "experts", experts=1, epochs=epochs, model_options={"width": 128},
                      config=ExpertConfig(batch_size=256))
        options["experts"] = str(folder / "experts")
    if cell["method"] == "cvdd":
        build_committee(real, folder / "committee", parse_members(PAPER_MEMBERS, 1), holdout=1,
                        config=RealTrainConfig(batch_size=64, dsa=False, cutmix_prob=0.0))
        options["committee"] = str(folder / "committee")
    return create_synthesizer(cls.name, **options)


def models_of(cell: dict, synth, real, state=None) -> list:
    """The networks whose activations one iteration holds: the matching ConvNet (DM/DataDAM/NCFM), MTT's student,
    CV-DD's committee. From the run's state when it ran; else made fresh (random weights: the same sizes)."""
    from dsdistill.models import create_model
    from dsdistill.teachers.committee import PAPER_MEMBERS, _new_model, parse_members
    if cell["method"] in ("dm", "datadam", "ncfm"):
        return [synth.random_network(real, 0, 0)]
    if cell["method"] == "mtt":
        if state is not None:
            return [state.context["flat"].module]
        return [create_model("convnet", real.channels, real.num_classes, real.image_size, width=128,
                             depth=3 if real.image_size <= 32 else 4)]  # MTT's ConvNet-3 (ConvNetD4 at 64 px)
    if state is not None:
        return [m.model for m in state.context["committee"].members]
    return [_new_model(spec, real) for spec in parse_members(PAPER_MEMBERS, 1)]  # the paper suite's committee


def projected_gb(cell: dict, cfg, models: list, real, spec) -> dict:
    """The GPU memory of one iteration at all K classes (the docstring's sum), in GB, by part."""
    from dsdistill.synthesizers.joint import activation_bytes, class_chunks
    ipc, k = cell["ipc"], spec.num_classes
    image = real.train.images[:1]
    image_bytes = image.numel() * 4
    factor = getattr(cfg, "factor", 1)
    parts = {"real set": native_train_size(cell["dataset"]) * image_bytes / 1e9,
             "synthetic + grad + moments": 4 * k * ipc * factor ** 2 * image_bytes / 1e9, "context": CONTEXT_GB}
    if cell["method"] in ("dm", "datadam", "ncfm"):
        per = activation_bytes(models[0], image)
        per_class = min(cfg.batch_real, native_train_size(cell["dataset"]) // k) + ipc * factor ** 2
        chunk = max(len(c) for c in class_chunks([per_class] * k, per, cfg.joint_memory_gb))
        parts["activations (one joint chunk)"] = chunk * per_class * per / 1e9
        parts["activations (unchunked joint pass)"] = k * per_class * per / 1e9  # shown, not summed
    elif cell["method"] == "mtt":
        model = models[0]
        batch = cfg.batch_syn or k * ipc
        params = sum(p.numel() for p in model.parameters()) * 4
        parts["activations (N unrolled steps)"] = cfg.syn_steps * (batch * activation_bytes(model, image) + params) / 1e9
    else:
        per = sorted((activation_bytes(m, image) for m in models), reverse=True)[:2]
        copies = 2 if cfg.flip else 1
        parts["activations (2 voters, every class)"] = sum(per) * k * copies / 1e9
        parts["committee weights"] = sum(sum(p.numel() for p in m.parameters()) * 4 for m in models) / 1e9
    return parts


def memory_only(cell: dict) -> dict:
    """A cell's projected memory without running it (no experts, no committee trained): in this process."""
    from dsdistill.synthesizers import create_synthesizer, resolve_method
    from dsdistill.synthesizers.cvdd import CVDD
    cls, preset = resolve_method(cell["spec"])
    spec, real = fake_real(cell["dataset"], 1, 1)
    options = {k: v for k, v in preset.items() if k != "iterations"}
    if cell["method"] == "ncfm":
        options["extractor"] = "random"
    synth = create_synthesizer(cls.name, **options)
    iterations = (synth.config.iterations_per_ipc * cell["ipc"] if isinstance(synth, CVDD)
                  else PUBLISHED[cell["method"]])
    return {"classes_timed": 0, "seconds": [float("nan")] * 2, "cpu_peak_mib": float("nan"),
            "memory_gb": projected_gb(cell, synth.config, models_of(cell, synth, real), real, spec),
            "flops_per_iteration": float("nan"), "iterations": iterations, "scale": float("nan")}


def worker(cell: dict, classes: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dsdistill._provenance import reset_peak_memory
    from dsdistill.synthesizers import Budget
    spec, _ = fake_real(cell["dataset"], 1, 1)
    k_used = min(classes, spec.num_classes)
    batch_real = {"dm": 256, "datadam": 256, "ncfm": 1024}.get(cell["method"], 2)
    per_class = min(batch_real, native_train_size(cell["dataset"]) // spec.num_classes)
    if cell["method"] == "cvdd":   # its medium init picks IPC of the ranked candidates: at least IPC real images
        per_class = max(per_class, 3, cell["ipc"])
    _, real = fake_real(cell["dataset"], k_used, per_class)
    with tempfile.TemporaryDirectory() as tmp:
        synth = build_method(cell, real, Path(tmp))
        reset_peak_memory("cpu")
        state = synth.start(real, cell["ipc"], 0, budget=Budget(iterations=10 ** 6))
        times, flops = [float("nan")] * 2, float("nan")
        for it in range(2 if cell.get("timed", True) else 0):
            start = time.perf_counter()
            if it == 0:  # counted on the warm-up iteration: the counter's dispatch overhead stays out of the timing
                with FlopCounterMode(display=False) as counter:
                    synth.step(state, real, it, 0)
                flops = counter.get_total_flops()
            else:
                synth.step(state, real, it, 0)
            times[it] = time.perf_counter() - start
        peak = peak_mib("cpu")
        memory = projected_gb(cell, synth.config, models_of(cell, synth, real, state), real, spec)
        # CV-DD publishes iterations per IPC index (the run above was given a large budget to time two of them)
        iterations = (synth.config.iterations_per_ipc * cell["ipc"] if cell["method"] == "cvdd"
                      else PUBLISHED[cell["method"]])
    scale = spec.num_classes / k_used
    return {"classes_timed": k_used, "seconds": times, "cpu_peak_mib": peak, "memory_gb": memory,
            "flops_per_iteration": flops * scale, "iterations": iterations, "scale": scale}


# ---------------------------------------------------------------- the table
def row(cell: dict, result: dict | None, why: str = "") -> str:
    name = f"{cell['dataset']} IPC {cell['ipc']} {cell['spec'] or cell['method']}"
    if result is None:
        return f"| {name} | not run: {why} | | | | | | |"
    if why:
        name += f" ({why})"
    mem = result["memory_gb"]
    total = sum(v for k, v in mem.items() if k != "activations (unchunked joint pass)")
    unchunked = mem.get("activations (unchunked joint pass)")
    fits = "yes" if total <= GPU_GB else f"**no** ({max(mem, key=mem.get)})"
    note = f"; unchunked joint pass {unchunked:.1f} GB" if unchunked is not None else ""
    sec = result["seconds"][1] * result["scale"]
    hours = result["flops_per_iteration"] * result["iterations"] / (ASSUMED_TFLOPS * 1e12) / 3600
    if sec != sec:  # NaN: not timed
        return (f"| {name} | not timed | | {total:.1f}{note} | {fits} | | {result['iterations']} | |")
    return (f"| {name} | {result['seconds'][1]:.2f} s at {result['classes_timed']} classes -> {sec:.1f} s | "
            f"{result['cpu_peak_mib']:.0f} | {total:.1f}{note} | {fits} | "
            f"{result['flops_per_iteration'] / 1e12:.3f} | {result['iterations']} | {hours:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=2, help="classes timed per cell (projected linearly to K)")
    ap.add_argument("--minutes", type=float, default=12.0,
                    help="after this long, cells are no longer timed (their memory is still projected)")
    ap.add_argument("--quick", action="store_true", help="the smallest cell only (the test)")
    ap.add_argument("--only", default=None, metavar="PATTERN",
                    help="rerun only the cells whose spec matches (fnmatch, e.g. 'cvdd*'); with --out naming an "
                         "existing table, their rows replace the old ones and the rest are kept (the header says so)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.classes)))
        return
    start, lines = time.monotonic(), []
    chosen = [c for c in cells(args.quick) if args.only is None or fnmatch.fnmatch(c["spec"] or c["method"], args.only)]
    for cell in chosen:
        if not cell["spec"]:
            lines.append(row(cell, None, "the toolkit has no preset for this published MTT row"))
            continue
        if (time.monotonic() - start) / 60 >= args.minutes:
            try:
                lines.append(row(cell, memory_only(cell), f"memory only: past the {args.minutes:g}-minute limit"))
            except Exception as err:  # noqa: BLE001 (recorded)
                lines.append(row(cell, None, f"failed: {type(err).__name__}: {err}"[:200]))
            print(lines[-1], flush=True)
            continue
        why = ""
        out = subprocess.run([sys.executable, __file__, "--classes", str(args.classes), "--worker", json.dumps(cell)],
                             capture_output=True, text=True)
        if out.returncode:
            lines.append(row(cell, None, "failed: " + (out.stderr.strip().splitlines() or ["?"])[-1][:200]))
        else:
            lines.append(row(cell, json.loads(out.stdout.strip().splitlines()[-1]), why))
        print(lines[-1], flush=True)
    table = ["| cell | s/iteration: measured -> projected to K classes (CPU) | CPU peak MiB (measured) | "
             "projected GPU GB at K classes | fits 80 GB | TFLOP/iteration (K classes) | published iterations | "
             f"GPU hours at {ASSUMED_TFLOPS:g} TFLOP/s (assumed) |", "|---|---|---|---|---|---|---|---|", *lines]
    if args.only and args.out and Path(args.out).exists():
        write_results(args.out, _merged(Path(args.out).read_text().splitlines(), chosen, lines, args.only))
        return
    write_results(args.out, header("Paper-settings dry run (2 iterations per cell, CPU)") + [
        "How each figure is projected: benchmarks/paper_dryrun.py's docstring. In short: time and FLOPs measured "
        f"on --classes {args.classes} classes and scaled by K / classes; GPU memory = real set resident + "
        "synthetic images x 4 (value, grad, two moments) + one pass's activations (joint.py's per-image estimate) "
        f"+ {CONTEXT_GB:g} GB context; GPU hours = FLOPs x published iterations at an assumed "
        f"{ASSUMED_TFLOPS:g} TFLOP/s. NCFM with a random extractor; MTT's experts and CV-DD's committee built "
        "here for timing only (1 epoch / the preset's epochs on 2 images per class).", "", *table])


def _merged(old: list[str], chosen: list[dict], rows: list[str], pattern: str) -> list[str]:
    """The old table with the rows of the rerun cells replaced (in place), and a header line saying which rows
    were rerun, by what command, on what hardware and when."""
    fresh = {f"| {c['dataset']} IPC {c['ipc']} {c['spec'] or c['method']}": r for c, r in zip(chosen, rows)}
    out = []
    stamp = f"Rows matching `{pattern}` rerun"
    for line in (line for line in old if not line.startswith(stamp)):   # an earlier rerun's stamp is replaced
        key = next((k for k in fresh if line.startswith(k + " ") or line.startswith(k + " (")), None)
        out.append(fresh[key] if key else line)
        if line.startswith("Date: "):
            out.append(f"{stamp}: `python {' '.join(sys.argv)}`, {hardware(features=True)}, "
                       f"{utc_now()}")
    return out


if __name__ == "__main__":
    main()
