"""The leaderboard's pictures, drawn from the same tables as the text (matplotlib, Agg, no display):

- accuracy vs IPC per dataset and protocol, one colour and marker per method family, `+flip` dashed in the same
  colour, published figures as hollow markers; where the protocol has one IPC only, a dot chart instead (a line
  of one point says nothing);
- accuracy vs distillation time per table, every point labelled (the equal-compute view);
- a class-by-class image grid of every set in the tables (ranked or in the appendix).
Only figure-of-record rows are drawn; a picture that would hold a single point is not drawn at all. The legend
stands outside the axes. PNG metadata carries no date, so the same store draws the same files.
"""
from __future__ import annotations

import os
import zlib
from collections import defaultdict
from pathlib import Path

from .._io import atomic_path
from ..synset.tools import draw
from .published import PUBLISHED, Published
from .tables import Row, Table, grid_name, mean_seconds, plot_name

_METADATA = {"Software": None}

# One colour and marker per method family (the registered method), the same in every picture; a family not
# named here takes a slot from its name's crc32, so it too keeps its look from picture to picture.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
FAMILY_STYLES = {"random": ("black", "o"), "herding": ("#ff7f0e", "v"), "k-center": ("#8c564b", "P"),
                 "dm": ("#2ca02c", "^"), "datadam": ("#d62728", "s"), "ncfm": ("#17becf", "X"),
                 "mtt": ("#e377c2", "D"), "cvdd": ("#1f77b4", "o"), "dc": ("#9467bd", "<"), "dsa": ("#9467bd", ">")}


def family(row: Row) -> str:
    return row.method or (row.base or row.label).split(".")[0].split("+")[0]


def style(name: str) -> tuple[str, str]:
    """(colour, marker) of a family; published names ("DSA", "k-center") map to the same families."""
    key = name.lower()
    if key in FAMILY_STYLES:
        return FAMILY_STYLES[key]
    slot = zlib.crc32(key.encode())
    return PALETTE[slot % len(PALETTE)], MARKERS[(slot // len(PALETTE)) % len(MARKERS)]


def _published(tables: list[Table]) -> list[Published]:
    """Published figures whose evaluation the tables' protocol matches best, at the IPCs measured here (the
    whole-set figure is a line, not a dot)."""
    ipcs = {t.ipc for t in tables}
    return [p for p in PUBLISHED if p.dataset == tables[0].dataset and p.closest == tables[0].protocol
            and p.ipc in ipcs]


def _figure(width: float = 7.6, height: float = 4.2):
    from matplotlib.figure import Figure   # late: matplotlib is slow to import; no pyplot state
    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_METADATA, bbox_inches="tight", pad_inches=0.15)
    return path


# ------------------------------------------------------------------ which pictures exist

def _groups(tables: list[Table]) -> dict[tuple[str, str], list[Table]]:
    by_protocol: dict[tuple[str, str], list[Table]] = defaultdict(list)
    for t in tables:
        by_protocol[(t.dataset, t.protocol_hash)].append(t)
    return by_protocol


def _ipc_kind(group: list[Table]) -> str | None:
    """"lines" where some row has two IPCs, "dots" where the protocol has one IPC (or none repeats) but at least
    two points with the published figures, None where the picture would hold a single point."""
    points = sum(len(t.rows) for t in group) + len(_published(group))
    if points < 2:
        return None
    per_label = defaultdict(set)
    for t in group:
        for r in t.rows:
            per_label[r.base or r.label].add(t.ipc)
    return "lines" if any(len(ipcs) > 1 for ipcs in per_label.values()) else "dots"


def planned_pictures(tables: list[Table]) -> dict[tuple, str]:
    """The file name of every plot the tables give, keyed ("ipc", dataset, hash) and ("time", dataset, hash, ipc);
    the text links these without drawing them."""
    names: dict[tuple, str] = {}
    for (dataset, digest), group in _groups(tables).items():
        kind = _ipc_kind(group)
        if kind:
            names[("ipc", dataset, digest)] = plot_name("acc-vs-ipc" if kind == "lines" else "acc-dots", group[0], False)
        for t in group:
            if len(t.rows) >= 2:
                names[("time", dataset, digest, t.ipc)] = plot_name("acc-vs-time", t, True)
    return names


# ------------------------------------------------------------------ the plots

def accuracy_vs_ipc(tables: list[Table], path: Path) -> Path:
    """One line per row label over the IPCs of one dataset and protocol, coloured by family, flip dashed, each
    labelled at its last point; published figures hollow; the whole training set dotted."""
    fig, ax = _figure(7.6, max(4.2, 0.2 * len({r.base or r.label for t in tables for r in t.rows}) + 1.4))
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    rows: dict[str, Row] = {}
    for t in sorted(tables, key=lambda t: t.ipc):
        for r in t.rows:   # one figure of record per label and table: a line joins a label's IPCs
            series[r.base or r.label].append((t.ipc, 100 * r.mean, 100 * r.std))
            rows[r.base or r.label] = r
    pub = _published(tables)
    for label in sorted(series):
        pts, r = series[label], rows[label]
        colour, marker = style(family(r))
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], capsize=3,
                    color=colour, marker=marker or "o", markersize=5, linestyle="--" if r.flip else "-")
    for method in sorted({p.method for p in pub}):
        colour, marker = style(method)
        pts = [p for p in pub if p.method == method]
        ax.plot([p.ipc for p in pts], [p.mean for p in pts], linestyle="none", marker=marker or "o", markersize=9,
                markerfacecolor="none", markeredgecolor=colour, markeredgewidth=1.5, label=f"{method} (published)")
    whole = next((t.whole for t in tables if t.whole is not None), None)
    if whole is not None:
        ax.axhline(100 * whole.mean, linestyle=":", color="gray", label="whole training set")
    ipcs = sorted({t.ipc for t in tables})
    ax.set_xscale("log")
    ax.set_xticks(ipcs)
    ax.set_xticklabels([str(i) for i in ipcs])
    ax.minorticks_off()
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel("test accuracy (%), final epoch")
    t0 = tables[0]
    ax.set_title(f"{t0.dataset}, protocol {t0.protocol} #{t0.protocol_hash[:8]}: accuracy vs IPC "
                 f"(dashed: +flip; hollow: published)", fontsize=10)
    ax.grid(alpha=0.3)
    _label_column(ax, [(series[label][-1][0], series[label][-1][1], f"{label} (IPC {series[label][-1][0]})",
                        style(family(rows[label]))[0], rows[label].flip) for label in series])
    _legend_below(ax)
    return _save(fig, path)


