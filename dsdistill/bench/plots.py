"""The leaderboard's pictures, drawn from the same tables as the markdown (matplotlib, Agg, no display):

- accuracy vs IPC per method, with the random selection and the whole training set as references;
- accuracy vs distillation time per table: what a method buys for its compute (the equal-compute view);
- a class-by-class image grid of every set in the tables.
PNG metadata carries no date, so the same store draws the same files.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from .._io import atomic_path
from ..synset.tools import draw
from .tables import Table, grid_name, mean_seconds, plot_name

_METADATA = {"Software": None}


def _figure():
    from matplotlib.figure import Figure   # late: matplotlib is slow to import; no pyplot state
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_METADATA)
    return path


def accuracy_vs_ipc(tables: list[Table], path: Path) -> Path:
    """One line per method over the IPCs of one dataset and protocol; random dashed, whole dotted."""
    fig, ax = _figure()
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for t in sorted(tables, key=lambda t: t.ipc):
        for r in t.rows:
            series[r.label].append((t.ipc, 100 * r.mean, 100 * r.std))
    for label in sorted(series):
        pts = series[label]
        style = {"linestyle": "--", "color": "black"} if label == "random" else {"marker": "o"}
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], label=label,
                    capsize=3, **style)
    whole = next((t.whole for t in tables if t.whole is not None), None)
    if whole is not None:
        ax.axhline(100 * whole.mean, linestyle=":", color="gray", label="whole training set")
    t0 = tables[0]
    ax.set_xscale("log")
    ax.set_xticks(sorted({t.ipc for t in tables}))
    ax.set_xticklabels([str(i) for i in sorted({t.ipc for t in tables})])
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel("test accuracy (%), final epoch")
    ax.set_title(f"{t0.dataset}, protocol {t0.protocol} #{t0.protocol_hash[:8]}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_vs_time(t: Table, path: Path) -> Path:
    """Accuracy against the seconds each method spent making its set (log scale)."""
    fig, ax = _figure()
    for r in t.rows:
        seconds = max(mean_seconds(r) or 0.0, 0.1)
        ax.errorbar([seconds], [100 * r.mean], yerr=[100 * r.std], marker="o" if r.family == "synthesis" else "s",
                    capsize=3, label=r.label)
    if t.whole is not None:
        ax.axhline(100 * t.whole.mean, linestyle=":", color="gray", label="whole training set")
    ax.set_xscale("log")
    ax.set_xlabel("distillation / selection time (s, mean over seeds; unmeasured or < 0.1 s drawn at 0.1)")
    ax.set_ylabel("test accuracy (%), final epoch")
    ax.set_title(t.title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def set_grids(tables: list[Table], folder: Path) -> list[Path]:
    """A class-by-class grid of every set file the tables name (missing files are skipped), in pixels as
    `dsdistill show` draws it (a ZCA set unwhitened)."""
    written = []
    paths = sorted({p for t in tables for r in t.rows for p in r.set_paths if p and os.path.exists(p)})
    for p in paths:
        target = folder / grid_name(p)
        draw(p, target)
        written.append(target)
    return written


OWN_PICTURES = ("acc-vs-*.png", "sets/*.png")   # what write_plots makes; nothing else in the folder is touched


def write_plots(tables: list[Table], folder: Path) -> list[Path]:
    """Every picture of the tables; a picture of ours that the store no longer gives (a set renamed or
    gone) is removed, so the folder always matches the leaderboard."""
    written = []
    by_protocol: dict[tuple[str, str], list[Table]] = defaultdict(list)
    for t in tables:
        by_protocol[(t.dataset, t.protocol_hash)].append(t)
        written.append(accuracy_vs_time(t, folder / plot_name("acc-vs-time", t, True)))
    for key in sorted(by_protocol):
        group = by_protocol[key]
        written.append(accuracy_vs_ipc(group, folder / plot_name("acc-vs-ipc", group[0], False)))
    written += set_grids(tables, folder / "sets")
    for stale in {p for pattern in OWN_PICTURES for p in folder.glob(pattern)} - set(written):
        stale.unlink()
    return written
