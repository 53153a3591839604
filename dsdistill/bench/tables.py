"""The leaderboard's table model, built from the result store: what the markdown, the CSV and the plots all
draw from (bench.report writes the text, bench.plots the pictures; neither imports the other).

One table per dataset, IPC and protocol hash (only equal hashes are comparable). A row is one method (under a
soft-label protocol, one method and teacher): every model of every set seed pooled, ranked by mean accuracy,
with Welch's t-test against the row ranked just below. Rows and tables are sorted, so the same store always
gives the same tables.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate.report import AccuracySummary
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


def welch(a: list[float], b: list[float]) -> float | None:
    """Welch's t-test p-value (unequal variances); None where it is undefined (fewer than 2 each, no spread)."""
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return None
    from scipy.stats import ttest_ind   # late: scipy.stats takes a second to import, and only a ranking needs it
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
                upper.p_next, upper.next_label = welch(upper.accuracies, lower.accuracies), lower.label
            tables.append(Table(head[0], ipc, head[1], head[2], head[3], head[4], rows, group["whole"]))
    return tables


# ------------------------------------------------------------------ names and figures the outputs share

def mean_seconds(row: Row) -> float | None:
    """A row's distillation seconds, mean over its seeds (None where none was measured)."""
    return float(np.mean(row.distill_seconds)) if row.distill_seconds else None


def grid_name(set_path: str) -> str:
    """The file name of a set's image grid (under the plot folder's sets/)."""
    return f"{Path(set_path).stem}.png"


def plot_name(kind: str, t: Table, ipc: bool) -> str:
    """The file name of a table's picture: per dataset and protocol hash, and per IPC where `ipc`."""
    base = f"{kind}-{t.dataset}-{t.protocol}-{t.protocol_hash[:8]}"
    return f"{base}-ipc{t.ipc}.png" if ipc else f"{base}.png"


__all__ = ["FAMILIES", "Row", "Table", "build_tables", "grid_name", "mean_seconds", "plot_name", "welch"]
