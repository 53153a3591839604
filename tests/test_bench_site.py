"""The leaderboard's layout: figures of record, shared ranks, the one document rendered to markdown and HTML, the
HTML page parsed (every row, image and link), and the pictures' rules."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from dsdistill.bench.board import Grid, document
from dsdistill.bench.plots import planned_pictures, style
from dsdistill.bench.report import render_md
from dsdistill.bench.site import render_html
from dsdistill.bench.store import Store
from dsdistill.bench.tables import Row, Table, build_tables, of_record, shared_ranks
from dsdistill.cli import main

REPO = Path(__file__).resolve().parents[1]


def row(label, accs, *, suite="fmnist-cpu", newest="2026-01-01T00:00:00", command="", method="", flip=False):
    return Row(label, "synthesis", accuracies=accs, seeds=[0], base=label.split(" [")[0], suites=[suite],
               commands=[command], newest=newest, method=method or label.split(".")[0], flip=flip)


# ------------------------------------------------------------------ figures of record and ranks

def test_of_record_sends_probes_and_earlier_records_to_the_appendix():
    rows = [row("dm", [0.7, 0.71]), row("dm [abc]", [0.6, 0.61], newest="2025-01-01T00:00:00"),
            row("mtt", [0.5, 0.52], suite="fmnist-cpu-probes"),
            row("ncfm", [0.4, 0.41], suite="imported", command="python benchmarks/accuracy.py --name fmnist-x-probes"),
            row("random", [0.3, 0.31])]
    kept = of_record(rows)
    assert [r.label for r in kept] == ["dm", "random"]
    why = {r.label: r.why for r in rows}
    assert why["dm [abc]"] == "earlier record of dm (newer: dm)"
    assert why["mtt"] == "probe: fmnist-cpu-probes" and why["ncfm"] == "probe: fmnist-x-probes"
    assert why["dm"] == why["random"] == ""


def test_rows_the_welch_test_cannot_order_share_a_rank():
    rows = [row(name, []) for name in "abcde"]
    for r, p in zip(rows, (0.5, 0.01, 0.05, None, None)):
        r.p_next = p
    rows[3].accuracies, rows[4].accuracies = [0.5, 0.5], [0.5, 0.5]   # undefined p, equal means: tied
    shared_ranks(rows)
    assert [r.rank for r in rows] == [1, 1, 3, 3, 3]
    rows[4].accuracies = [0.4, 0.4]
    shared_ranks(rows)
    assert [r.rank for r in rows] == [1, 1, 3, 3, 5]


def test_the_committed_store_ranks_each_recipe_once():
    tables = build_tables(Store(REPO / "benchmarks/results/store"))
    for t in tables:
        bases = [r.base or r.label for r in t.rows]
        assert len(bases) == len(set(bases)), t.title
        assert not any(r.why for r in t.rows) and all(r.why for r in t.appendix)
        assert all(r.rank for r in t.rows) and not any(r.rank for r in t.appendix)
        assert all("-probes" not in s for r in t.rows for s in r.suites)


# ------------------------------------------------------------------ one document, two renderers

def toy_tables() -> list[Table]:
    a, b = row("dm", [0.70, 0.72], method="dm"), row("dm+flip=true", [0.69, 0.70], method="dm", flip=True)
    c = row("random", [0.50, 0.52], method="random")
    probe = row("mtt", [0.6, 0.61], suite="x-probes", method="mtt")
    ranked = of_record([a, b, c, probe])
    for upper, lower, p in zip(ranked, ranked[1:], (0.5, 0.01)):
        upper.p_next, upper.next_label = p, lower.label
    shared_ranks(ranked)
    t1 = Table("fashion-mnist", 1, "hard", "dc", 1, "0" * 16, ranked, None, [probe])
    only_probe = row("mtt", [0.6, 0.61], suite="x-probes", method="mtt")
    of_record([only_probe])
    t10 = Table("fashion-mnist", 10, "hard", "dc", 1, "0" * 16, [], None, [only_probe])
    return [t1, t10]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.refs, self.scripts, self.in_body_rows = 0, [], 0, False
        self.external = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tbody":
            self.in_body_rows = True
        elif tag == "tr" and self.in_body_rows:
            self.rows += 1
        elif tag in ("img", "script", "link", "a"):
            ref = attrs.get("src") or attrs.get("href")
            if ref:
                (self.external if "://" in ref or ref.startswith("//") else self.refs).append(ref)
            self.scripts += tag == "script"

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.in_body_rows = False


def test_markdown_and_html_render_the_same_tables(tmp_path):
    tables = toy_tables()
    store = Store(tmp_path / "store")
    blocks = document(tables, store, True, "dsdistill report")
    grids = [b for b in blocks if isinstance(b, Grid)]
    assert [g.kind for g in grids] == ["ranked", "cost", "appendix", "appendix", "published"]
    md = render_md(blocks, "plots")
    page = Page()
    page.feed(render_html(blocks, "../plots", []))
    assert page.rows == sum(len(g.rows) for g in grids) and page.scripts == 1 and not page.external
    for g in grids:   # every cell of every table, in both renderings
        for cells in g.rows:
            assert "| " + " | ".join(c.text if not c.links else " ".join(f"[{t}](plots/{p})" for t, p in c.links)
                                     for c in cells) + " |" in md
    assert "No figure of record under this protocol and IPC" in md        # the IPC 10 table is not printed empty
    assert md.count("| # | method |") == 1
    assert "| 1 | dm |" in md and "| 1 | dm+flip=true |" in md and "| 3 | random |" in md   # p 0.5 shares a rank, 0.01 does not


def test_report_html_writes_a_page_whose_rows_images_and_links_resolve(tmp_path, monkeypatch, capsys):
    """The committed store, reported into a scratch folder: the page holds every table row, the plots and every
    set's grid, and every src and href resolves to a file."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "board"
    assert main(["report", "--out", str(out / "LEADERBOARD.md"), "--html"]) == 0
    assert "site" in capsys.readouterr().out
    index = out / "site" / "index.html"
    text = index.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    tables = build_tables(Store("benchmarks/results/store"))
    grids = [b for b in document(tables, Store("benchmarks/results/store"), True, "x") if isinstance(b, Grid)]
    assert page.rows == sum(len(g.rows) for g in grids) and not page.external
    assert page.refs and all((index.parent / ref).resolve().is_file() for ref in page.refs)
    drawn = {p.name for p in (out / "plots" / "sets").iterdir()}
    shown = {Path(ref).name for ref in page.refs if "/sets/" in ref}
    assert drawn and drawn == shown                                   # every set's grid, nothing else
    assert all(name in text for name in planned_pictures(tables).values())
    assert text.count('<tr class="published">') == sum(len(g.rows) for g in grids if g.kind == "published") > 0
    assert text.count('<span class="badge">published</span>') == text.count('<tr class="published">')


