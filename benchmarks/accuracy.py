"""Accuracy table for a list of cells (method x IPC x protocol), resumable, through the public API.

Each cell makes (or reuses) a set file and an evaluation JSON under benchmarks/results/<name>/;
a cell whose JSON exists is skipped, so an interrupted run continues where it stopped. The table
(markdown) is regenerated from the JSONs with the command, hardware and date.

  python benchmarks/accuracy.py --name issue2-random --cells random:1:dc random:10:dc random:1:dc-noaug
  python benchmarks/accuracy.py --name issue3 --cells dm:1:dc datadam:10:dc --minutes 20 --set flip=true
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, method_from_spec  # noqa: E402  (import path, allocator tuning)

from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.evaluate import evaluate, get_protocol  # noqa: E402
from dsdistill._provenance import utc_now  # noqa: E402
from dsdistill.synset import SyntheticSet  # noqa: E402


def make_set(spec: str, ipc: int, seed: int, args, real, out: Path) -> SyntheticSet:
    if out.exists():
        return SyntheticSet.load(out)
    built = method_from_spec(spec, args.set, args.iterations, args.minutes)   # e.g. datadam+flip=true
    method, kwargs = built.method, {}
    if method.kind == "synthesis":
        kwargs = {"budget": built.budget,
                  "checkpoint": str(out) + ".ckpt", "resume": Path(str(out) + ".ckpt").exists()}
    synset = method.fit(real, ipc, seed=seed, **kwargs)
    synset.extra["command"] = " ".join(sys.argv)
    synset.save(out)
    Path(str(out) + ".ckpt").unlink(missing_ok=True)   # the set is written: its run state is no longer needed
    return synset


# Published numbers, for reading beside ours; never mixed into our tables (reference/benchmarks.md §8).
PUBLISHED = {"fashion-mnist": [
    "## Published (not measured here; ConvNet-3, hard labels, IPC 1 / 10 / 50)", "",
    "| method | IPC 1 | IPC 10 | IPC 50 | how |", "|---|---|---|---|---|",
    "| random | 51.4 ± 3.8 | 73.8 ± 0.7 | 82.5 ± 0.7 | DC paper Table 1: 300 epochs, no augmentation (= dc-noaug) |",
    "| herding | 67.0 | 71.1 | 71.9 | DC paper Table 1, as random |",
    "| DC | 70.5 | 82.3 | 83.6 | DC repo README |",
    "| DSA | 70.6 | 84.6 | 88.7 | DC repo README (DSA evaluation = dc) |",
    "| whole dataset | 93.5 ± 0.1 | | | DC paper |", ""]}


def folder_dataset(folder: Path) -> str:
    for path in folder.glob("*.json"):
        return json.loads(path.read_text())["dataset"]
    return ""


def table(folder: Path) -> str:
    """Per-set rows, then one row per (method, IPC, protocol) over every model of every set."""
    import numpy as np
    rows = ["| method | IPC | protocol | set seed | mean ± std (%) | models | per-model accuracies (%) | distill | eval s |",
            "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[float]] = {}
    hw, commands = "", set()
    for path in sorted(folder.glob("*.json")):
        rep = json.loads(path.read_text())
        hw = rep["hardware"]
        commands.add(rep.get("command", ""))
        for r in rep["results"]:
            accs = ", ".join(f"{100 * a:.2f}" for a in r["accuracies"])
            key = (rep["method_label"], rep["ipc"], f"{rep['protocol']} #{rep['protocol_hash']}")
            groups.setdefault(key, []).extend(r["accuracies"])
            rows.append(f"| {key[0]} | {key[1]} | {key[2]} | {rep.get('set_seed', 0)} | "
                        f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {len(r['accuracies'])} | {accs} | "
                        f"{rep.get('distill', '-')} | {r['seconds']:.0f} |")
    summary = ["| method | IPC | protocol | sets | models | mean ± std over all models (%) |", "|---|---|---|---|---|---|"]
    for key, accs in sorted(groups.items()):
        n_sets = sum(1 for p in folder.glob("*.json")
                     if (lambda r: (r["method_label"], r["ipc"], f"{r['protocol']} #{r['protocol_hash']}"))(
                         json.loads(p.read_text())) == key)
        summary.append(f"| {key[0]} | {key[1]} | {key[2]} | {n_sets} | {len(accs)} | "
                       f"{100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f} |")
    head = [f"# {folder.name}", "", "Commands:", *[f"- `{c}`" for c in sorted(commands) if c], "",
            f"Hardware: {hw}", f"Table written: {utc_now()}", "",
            "Final-epoch test accuracy on the full real test set; std is the population std. "
            "Nothing is selected on the test set.", "", "## Summary", "", *summary, "",
            *PUBLISHED.get(folder_dataset(folder), []), "## Every set", ""]
    return "\n".join(head + rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--cells", nargs="+", required=True, help="METHOD[+key=value...]:IPC:PROTOCOL")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="seeds of the sets: one set per seed, each scored by the protocol's listed models")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--set", action="append", default=[], help="config override for synthesizers")
    p.add_argument("--device", default="auto")
    p.add_argument("--teacher", default=None, metavar="DIR|FILE",
                   help="soft-label cells (kd): the teacher of every set WITHOUT labels of its own (random, DM...); "
                        "a set that names its teacher (cvdd, relabel) keeps its own")
    p.add_argument("--teacher-mode", default="online", choices=["online", "stored"],
                   help="online: --teacher labels every crop; stored: the set is first relabelled with static "
                        "logits (dsdistill relabel --mode stored), about 10x faster to score")
    args = p.parse_args()
    folder = ROOT / "results" / args.name
    folder.mkdir(parents=True, exist_ok=True)
    real = load_dataset(args.dataset, device=args.device if args.device != "auto" else "cpu")
    for cell, seed in [(c, s) for c in args.cells for s in args.seeds]:
        spec, ipc, proto = cell.rsplit(":", 2)
        label = spec.replace("=", "-").replace("+", "_")
        suffix = "" if seed == 0 else f"-seed{seed}"     # seed 0 keeps the first runs' names
        report_path = folder / f"{label}-ipc{ipc}-{proto}{suffix}.json"
        if report_path.exists():
            print(f"skip {cell} seed {seed} (done)")
            continue
        t0 = time.time()
        set_path = folder / "sets" / f"{label}-ipc{ipc}-seed{seed}.h5"
        set_path.parent.mkdir(exist_ok=True)
        synset = make_set(spec, int(ipc), seed, args, real, set_path)
        protocol = get_protocol(proto)
        own = synset.soft_labels is not None or bool(synset.extra.get("teacher"))
        teacher = args.teacher if protocol.label_mode == "soft" and not own else None
        if teacher is not None and args.teacher_mode == "stored":
            from dsdistill.evaluate.soft import load_stored_teacher, prior_temperature
            from dsdistill.teachers.relabel import relabel
            synset = relabel(synset, load_stored_teacher(teacher, real, real.train.images.device, protocol),
                             "stored", prior_temperature(protocol))
            teacher = None
        report = evaluate(synset, protocol, data=real, device=real.train.images.device,
                          set_path=str(set_path.relative_to(ROOT.parent)), teacher=teacher)
        rep = report.to_json()
        rep["method_label"] = spec
        rep["set_seed"] = seed
        rep["command"] = "python " + " ".join(sys.argv)
        if synset.distill_iterations:
            rep["distill"] = f"{synset.distill_iterations} it, {synset.distill_seconds:.0f} s"
        from dsdistill._io import write_json
        write_json(report_path, rep)
        print(report.table(), f"\n({time.time() - t0:.0f} s)", flush=True)
        (folder / "README.md").write_text(table(folder))
    (folder / "README.md").write_text(table(folder))


if __name__ == "__main__":
    main()
