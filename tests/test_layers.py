"""The import rules of CONTRIBUTING.md's layer table, checked on the source (ast: nothing is imported or run)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dsdistill"
# Allowed for now, each with the issue that removes it; the list only shrinks.
KNOWN: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[str] = set()


def layer_table() -> dict[str, int]:
    """unit -> layer, read from CONTRIBUTING.md so the prose and the test cannot drift apart."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for row in re.findall(r"^\| (\d+) \| (.+?) \|", section, re.M):
        for unit in re.findall(r"`([\w.]+)`", row[1]):
            layers[unit] = int(row[0])
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(module: str, source: str | None = None) -> list[tuple[str, int]]:
    """(imported dsdistill module, line) for every import in `module`, resolved to the modules it loads.

    `from pkg import name` loads pkg (unless pkg is an ancestor, already loaded) and pkg.name when that is a
    module; imports under `if TYPE_CHECKING:` are not run and do not count."""
    path = MODULES.get(module, PACKAGE / "_fake.py")
    tree = ast.parse(path.read_text() if source is None else source)
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            subs = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES]
            ancestor = module == source or module.startswith(source + ".")
            targets = subs + ([] if ancestor and source != "dsdistill" else [source])
        else:
            continue
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts and parts[0] == "dsdistill" and ".".join(parts) != module:
                found.append((".".join(parts), node.lineno))
    return found


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dsdistill"


GRAPH = {m: imports(m) for m in MODULES}


def test_every_unit_has_a_layer():
    units = {unit(m) for m in MODULES} - {"dsdistill"}
    assert units - set(layer_table()) == set(), "add the unit to CONTRIBUTING.md's layer table"


def test_no_module_imports_the_package_root_and_none_imports_cli():
    bad = [f"{m}:{line} imports {t}" for m, targets in GRAPH.items() for t, line in targets
           if t == "dsdistill" or (unit(t) == "cli" and unit(m) not in {"cli", "__main__"})
           and (unit(m), "cli") not in KNOWN]
    assert bad == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "dsdistill"))
def test_imports_go_down_the_layers(module):
    layers = layer_table()
    here = unit(module)
    bad = [f"line {line}: {here} (layer {layers[here]}) imports {t} (layer {layers[unit(t)]})"
           for t, line in GRAPH[module]
           if unit(t) != here and layers[unit(t)] >= layers[here] and (here, unit(t)) not in KNOWN]
    assert bad == []


def test_no_import_cycle():
    edges = {m: {t for t, _ in targets} for m, targets in GRAPH.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    allowed = KNOWN_CYCLES | {c for c in cycles if "dsdistill.cli" in c and ("bench", "cli") in KNOWN}
    assert [c for c in cycles if c not in allowed] == []


def test_the_checker_resolves_what_it_must():
    """Relative and absolute forms, submodules named in `from X import`, TYPE_CHECKING-only imports."""
    fake = ("from ..bench import store\nfrom . import dsa\nimport dsdistill.cli\nfrom dsdistill import evaluate\n"
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..teachers import pool\n")
    found = {t for t, _ in imports("dsdistill.augment.fake", fake)}
    assert found == {"dsdistill.bench", "dsdistill.bench.store", "dsdistill.augment.dsa", "dsdistill.cli",
                     "dsdistill", "dsdistill.evaluate"}
    assert layer_table()["data"] < layer_table()["synthesizers"] < layer_table()["bench"] < layer_table()["cli"]
