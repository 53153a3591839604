"""The leaderboard: tables (markdown + CSV) regenerated from the result store, never edited by hand.

One table per dataset, IPC and protocol hash (only equal hashes are comparable); hard-label and
soft-label protocols in separate sections. Under a soft-label protocol a row is also one teacher: scores of the
same method with two teachers are two rows, and the table says which teacher labelled each. A row is one method: mean ± std (population) over every
model of every set seed, its gain over random and its fraction of the whole-dataset accuracy under the
same protocol, its distillation cost, and Welch's t-test against the method ranked just below it.
The same store always gives the same bytes: rows and tables are sorted, and no clock is read.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .._io import atomic_path
from ..evaluate.report import AccuracySummary
from .published import published_for
from .store import Store
from .suite import recipe_key

FAMILIES = {"hard": "Hard-label protocols", "soft": "Soft-label protocols"}


@dataclass
class Row(AccuracySummary):
    label: str
    family: str                                   # "synthesis", "selection" or "whole"
    accuracies: list[float] = field(default_factory=list)   # every model of every set, in [0, 1]
    seeds: list[int] = field(default_factory=list)
    distill_seconds: list[float] = field(default_factory=list)   # where measured
    iterations: list[int] = field(default_factory=list)
    peak_mib: list[float | None] = field(default_factory=list)
    set_paths: list[str] = field(default_factory=list)
    p_next: float | None = None                   # Welch's t-test against the next row
    next_label: str = ""
    teacher: str = ""                             # soft-label protocols: where the targets came from
    teacher_key: str = ""                         # ... and the store's key of that teacher ("" for none)
    base: str = ""                                # the label before a [variant, teacher] suffix was added

    @property
    def peak(self) -> float | None:
        known = [p for p in self.peak_mib if p is not None]
        return max(known) if known else None


@dataclass
class Table:
    dataset: str
    ipc: int
    label_mode: str
    protocol: str
    protocol_version: int
    protocol_hash: str
    rows: list[Row]                 # ranked, best first (the whole training set is not ranked)
    whole: Row | None = None

    def random_for(self, row: Row) -> Row | None:
        """The random selection `row` is compared with: the one labelled by the same teacher (soft-label tables
        may hold random under several), else the only one; None when that is ambiguous or missing."""
        randoms = [r for r in self.rows if (r.base or r.label) == "random"]
        same = [r for r in randoms if r.teacher_key == row.teacher_key]
        return same[0] if len(same) == 1 else randoms[0] if len(randoms) == 1 else None

    def gain(self, row: Row) -> float | None:
        random = self.random_for(row)
        return None if random is None else 100 * (row.mean - random.mean)

    def of_whole(self, row: Row) -> float | None:
        return None if self.whole is None else row.mean / self.whole.mean

    @property
    def title(self) -> str:
        return f"{self.dataset} · IPC {self.ipc} · {self.protocol} v{self.protocol_version} #{self.protocol_hash}"


def _variant(distill: dict[str, Any]) -> str:
    """Rows with the same label but another config, budget or space (ZCA) must not be pooled."""
    r = distill.get("recipe", {})
    variant = {"method": r.get("method"), "config": r.get("config"), "budget": r.get("budget")}
    return recipe_key({**variant, "zca": True} if r.get("zca") else variant)[:6]


def _teacher_words(ev: dict[str, Any]) -> str:
    """Where a soft-label evaluation's targets came from, short enough for a table cell."""
    t = ev.get("teacher")
    if ev.get("labels") == "stored":
        return "stored in the set"
    if not t:
        return ev.get("report", {}).get("teacher", "") or "-"
    how = {"set": "its own: ", "given-stored": "stored once by "}.get(t.get("source"), "")
    return f"{how}{t.get('path') or 'committee'} #{str(t.get('key', ''))[:6]}"


