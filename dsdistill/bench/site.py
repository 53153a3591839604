"""The leaderboard as a static web page (`dsdistill report --html`): the same document as LEADERBOARD.md
(bench.board), rendered to one self-contained index.html: inline style, a few lines of inline JavaScript to sort
a table by a click on its header, no external resource (it works offline, from a clone).

The pictures are referenced relatively (`../plots/...`), not copied: the repository then holds one copy of every
picture, and the page can show no picture the markdown does not link. The page therefore lives beside the plot
folder it was written with (benchmarks/site/ beside benchmarks/plots/ by default).
"""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

from .._io import atomic_path
from .board import Block, Cell, Grid, Heading, Para, Picture

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2;cursor:pointer;user-select:none}
th.sorted-up::after{content:" \\25B2"}th.sorted-down::after{content:" \\25BC"}
tr:nth-child(even) td{background:#fafafa}
table.appendix td{color:#555}
tr.published td{font-style:italic}
.badge{font-size:11px;background:#fff3cd;border:1px solid #e0c36a;border-radius:3px;padding:0 4px;font-style:normal}
figure{margin:.5em 0 1.2em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:13px;color:#555}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{width:420px}
code{background:#f4f4f4;padding:0 3px}
"""

# Sort a table by the clicked column: numbers by data-sort, the rest by text; a second click reverses. Once loaded,
# the body states its broken images and script errors (data-broken-images, data-errors) for site_check.sh to read.
SCRIPT = """
window.addEventListener("error", function () {
  document.body.setAttribute("data-errors", String(Number(document.body.getAttribute("data-errors")) + 1));
}, true);
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (i) { return !i.complete || !i.naturalWidth; });
  document.body.setAttribute("data-broken-images", String(broken.length));
  document.body.setAttribute("data-loaded", "yes");
});
document.querySelectorAll("table").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var up = !th.classList.contains("sorted-up");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-up", "sorted-down"); });
      th.classList.add(up ? "sorted-up" : "sorted-down");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col], s = cell.getAttribute("data-sort");
        return s === null ? cell.textContent.trim() : parseFloat(s);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return up ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _inline(text: str) -> str:
    """Escape, then the two marks the document uses: `code` (taken as it is) and *emphasis* outside it."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else re.sub(r"\*([^*]+)\*", r"<em>\1</em>", part)
                   for i, part in enumerate(parts))


def _cell(cell: Cell, plots: str, published: bool, first: bool) -> str:
    sort = "" if cell.sort is None else f' data-sort="{cell.sort!r}"'
    if cell.links:
        body = " ".join(f'<a href="{html.escape(f"{plots}/{path}")}">{html.escape(text)}</a>'
                        for text, path in cell.links)
    else:
        body = html.escape(cell.text)
    if published and first:
        body += ' <span class="badge">published</span>'
    return f"<td{sort}>{body}</td>"


def _table(grid: Grid, plots: str) -> list[str]:
    published = grid.kind == "published"
    lines = [f'<table class="{grid.kind}">', "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>"
                                                                     for c in grid.columns) + "</tr></thead>", "<tbody>"]
    for row in grid.rows:
        lines.append(('<tr class="published">' if published else "<tr>")
                     + "".join(_cell(c, plots, published, i == 0) for i, c in enumerate(row)) + "</tr>")
    return lines + ["</tbody>", "</table>"]


def _figure(src: str, caption: str) -> list[str]:
    return [f'<figure><a href="{html.escape(src)}"><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"</a><figcaption>{html.escape(caption)}</figcaption></figure>"]


def render_html(blocks: list[Block], plots: str, grids: list[str]) -> str:
    """The document as one page; `plots`: the plot folder relative to the page; `grids`: every set grid's path
    under it, shown in a gallery at the end."""
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>dsdistill leaderboard</title>", f"<style>{STYLE}</style>", "</head>", '<body data-errors="0">']
    for b in blocks:
        if isinstance(b, Heading):
            lines.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            lines.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Picture):
            lines += _figure(f"{plots}/{b.path}", b.caption)
        elif isinstance(b, Grid):
            lines += _table(b, plots)
    if grids:
        lines += ["<h2>Every set's grid</h2>", '<div class="gallery">']
        for g in grids:
            lines += _figure(f"{plots}/{g}", Path(g).stem)
        lines.append("</div>")
    lines += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(lines) + "\n"


def write_site(blocks: list[Block], site_dir: str | Path, plots_dir: str | Path, grids: list[str]) -> Path:
    """Write site_dir/index.html, its pictures referenced relatively from plots_dir."""
    site_dir, plots_dir = Path(site_dir), Path(plots_dir)
    rel = Path(os.path.relpath(plots_dir.resolve(), site_dir.resolve())).as_posix()
    target = site_dir / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text(render_html(blocks, rel, grids), encoding="utf-8")
    return target


__all__ = ["render_html", "write_site"]