def test_report_html_needs_the_pictures(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["report", "--out", str(tmp_path / "L.md"), "--html", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop --no-plots" in err


def test_committed_site_is_generated_from_the_committed_store(monkeypatch):
    monkeypatch.chdir(REPO)
    store = Store("benchmarks/results/store")
    tables = build_tables(store)
    blocks = document(tables, store, True, "dsdistill report --html")
    grids = sorted(f"sets/{p.name}" for p in (REPO / "benchmarks/plots/sets").iterdir())
    assert render_html(blocks, "../plots", grids) == (REPO / "benchmarks/site/index.html").read_text(), \
        "rerun `dsdistill report --html`"


# ------------------------------------------------------------------ the pictures' rules

def test_no_picture_of_a_single_point_and_a_dot_chart_for_one_ipc():
    one = Table("mnist", 1, "hard", "mtt", 1, "1" * 16, [row("mtt", [0.5, 0.6])])    # no published mtt figure
    assert planned_pictures([one]) == {}
    lone_ipc = Table("fashion-mnist", 10, "hard", "dc-noaug", 1, "2" * 16, [row("random", [0.7, 0.72])])
    assert planned_pictures([lone_ipc]) == {("ipc", "fashion-mnist", "2" * 16):
                                            "acc-dots-fashion-mnist-dc-noaug-22222222.png"}
    tables = toy_tables()
    tables[1].rows = [row("dm", [0.8, 0.81], method="dm"), row("random", [0.7, 0.71], method="random")]
    names = planned_pictures(tables)
    assert names[("ipc", "fashion-mnist", "0" * 16)] == "acc-vs-ipc-fashion-mnist-dc-00000000.png"
    assert set(k[0] for k in names) == {"ipc", "time"} and len(names) == 3


def test_a_family_keeps_its_colour_and_marker_everywhere():
    assert style("dm") == style("DM") and style("DSA") == style("dsa") and style("dm") != style("mtt")
    assert style("some-new-method") == style("some-new-method")


def test_show_writes_jpeg_or_refuses_the_suffix(tmp_path, capsys):
    from PIL import Image

    path = sorted((REPO / "benchmarks/results/fmnist-dm-datadam-cpu/sets").glob("dm*ipc1*.h5"))[0]
    assert main(["show", str(path), "--out", str(tmp_path / "x.jpg")]) == 0
    with Image.open(tmp_path / "x.jpg") as image:
        assert image.format == "JPEG"
    assert main(["show", str(path), "--out", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".png, .jpg or .jpeg" in err and not (tmp_path / "x.gif").exists()


def test_plots_draw_only_figures_of_record(tmp_path, monkeypatch):
    """The probe in toy_tables' appendix (an mtt row) is in no plot: its family is never styled."""
    from dsdistill.bench import plots
    styled = []
    real = plots.style
    monkeypatch.setattr(plots, "style", lambda name: styled.append(name.lower()) or real(name))
    tables = toy_tables()
    tables[1].rows = [row("dm", [0.8, 0.81], method="dm"), row("random", [0.7, 0.71], method="random")]
    written = plots.write_plots(tables, tmp_path)
    assert {p.name.split("-fashion")[0] for p in written} == {"acc-vs-ipc", "acc-vs-time"}
    assert "mtt" not in styled and {"dm", "random", "dsa"} <= set(styled)   # DSA: published under dc, hollow


def test_inline_marks_leave_code_alone():
    from dsdistill.bench.site import _inline
    assert _inline("suites named `*-probes` and *a* <b>") == \
        "suites named <code>*-probes</code> and <em>a</em> &lt;b&gt;"