def _welch(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return None
    from scipy.stats import ttest_ind
    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def build_tables(store: Store) -> list[Table]:
    """Rows come from the distillation records (one label each), scores from the evaluations of their set:
    two recipes that make the same set (e.g. herding and k-center both start at the point nearest the class
    mean, so at IPC 1 they agree) each get their row, from the one evaluation of that set."""
    evals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in store.records("eval"):
        evals[ev["set_sha256"]].append(ev)
    groups: dict[tuple, dict[str, Any]] = {}
    for d in store.records("distill"):
        for ev in evals.get(d["set_sha256"], []):
            head = (ev["dataset"], ev["label_mode"], ev["protocol"], ev["protocol_version"], ev["protocol_hash"])
            group = groups.setdefault(head, {"whole": None, "ipcs": defaultdict(dict)})
            whole = d["family"] == "whole"
            if whole:
                row = group["whole"] = group["whole"] or Row("whole dataset", "whole", teacher=_teacher_words(ev))
            else:
                rows = group["ipcs"][d["ipc"]]
                key = ev.get("teacher_key") or ""
                row = rows.setdefault((d["label"], _variant(d), key),
                                      Row(d["label"], d["family"], teacher=_teacher_words(ev), teacher_key=key,
                                          base=d["label"]))
            row.accuracies += ev["report"]["results"][0]["accuracies"]   # the protocol's own architecture
            row.seeds.append(d["seed"])
            if d.get("distill_seconds") is not None:
                row.distill_seconds.append(float(d["distill_seconds"]))
            row.iterations.append(int(d.get("distill_iterations", 0)))
            row.peak_mib.append(d.get("peak_memory_mib"))
            if not whole:
                row.set_paths.append(d.get("set_path", ""))
    tables = []
    for head in sorted(groups):
        group = groups[head]
        for ipc in sorted(group["ipcs"]):
            keyed = group["ipcs"][ipc]
            labels = defaultdict(list)
            for label, variant, teacher in keyed:
                labels[label].append((variant, teacher))
            for (label, variant, teacher), row in keyed.items():
                tell = [variant] if len({v for v, _ in labels[label]}) > 1 else []
                if len({t for _, t in labels[label]}) > 1:
                    tell.append(f"teacher {teacher[:6] or 'none'}")
                if tell:
                    row.label = f"{label} [{', '.join(tell)}]"
            rows = sorted(keyed.values(), key=lambda r: (-r.mean, r.label))
            for upper, lower in zip(rows, rows[1:]):
                upper.p_next, upper.next_label = _welch(upper.accuracies, lower.accuracies), lower.label
            tables.append(Table(head[0], ipc, head[1], head[2], head[3], head[4], rows, group["whole"]))
    return tables


# ------------------------------------------------------------------ formatting

def _pct(x: float | None, sign: bool = False) -> str:
    return "-" if x is None else (f"{x:+.2f}" if sign else f"{x:.2f}")


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def _seconds(row: Row) -> float | None:
    return float(np.mean(row.distill_seconds)) if row.distill_seconds else None


def _iterations(row: Row) -> str:
    its = sorted(set(row.iterations))
    return "-" if its == [0] else "/".join(str(i) for i in its)


def grid_name(set_path: str) -> str:
    return f"{Path(set_path).stem}.png"


def _table_md(t: Table, plots: str | None) -> list[str]:
    soft = t.label_mode == "soft"   # which teacher labelled each row: a column of its own
    lines = [f"#### {t.title}", "",
             "| # | method |" + (" soft labels |" if soft else "") + " sets (seeds) | models | accuracy (%) | "
             "vs random (points) | of whole | distill s | iterations | peak MiB | Welch p vs next | grids |",
             "|---|---|" + ("---|" if soft else "") + "---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(t.rows, 1):
        whole = t.of_whole(r)
        grids = " ".join(f"[{s}]({plots}/sets/{grid_name(p)})" for s, p in sorted(zip(r.seeds, r.set_paths))
                         if plots and p) or "-"
        lines.append(f"| {i} | {r.label} |" + (f" {r.teacher} |" if soft else "") +
                     f" {len(r.seeds)} ({', '.join(map(str, sorted(r.seeds)))}) | "
                     f"{len(r.accuracies)} | {100 * r.mean:.2f} ± {100 * r.std:.2f} | {_pct(t.gain(r), True)} | "
                     f"{'-' if whole is None else f'{100 * whole:.1f}%'} | {_num(_seconds(r))} | {_iterations(r)} | "
                     f"{_num(r.peak)} | {_p(r.p_next)}{f' ({r.next_label})' if r.next_label else ''} | {grids} |")
    if t.whole is not None:
        w = t.whole
        lines.append(f"| ref | whole training set |" + (f" {w.teacher} |" if soft else "") +
                     f" - | {len(w.accuracies)} | {100 * w.mean:.2f} ± {100 * w.std:.2f} | - | 100% | - | - | - | - | - |")
    lines.append("")
    pub = published_for(t.dataset, t.ipc)
    if pub:
        lines += ["Published (not measured here, never ranked):", "",
                  "| method | IPC | published (%) | closest protocol here | source |", "|---|---|---|---|---|"]
        lines += [f"| {p.method} | {p.ipc or 'all'} | {p.mean:.1f}{'' if p.std is None else f' ± {p.std:.1f}'} | "
                  f"{p.closest} | {p.how} |" for p in pub]
        lines.append("")
    return lines


def _plot_name(kind: str, t: Table, ipc: bool) -> str:
    base = f"{kind}-{t.dataset}-{t.protocol}-{t.protocol_hash[:8]}"
    return f"{base}-ipc{t.ipc}.png" if ipc else f"{base}.png"


def leaderboard_md(tables: list[Table], store: Store, plots: str | None, command: str) -> str:
    distills, evals = store.records("distill"), store.records("eval")
    dates = sorted(r.get("created_utc", "") for r in distills + evals)
    hardware = sorted({r.get("hardware", "") for r in distills + evals} - {""})
    lines = [
        "# Leaderboard", "",
        f"Generated by `{command}` (dsdistill {__version__}) from the result store `{store.root.as_posix()}`: "
        f"{len(distills)} distillation and {len(evals)} evaluation records, the newest from "
        f"{dates[-1] if dates else '-'}. Never edit this file: rerun the command.", "",
        "Hardware in the records: " + ("; ".join(hardware) or "-") + ".", "",
        "How to read it: final-epoch test accuracy on the full real test set (nothing is selected on the test "
        "set), mean ± population std over every model of every set seed. Only results with the same protocol hash "
        "share a table; hard- and soft-label protocols are kept apart. *vs random*: points over the random "
        "selection in the same table (under soft-label protocols, the one labelled by the same teacher; - where "
        "there is none); *of whole*: fraction of the whole-training-set accuracy under the same "
        "protocol; *distill s*: the method's own seconds (mean over seeds; for selections, the wall time of the "
        "selection); *peak MiB*: peak memory of the distillation (CUDA allocated or process resident size; - "
        "where it was not measured); *Welch p*: Welch's t-test (scipy, unequal variances) over per-model "
        "accuracies against the method ranked just below. Published numbers stand under each table, marked, "
        "and never enter a ranking.", ""]
    if not tables:
        lines += ["The store holds no evaluation yet: run `dsdistill bench benchmarks/suites/NAME.toml`.", ""]
    by_dataset: dict[str, list[Table]] = defaultdict(list)
    for t in tables:
        by_dataset[t.dataset].append(t)
    for dataset in sorted(by_dataset):
        lines += [f"## {dataset}", ""]
        for mode in sorted({t.label_mode for t in by_dataset[dataset]}):
            lines += [f"### {FAMILIES.get(mode, mode + ' labels')}", ""]
            seen_protocols = set()
            for t in (t for t in by_dataset[dataset] if t.label_mode == mode):
                if plots and t.protocol_hash not in seen_protocols:
                    seen_protocols.add(t.protocol_hash)
                    lines += [f"Accuracy vs IPC under {t.protocol} #{t.protocol_hash}: "
                              f"[{_plot_name('acc-vs-ipc', t, False)}]({plots}/{_plot_name('acc-vs-ipc', t, False)})", ""]
                lines += _table_md(t, plots)
                if plots:
                    name = _plot_name("acc-vs-time", t, True)
                    lines += [f"Accuracy vs distillation time: [{name}]({plots}/{name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


CSV_FIELDS = ["source", "dataset", "ipc", "label_mode", "protocol", "protocol_version", "protocol_hash", "rank",
              "method", "sets", "seeds", "models", "mean", "std", "gain_over_random", "fraction_of_whole",
              "distill_seconds", "distill_iterations", "peak_memory_mib", "welch_p_vs_next", "next_method",
              "published_how"]


def leaderboard_csv(tables: list[Table]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in tables:
        base = {"dataset": t.dataset, "ipc": t.ipc, "label_mode": t.label_mode, "protocol": t.protocol,
                "protocol_version": t.protocol_version, "protocol_hash": t.protocol_hash}
        ranked = [(str(i), r) for i, r in enumerate(t.rows, 1)] + ([("ref", t.whole)] if t.whole else [])
        for rank, r in ranked:
            whole = t.of_whole(r) if r is not t.whole else 1.0
            gain = t.gain(r) if r is not t.whole else None
            writer.writerow({**base, "source": "ours", "rank": rank, "method": r.label, "sets": len(r.seeds),
                             "seeds": " ".join(map(str, sorted(r.seeds))), "models": len(r.accuracies),
                             "mean": f"{100 * r.mean:.4f}", "std": f"{100 * r.std:.4f}",
                             "gain_over_random": "" if gain is None else f"{gain:.4f}",
                             "fraction_of_whole": "" if whole is None else f"{whole:.4f}",
                             "distill_seconds": "" if r is t.whole else _num(_seconds(r), 1),
                             "distill_iterations": "" if r is t.whole else _iterations(r),
                             "peak_memory_mib": "" if r.peak is None else f"{r.peak:.0f}",
                             "welch_p_vs_next": "" if r.p_next is None else f"{r.p_next:.4g}",
                             "next_method": r.next_label, "published_how": ""})
        for p in published_for(t.dataset, t.ipc):
            writer.writerow({**base, "source": "published", "rank": "", "method": p.method,
                             "mean": f"{p.mean:.4f}", "std": "" if p.std is None else f"{p.std:.4f}",
                             "published_how": f"{p.how}; closest protocol here: {p.closest}; IPC {p.ipc or 'all'}"})
    return out.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_report(store: Store, out: str | Path = "benchmarks/LEADERBOARD.md", csv_path: str | Path | None = None,
                 plots_dir: str | Path | None = None, command: str = "dsdistill report") -> list[Path]:
    """Write LEADERBOARD.md, its CSV and (with plots_dir) the pictures; returns the files written."""
    out = Path(out)
    csv_path = Path(csv_path) if csv_path else out.with_name("leaderboard.csv")
    tables = build_tables(store)
    written = []
    rel_plots = None
    if plots_dir is not None:
        from .plots import write_plots
        plots_dir = Path(plots_dir)
        written += write_plots(tables, plots_dir)
        rel_plots = Path(os.path.relpath(plots_dir.resolve(), out.resolve().parent)).as_posix()
    _write_text(out, leaderboard_md(tables, store, rel_plots, command))
    _write_text(csv_path, leaderboard_csv(tables))
    return [out, csv_path] + written


__all__ = ["Row", "Table", "build_tables", "leaderboard_md", "leaderboard_csv", "write_report"]
