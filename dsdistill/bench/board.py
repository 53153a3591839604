"""The leaderboard as a document: headings, paragraphs, pictures and tables of cells, built once from the table
model (bench.tables) and rendered twice, to markdown (bench.report) and to HTML (bench.site), so the two never
disagree. Picture paths are relative to the plot folder; each renderer says where that folder is.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .._version import __version__
from .plots import planned_pictures
from .published import PUBLISHED, Published
from .store import Store
from .tables import FAMILIES, SAME_RANK_P, Row, Table, grid_name, mean_seconds


@dataclass(frozen=True)
class Cell:
    text: str
    links: tuple[tuple[str, str], ...] = ()   # (text, picture path under the plot folder); shown instead of text
    sort: float | None = None                 # the number a column sorts by (None: sort by text)


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str                                 # markdown-light: `code` and *emphasis* only


@dataclass
class Picture:
    caption: str
    path: str                                 # under the plot folder


@dataclass
class Grid:
    """A table: `kind` is "ranked", "cost", "appendix" or "published" (the HTML marks published rows)."""
    kind: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


Block = Heading | Para | Picture | Grid


# ------------------------------------------------------------------ cells

def _pct(x: float | None, sign: bool = False) -> Cell:
    return Cell("-" if x is None else (f"{x:+.2f}" if sign else f"{x:.2f}"), sort=x)


def _num(x: float | None, digits: int = 0) -> Cell:
    return Cell("-" if x is None else f"{x:.{digits}f}", sort=x)


def _p(row: Row) -> Cell:
    p = row.p_next
    text = "-" if p is None else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")
    return Cell(text + (f" ({row.next_label})" if row.next_label else ""), sort=p)


def iterations(row: Row) -> str:
    its = sorted(set(row.iterations))
    return "-" if its == [0] else "/".join(str(i) for i in its)


def _accuracy(row: Row) -> Cell:
    return Cell(f"{100 * row.mean:.2f} ± {100 * row.std:.2f}", sort=100 * row.mean)


def _seeds(row: Row) -> Cell:
    return Cell(f"{len(row.seeds)} ({', '.join(map(str, sorted(row.seeds)))})", sort=len(row.seeds))


def _grids(row: Row, draw: bool) -> Cell:
    links = tuple((str(s), f"sets/{grid_name(p)}") for s, p in sorted(zip(row.seeds, row.set_paths)) if draw and p)
    return Cell("-", links)


# ------------------------------------------------------------------ tables

def ranked_grid(t: Table, draw: bool) -> Grid:
    soft = t.label_mode == "soft"   # which teacher labelled each row: a column of its own
    grid = Grid("ranked", ["#", "method"] + (["soft labels"] if soft else []) +
                ["sets (seeds)", "models", "accuracy (%)", "vs random (points)", "of whole", "Welch p vs next",
                 "grids"])
    for r in t.rows:
        whole = t.of_whole(r)
        grid.rows.append([Cell(str(r.rank), sort=r.rank), Cell(r.label)] + ([Cell(r.teacher)] if soft else []) +
                         [_seeds(r), _num(len(r.accuracies)), _accuracy(r), _pct(t.gain(r), True),
                          Cell("-" if whole is None else f"{100 * whole:.1f}%", sort=whole), _p(r), _grids(r, draw)])
    if t.whole is not None:
        w = t.whole
        grid.rows.append([Cell("ref"), Cell("whole training set")] + ([Cell(w.teacher)] if soft else []) +
                         [Cell("-"), _num(len(w.accuracies)), _accuracy(w), Cell("-"), Cell("100%", sort=1.0),
                          Cell("-"), Cell("-")])
    return grid


def cost_grid(t: Table) -> Grid:
    """What each ranked row cost to make: a narrow table of its own, so the ranking stays readable."""
    grid = Grid("cost", ["method", "distill s", "iterations", "peak MiB"])
    for r in t.rows:
        grid.rows.append([Cell(r.label), _num(mean_seconds(r)), Cell(iterations(r)), _num(r.peak)])
    return grid


def appendix_grid(t: Table, draw: bool) -> Grid:
    soft = t.label_mode == "soft"
    grid = Grid("appendix", ["method"] + (["soft labels"] if soft else []) +
                ["sets (seeds)", "models", "accuracy (%)", "vs random (points)", "why not ranked", "grids"])
    for r in t.appendix:
        grid.rows.append([Cell(r.label)] + ([Cell(r.teacher)] if soft else []) +
                         [_seeds(r), _num(len(r.accuracies)), _accuracy(r), _pct(t.gain(r), True), Cell(r.why),
                          _grids(r, draw)])
    return grid


def published_grid(rows: list[Published]) -> Grid:
    grid = Grid("published", ["method", "IPC", "published (%)", "closest protocol here", "source"])
    for p in rows:
        grid.rows.append([Cell(p.method), Cell(str(p.ipc or "all"), sort=p.ipc),
                          Cell(f"{p.mean:.1f}{'' if p.std is None else f' ± {p.std:.1f}'}", sort=p.mean),
                          Cell(p.closest), Cell(p.how)])
    return grid


# ------------------------------------------------------------------ the document

HOW_TO_READ = (
    "How to read it: final-epoch test accuracy on the full real test set (nothing is selected on the test set), "
    "mean ± population std over every model of every set seed. Only results with the same protocol hash share a "
    "table; hard- and soft-label protocols are kept apart. The ranked tables hold figures of record only; probes "
    "(suites and result folders named `*-probes`) and earlier records of a recipe that a suite has since remade "
    "stand in each table's appendix, never ranked. *#*: rank; rows whose Welch p against the next row is "
    f"{SAME_RANK_P} or more share it. *vs random*: points over the random selection in the same table (under "
    "soft-label protocols, the one labelled by the same teacher; - where there is none); *of whole*: fraction of "
    "the whole-training-set accuracy under the same protocol; *Welch p*: Welch's t-test (scipy, unequal "
    "variances) over per-model accuracies against the row ranked just below. Cost tables: *distill s*: the "
    "method's own seconds (mean over seeds; for selections, the wall time of the selection); *peak MiB*: peak "
    "memory of the distillation (CUDA allocated or process resident size; - where it was not measured). Published "
    "numbers stand at the end of each dataset, marked, and never enter a ranking.")


def document(tables: list[Table], store: Store, draw: bool, command: str) -> list[Block]:
    """The whole leaderboard; `draw`: link the pictures (planned_pictures names them without drawing)."""
    distills, evals = store.records("distill"), store.records("eval")
    dates = sorted(r.get("created_utc", "") for r in distills + evals)
    hardware = sorted({r.get("hardware", "") for r in distills + evals} - {""})
    blocks: list[Block] = [
        Heading(1, "Leaderboard"),
        Para(f"Generated by `{command}` (dsdistill {__version__}) from the result store `{store.root.as_posix()}`: "
             f"{len(distills)} distillation and {len(evals)} evaluation records, the newest from "
             f"{dates[-1] if dates else '-'}. Never edit this file: rerun the command."),
        Para("Hardware in the records: " + ("; ".join(hardware) or "-") + "."),
        Para(HOW_TO_READ)]
    if not tables:
        blocks.append(Para("The store holds no evaluation yet: run `dsdistill bench benchmarks/suites/NAME.toml`."))
    pictures = planned_pictures(tables) if draw else {}
    by_dataset: dict[str, list[Table]] = defaultdict(list)
    for t in tables:
        by_dataset[t.dataset].append(t)
    for dataset in sorted(by_dataset):
        blocks.append(Heading(2, dataset))
        for mode in sorted({t.label_mode for t in by_dataset[dataset]}):
            blocks.append(Heading(3, FAMILIES.get(mode, mode + " labels")))
            seen = set()
            for t in (t for t in by_dataset[dataset] if t.label_mode == mode):
                if t.protocol_hash not in seen:
                    seen.add(t.protocol_hash)
                    name = pictures.get(("ipc", t.dataset, t.protocol_hash))
                    if name:
                        blocks.append(Picture(f"Accuracy under {t.protocol} #{t.protocol_hash}", name))
                blocks.append(Heading(4, t.title))
                if t.rows:
                    blocks += [ranked_grid(t, draw), Para("What each ranked row cost to make:"), cost_grid(t)]
                    name = pictures.get(("time", t.dataset, t.protocol_hash, t.ipc))
                    if name:
                        blocks.append(Picture("Accuracy vs distillation time", name))
                else:
                    blocks.append(Para("No figure of record under this protocol and IPC; see the appendix below."))
                if t.appendix:
                    blocks += [Para("Appendix (probes and earlier records: shown, never ranked):"),
                               appendix_grid(t, draw)]
        published = [p for p in PUBLISHED if p.dataset == dataset]
        if published:
            blocks += [Heading(3, "Published (not measured here, never ranked)"), published_grid(published)]
    return blocks


__all__ = ["Block", "Cell", "Grid", "Heading", "Para", "Picture", "document", "iterations"]
