"""The leaderboard's table model, built from the result store: what the markdown, the CSV and the plots all
draw from (bench.report writes the text, bench.plots the pictures; neither imports the other).

One table per dataset, IPC and protocol hash (only equal hashes are comparable). A row is one method (under a
soft-label protocol, one method and teacher): every model of every set seed pooled. Only figure-of-record rows
(`of_record`) are ranked, by mean accuracy, with Welch's t-test against the row ranked just below; rows the test
cannot tell apart share a rank (`shared_ranks`). Probes and earlier records of a recipe go to the table's
appendix, unranked. Rows and tables are sorted, so the same store always gives the same tables.
"""
from __future__ import annotations

import hashlib

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
    method: str = ""                              # the registered method (its family in the plots)
    flip: bool = False                            # made with FYI's flip (drawn dashed beside the method)
    suites: list[str] = field(default_factory=list)     # the suite (or imported folder) of every record
    commands: list[str] = field(default_factory=list)   # the command of every record
    newest: str = ""                              # created_utc of the row's newest evaluation record
    rank: int = 0                                 # shared rank among the table's record rows (0: appendix)
    why: str = ""                                 # why the row is in the appendix ("" for a row of record)

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
    rows: list[Row]                 # figures of record, ranked, best first (the whole training set is not ranked)
    whole: Row | None = None
    appendix: list[Row] = field(default_factory=list)   # probes and earlier records: shown, never ranked

    def random_for(self, row: Row) -> Row | None:
        """The random selection `row` is compared with: the one labelled by the same teacher (soft-label tables
        may hold random under several; one of record before one in the appendix), else the only one; None when
        that is ambiguous or missing."""
        randoms = [r for r in self.rows + self.appendix if (r.base or r.label) == "random"]
        same = [r for r in randoms if r.teacher_key == row.teacher_key]
        if len(same) > 1:
            same = [r for r in same if not r.why]
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


PROBE_MARK = "-probes"
"""A suite (or an imported results folder) whose name holds this is a probe: benchmarks/suites/*-probes.toml and
benchmarks/results/*-probes/ say so in their headers (a question asked once, not a figure to rank)."""


def _probe(row: Row) -> bool:
    return any(PROBE_MARK in text for text in row.suites + row.commands)


def of_record(rows: list[Row]) -> list[Row]:
    """The figures of record among one table's rows; sets `why` on every other row.

    A row is a figure of record unless
    - it is a probe: one of its records comes from a suite, or was imported from a results folder, whose name holds
      "-probes" (the probe suites and folders say so in their headers): a question asked once, not a ranking entry;
    - it is an earlier record of the same recipe: another row of the table has the same label (the suite's name
      for the recipe) and a newer evaluation (of another set, or of the same set with another teacher). A suite that changed a recipe (CV-DD's stored labels became online
      labels in fmnist-cpu) leaves the old record in the store, since records are never rewritten; the newest is
      the one the suite now makes. Its earlier record stays visible in the appendix, never ranked twice.
    """
    newest: dict[str, Row] = {}
    for r in rows:
        if not _probe(r):
            key = r.base or r.label
            if key not in newest or (r.newest, r.label) > (newest[key].newest, newest[key].label):
                newest[key] = r
    kept = []
    for r in rows:
        if _probe(r):
            r.why = "probe: " + ", ".join(sorted({w.removesuffix(".toml").rsplit("/", 1)[-1] for text in r.suites + r.commands
                                                  for w in text.split() if PROBE_MARK in w}))
        elif newest[r.base or r.label] is not r:
            r.why = f"earlier record of {r.base or r.label} (newer: {newest[r.base or r.label].label})"
        else:
            kept.append(r)
    return kept


SAME_RANK_P = 0.05
"""Rows whose Welch p against the next row is this or more share a rank: the test cannot order them (ours)."""


def shared_ranks(rows: list[Row]) -> None:
    """Competition ranks over rows sorted best first: a row whose upper neighbour's p_next is SAME_RANK_P or more
    (or undefined with equal means) takes that neighbour's rank; any other row takes its position."""
    for i, r in enumerate(rows):
        upper = rows[i - 1] if i else None
        tied = upper is not None and ((upper.p_next is not None and upper.p_next >= SAME_RANK_P)
                                      or (upper.p_next is None and upper.mean == r.mean))
        r.rank = upper.rank if tied else i + 1


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
                                          base=d["label"], method=str(d.get("method", "")),
                                          flip=bool(d.get("recipe", {}).get("config", {}).get("flip"))))
            row.suites.append(str(d.get("suite", "")))
            row.commands += [str(d.get("command", "")), str(ev.get("command", ""))]
            row.newest = max(row.newest, str(ev.get("created_utc", "")))   # the score: rows may share one set
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
            everything = sorted(keyed.values(), key=lambda r: (-r.mean, r.label))
            rows = of_record(everything)
            for upper, lower in zip(rows, rows[1:]):
                upper.p_next, upper.next_label = welch(upper.accuracies, lower.accuracies), lower.label
            shared_ranks(rows)
            appendix = [r for r in everything if r.why]
            tables.append(Table(head[0], ipc, head[1], head[2], head[3], head[4], rows, group["whole"], appendix))
    return tables


# ------------------------------------------------------------------ names and figures the outputs share

def mean_seconds(row: Row) -> float | None:
    """A row's distillation seconds, mean over its seeds (None where none was measured)."""
    return float(np.mean(row.distill_seconds)) if row.distill_seconds else None


def grid_name(set_path: str) -> str:
    """The file name of a set's image grid (under the plot folder's sets/): its stem and a short hash of its path,
    since two result folders can hold set files of the same name (a rerun beside the record it replaced)."""
    tag = hashlib.sha256(Path(set_path).as_posix().encode()).hexdigest()[:6]
    return f"{Path(set_path).stem}-{tag}.png"


def plot_name(kind: str, t: Table, ipc: bool) -> str:
    """The file name of a table's picture: per dataset and protocol hash, and per IPC where `ipc`."""
    base = f"{kind}-{t.dataset}-{t.protocol}-{t.protocol_hash[:8]}"
    return f"{base}-ipc{t.ipc}.png" if ipc else f"{base}.png"


__all__ = ["FAMILIES", "PROBE_MARK", "SAME_RANK_P", "Row", "Table", "build_tables", "grid_name", "mean_seconds",
           "of_record", "plot_name", "shared_ranks", "welch"]