def accuracy_dots(tables: list[Table], path: Path) -> Path:
    """A dot chart: one line per row (and published figure) and IPC, accuracy along x; hollow = published."""
    entries = []   # (text, mean, std, colour key, hollow)
    pub = _published(tables)
    for t in sorted(tables, key=lambda t: t.ipc):
        these = [(f"{r.label} · IPC {t.ipc}", 100 * r.mean, 100 * r.std, family(r), False, r.flip) for r in t.rows]
        these += [(f"{p.method} · IPC {p.ipc} (published)", p.mean, p.std or 0.0, p.method, True, False)
                  for p in pub if p.ipc == t.ipc]
        entries += sorted(these, key=lambda e: e[1])   # IPC by IPC from the bottom, each best on top
    fig, ax = _figure(7.0, 1.2 + 0.32 * len(entries))
    for y, (text, mean, std, key, hollow, flip) in enumerate(entries):
        colour, marker = style(key)
        ax.errorbar([mean], [y], xerr=[std], capsize=3, color=colour, marker=marker or "o", markersize=7,
                    markerfacecolor="none" if hollow else colour, markeredgewidth=1.5, linestyle="none")
    ax.set_yticks(range(len(entries)))
    ax.set_yticklabels([e[0] for e in entries], fontsize=8)
    whole = next((t.whole for t in tables if t.whole is not None), None)
    if whole is not None:
        ax.axvline(100 * whole.mean, linestyle=":", color="gray")
    ax.set_xlabel("test accuracy (%), final epoch (hollow: published, not measured here)")
    t0 = tables[0]
    ax.set_title(f"{t0.dataset}, protocol {t0.protocol} #{t0.protocol_hash[:8]}", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def _spread(values: list[float], gap: float) -> list[float]:
    """Label heights near `values` (sorted ascending) at least `gap` apart, centred on the values' span."""
    out = []
    for v in values:
        out.append(max(v, out[-1] + gap) if out else v)
    shift = (out[-1] - values[-1]) / 2 if out else 0.0
    return [o - shift for o in out]


LABEL_PX = 13   # screen pixels between two labels of a column: 7-point text is about 10 high


def _label_column(ax, points: list[tuple[float, float, str, str, bool]]) -> None:
    """Label (x, y, text, colour, dashed) points in a column right of the axes, each joined to its point by a
    thin line (dashed for +flip), the labels spread so that none covers another."""
    points = sorted(points, key=lambda p: p[1])
    fig = ax.get_figure()
    axes_px = ax.get_position().height * fig.get_figheight() * fig.dpi
    heights = [p[1] for p in points]
    for _ in range(3):   # widening the axes to hold the labels shrinks a pixel's span: settle in a few rounds
        low, high = ax.get_ylim()
        heights = _spread([p[1] for p in points], LABEL_PX * (high - low) / axes_px)
        if heights:
            ax.set_ylim(min(low, heights[0] - 1), max(high, heights[-1] + 1))
    for (x, y, text, colour, dashed), h in zip(points, heights):
        ax.annotate(text, xy=(x, y), xycoords="data", xytext=(1.03, h), textcoords=("axes fraction", "data"),
                    fontsize=7, color=colour, va="center", annotation_clip=False, zorder=5,
                    bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "edgecolor": "none"},
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.6, "alpha": 0.6,
                                "linestyle": "--" if dashed else "-", "shrinkA": 0, "shrinkB": 4})


