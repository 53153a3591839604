"""The leaderboard: tables (markdown + CSV, and with --html a web page) regenerated from the result store, never
edited by hand.

One table per dataset, IPC and protocol hash (only equal hashes are comparable); hard-label and soft-label
protocols in separate sections. Under a soft-label protocol a row is also one teacher, and the table says which
teacher labelled each. A ranked row is one figure of record: mean ± std (population) over every model of every
set seed, its gain over random and its fraction of the whole-dataset accuracy under the same protocol, and
Welch's t-test against the row ranked just below it; its cost stands in a narrow table beside; probes and earlier
records stand in the appendix. The markdown and the page render one document (bench.board). The same store
always gives the same bytes: rows and tables are sorted, and no clock is read.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .._io import atomic_path
from ..errors import ConfigError
from .board import Block, Cell, Grid, Heading, Para, Picture, document, iterations
from .plots import write_plots
from .published import published_for
from .site import write_site
from .store import Store, open_store
from .tables import Row, Table, build_tables, mean_seconds


# ------------------------------------------------------------------ markdown

def _cell_md(cell: Cell, plots: str) -> str:
    return " ".join(f"[{text}]({plots}/{path})" for text, path in cell.links) if cell.links else cell.text


def render_md(blocks: list[Block], plots: str | None) -> str:
    """The document as markdown; pictures are links under `plots` (the plot folder relative to the file)."""
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Picture):
            lines += [f"{b.caption}: [{Path(b.path).name}]({plots}/{b.path})", ""]
        elif isinstance(b, Grid):
            lines += ["| " + " | ".join(b.columns) + " |", "|" + "---|" * len(b.columns)]
            lines += ["| " + " | ".join(_cell_md(c, plots or "") for c in row) + " |" for row in b.rows]
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def leaderboard_md(tables: list[Table], store: Store, plots: str | None, command: str) -> str:
    return render_md(document(tables, store, plots is not None, command), plots)


CSV_FIELDS = ["source", "dataset", "ipc", "label_mode", "protocol", "protocol_version", "protocol_hash", "rank",
              "method", "sets", "seeds", "models", "mean", "std", "gain_over_random", "fraction_of_whole",
              "distill_seconds", "distill_iterations", "peak_memory_mib", "welch_p_vs_next", "next_method",
              "published_how", "not_ranked_because"]


def leaderboard_csv(tables: list[Table]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t in tables:
        base = {"dataset": t.dataset, "ipc": t.ipc, "label_mode": t.label_mode, "protocol": t.protocol,
                "protocol_version": t.protocol_version, "protocol_hash": t.protocol_hash}
        ranked = ([(str(r.rank), r) for r in t.rows] + ([("ref", t.whole)] if t.whole else [])
                  + [("appendix", r) for r in t.appendix])
        for rank, r in ranked:
            whole = t.of_whole(r) if r is not t.whole else 1.0
            gain = t.gain(r) if r is not t.whole else None
            writer.writerow({**base, "source": "ours", "rank": rank, "method": r.label, "sets": len(r.seeds),
                             "seeds": " ".join(map(str, sorted(r.seeds))), "models": len(r.accuracies),
                             "mean": f"{100 * r.mean:.4f}", "std": f"{100 * r.std:.4f}",
                             "gain_over_random": "" if gain is None else f"{gain:.4f}",
                             "fraction_of_whole": "" if whole is None else f"{whole:.4f}",
                             "distill_seconds": "" if r is t.whole or mean_seconds(r) is None
                             else f"{mean_seconds(r):.1f}",
                             "distill_iterations": "" if r is t.whole else iterations(r),
                             "peak_memory_mib": "" if r.peak is None else f"{r.peak:.0f}",
                             "welch_p_vs_next": "" if r.p_next is None else f"{r.p_next:.4g}",
                             "next_method": r.next_label, "published_how": "", "not_ranked_because": r.why})
        for p in published_for(t.dataset, t.ipc):
            writer.writerow({**base, "source": "published", "rank": "", "method": p.method,
                             "mean": f"{p.mean:.4f}", "std": "" if p.std is None else f"{p.std:.4f}",
                             "published_how": f"{p.how}; closest protocol here: {p.closest}; IPC {p.ipc or 'all'}"})
    return out.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_report(store: Store, out: str | Path = "benchmarks/LEADERBOARD.md", csv_path: str | Path | None = None,
                 plots_dir: str | Path | None = None, command: str = "dsdistill report",
                 site_dir: str | Path | None = None) -> list[Path]:
    """Write LEADERBOARD.md, its CSV, (with plots_dir) the pictures and (with site_dir, which needs plots_dir)
    the HTML page; returns the files written. The markdown and the page render one document."""
    out = Path(out)
    csv_path = Path(csv_path) if csv_path else out.with_name("leaderboard.csv")
    if site_dir is not None and plots_dir is None:
        raise ConfigError("the HTML leaderboard shows the pictures: drop --no-plots to write it")
    tables = build_tables(store)
    written = []
    rel_plots = None
    if plots_dir is not None:
        plots_dir = Path(plots_dir)
        written += write_plots(tables, plots_dir)
        rel_plots = Path(os.path.relpath(plots_dir.resolve(), out.resolve().parent)).as_posix()
    blocks = document(tables, store, plots_dir is not None, command)
    _write_text(out, render_md(blocks, rel_plots))
    _write_text(csv_path, leaderboard_csv(tables))
    if site_dir is not None:
        grids = sorted(p.relative_to(plots_dir).as_posix() for p in written if p.parent.name == "sets")
        written.append(write_site(blocks, site_dir, plots_dir, grids))
    return [out, csv_path] + written


def regenerate(store: str | Path | None = None, out: str | Path = "benchmarks/LEADERBOARD.md",
               csv_path: str | Path | None = None, plots_dir: str | Path | None = None, *, draw: bool = True,
               command: str = "dsdistill report", html: bool = False,
               site_dir: str | Path | None = None) -> tuple[list[Path], Path | None]:
    """`dsdistill report`: write_report from an existing store (default DEFAULT_STORE), the pictures under
    `plots_dir` (default: plots/ beside `out`) unless not `draw`, and with `html` the page under `site_dir`
    (default: site/ beside `out`); returns (files written, plot folder or None)."""
    plots = None if not draw else Path(plots_dir) if plots_dir else Path(out).parent / "plots"
    site = None if not html else Path(site_dir) if site_dir else Path(out).parent / "site"
    return write_report(open_store(store, existing=True), out, csv_path, plots, command=command,
                        site_dir=site), plots


__all__ = ["Row", "Table", "build_tables", "leaderboard_md", "leaderboard_csv", "regenerate", "render_md",
           "write_report"]
