"""Does a stored recipe still make the same set, and if not, the same score?

Compares the sets remade into another store (`dsdistill bench SUITE --make-only --store REMADE ...`, then scored
there with the same command without --make-only) with the committed store's sets of the same recipe key: bytes
(payload sha256), the largest pixel difference, the first loss of the run (a different first loss means the
computation differed from the first step), and each protocol's final-epoch score with Welch's t-test over the
listed models. Only recipes whose remade set differs are listed with scores; identical sets share their scores.

    python benchmarks/remake_check.py /tmp/remeasure-store --out benchmarks/results/fmnist-remake-check.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import _common  # noqa: F401  (import path, allocator)
from _common import header, write_results

from dsdistill.bench import Store
from dsdistill.bench.tables import welch as _welch
from dsdistill.synset import SyntheticSet


def scores(store: Store, sha: str) -> dict[str, list[float]]:
    """Per-model final-epoch accuracies (%) of the set, by protocol, hard-label scores only."""
    found = {}
    for ev in store.records("eval"):
        if ev["set_sha256"] == sha and ev["label_mode"] == "hard":
            found[ev["protocol"]] = [100 * a for a in ev["report"]["results"][0]["accuracies"]]
    return found


def set_file(store: Store, record: dict) -> Path:
    """The record's set file, or the file of that name in the store's own sets/ (a store copied elsewhere)."""
    path = Path(record["set_path"])
    return path if path.exists() else store.root / "sets" / record["dataset"] / path.name


def first_loss(synset: SyntheticSet) -> float | None:
    curve = synset.extra.get("loss_curve") or {}
    return curve.get("loss", [None])[0]


def describe(acc: list[float] | None) -> str:
    if not acc:
        return "not scored"
    return f"{np.mean(acc):.2f} ± {np.std(acc):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("remade", help="the store the recipes were remade into")
    ap.add_argument("--store", default="benchmarks/results/store", help="the committed store")
    ap.add_argument("--out", default=None, help="markdown file to write")
    args = ap.parse_args()
    store, remade = Store(args.store), Store(args.remade)
    same, rows = [], []
    for new in sorted(remade.records("distill"), key=lambda d: (d["ipc"], d["label"], d["seed"])):
        old = store.get("distill", new["key"])
        if old is None or new["family"] == "whole":
            continue
        what = f"{new['label']} IPC {new['ipc']} seed {new['seed']}"
        if new["set_sha256"] == old["set_sha256"]:
            same.append(what)
            continue
        a, b = SyntheticSet.load(old["set_path"]), SyntheticSet.load(set_file(remade, new))
        pixels = float((a.images - b.images).abs().max())
        la, lb = first_loss(a), first_loss(b)
        loss = "-" if la is None or lb is None else f"{abs(la - lb) / abs(la):.1e}"
        made = f"{old.get('created_utc', '')[:10]}, {old.get('hardware', '').split(',')[0]}"
        cost = f"{new['distill_seconds']:.0f} s, {new['peak_memory_mib']:.0f} MiB" if new.get("peak_memory_mib") else "-"
        sa, sb = scores(store, old["set_sha256"]), scores(remade, new["set_sha256"])
        for protocol in sorted(set(sa) | set(sb)):
            p = _welch(sa.get(protocol, []), sb.get(protocol, []))
            rows.append(f"| {what} | {made} | {new.get('hardware', '').split(',')[0]} | {cost} | {pixels:.3f} | {loss} | "
                        f"{protocol} | {describe(sa.get(protocol))} | {describe(sb.get(protocol))} | "
                        f"{'-' if p is None else f'{p:.2g}'} |")
    lines = header("Remade recipes against the committed store") + [
        f"Remade store: `{args.remade}`; committed store: `{args.store}`.", "",
        f"Byte-identical when remade ({len(same)}): {', '.join(same) or 'none'}.", "",
        "| recipe | stored set made (date, CPU) | remade on | remade cost (distill s, peak) | max pixel diff | "
        "first-loss rel. diff | protocol | stored score | remade score | Welch p |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