def _legend_below(ax) -> None:
    """The legend (published figures, the whole training set) under the axes, never over the title or a point."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False)


def accuracy_vs_time(t: Table, path: Path) -> Path:
    """Accuracy against the seconds each row spent making its set (log scale). Every point is labelled in a
    column right of the axes, joined to its point by a thin line (dashed for +flip), so no label covers another."""
    fig, ax = _figure(7.6, max(4.8, 0.2 * len(t.rows) + 1.4))
    points = [(max(mean_seconds(r) or 0.0, 0.1), 100 * r.mean, r) for r in t.rows]
    for seconds, acc, r in points:
        colour, marker = style(family(r))
        ax.errorbar([seconds], [acc], yerr=[100 * r.std], color=colour, marker=marker or "o", capsize=3,
                    markeredgewidth=1.5)
    if t.whole is not None:
        ax.axhline(100 * t.whole.mean, linestyle=":", color="gray")
        ax.annotate("whole training set", (0.01, 100 * t.whole.mean), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize=7, color="gray")
    _label_column(ax, [(seconds, acc, f"{r.label} ({acc:.1f})", style(family(r))[0], r.flip)
                       for seconds, acc, r in points])
    ax.set_xscale("log")
    ax.set_xlabel("distillation / selection time (s, mean over seeds; unmeasured or < 0.1 s drawn at 0.1)")
    ax.set_ylabel("test accuracy (%), final epoch")
    ax.set_title(f"{t.title}: accuracy vs time", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def set_grids(tables: list[Table], folder: Path) -> list[Path]:
    """A class-by-class grid of every set file the tables name, ranked or in the appendix (missing files are
    skipped), in pixels as `dsdistill show` draws it (a ZCA set unwhitened)."""
    written = []
    paths = sorted({p for t in tables for r in t.rows + t.appendix for p in r.set_paths if p and os.path.exists(p)})
    for p in paths:
        target = folder / grid_name(p)
        draw(p, target)
        written.append(target)
    return written


OWN_PICTURES = ("acc-vs-*.png", "acc-dots-*.png", "sets/*.png")   # what write_plots makes; nothing else is touched


def write_plots(tables: list[Table], folder: Path) -> list[Path]:
    """Every picture planned_pictures names, and the set grids; a picture of ours that the store no longer gives
    (a set renamed or gone) is removed, so the folder always matches the leaderboard."""
    written = []
    groups = _groups(tables)
    for key, name in sorted(planned_pictures(tables).items()):
        group = groups[(key[1], key[2])]
        if key[0] == "time":
            written.append(accuracy_vs_time(next(t for t in group if t.ipc == key[3]), folder / name))
        elif name.startswith("acc-dots"):
            written.append(accuracy_dots(group, folder / name))
        else:
            written.append(accuracy_vs_ipc(group, folder / name))
    written += set_grids(tables, folder / "sets")
    for stale in {p for pattern in OWN_PICTURES for p in folder.glob(pattern)} - set(written):
        stale.unlink()
    return written
