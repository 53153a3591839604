"""The tests mirror the package (CONTRIBUTING.md, "Set-up and tests"): `dsdistill/<folder>/<module>.py` is tested in
`tests/test_<folder>_<module>.py` or in its folder's `tests/test_<folder>.py`; a top-level `dsdistill/[_]<module>.py`
in `tests/test_<module>.py`. Checked on file names (nothing is imported), both ways: a module without its test
module fails, and so does a test module that names no module or folder (a name left over from before a move)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dsdistill"
TESTS = Path(__file__).resolve().parent

# Modules without a test module of their own, each with the reason. The list only shrinks.
UNTESTED_ALONE = {
    "__init__": "the public API: every test imports through it, test_integration.py runs it on real data",
    "__main__": "`python -m dsdistill`: test_cli.py runs it",
    "_version": "one constant",
    "errors": "the error types: each module's tests check the one-line errors it raises",
    "_progress": "a progress bar on stderr: output only",
}
# Test modules that check the whole package or the repository's data rather than one module.
ACROSS = {
    "test_layers": "the import rule of CONTRIBUTING.md's layer table, over every module",
    "test_layout": "this file",
    "test_same_bytes": "pinned bytes of small runs of every method and both evaluation paths",
    "test_integration": "the public API end to end on the real Fashion-MNIST",
    "test_benchmark_data": "the shipped suites and results (benchmarks/), not code",
    "test_shipped_sets": "the set files committed under synthetic_sets/, not code",
    "test_gpu_ready": "device safety across teachers and synthesizers (the meta-device guard, the joint-pass budget)",
    "test_benchmarks_gpu_ready": "the paper dry run and GPU check scripts under benchmarks/, not library code",
    "test_bad_inputs": "every command's bad inputs as one table (one line, exit 2, nothing written), through cli.main",
}


def unit_names(path: Path) -> list[str]:
    """The test module names that may test `path`: its own, then its folder's."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if len(parts) == 1:
        return [f"test_{parts[0].lstrip('_')}"]
    folder = parts[0].lstrip("_")
    own = [] if parts[-1] == "__init__" else [f"test_{folder}_{'_'.join(p.lstrip('_') for p in parts[1:])}"]
    return own + [f"test_{folder}"]


def reexports_only(path: Path) -> bool:
    """A folder's __init__.py that only gathers its modules' names: any test of the folder tests it."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(n, (ast.Import, ast.ImportFrom)) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        or (isinstance(n, ast.Assign) and [ast.unparse(x) for x in n.targets] == ["__all__"]) for n in body)


def is_tested(path: Path, tests: set[str]) -> bool:
    names = unit_names(path)
    if len(path.relative_to(PACKAGE).parts) > 1 and reexports_only(path):
        return any(t == names[-1] or t.startswith(names[-1] + "_") for t in tests)
    return any(u in tests for u in names)


def library() -> dict[str, Path]:
    return {str(p.relative_to(PACKAGE)): p for p in sorted(PACKAGE.rglob("*.py"))}


def present() -> set[str]:
    return {p.stem for p in TESTS.glob("test_*.py")}


def test_every_module_has_its_test_module():
    tests = present()
    missing = [f"{name}: add tests/{unit_names(p)[0]}.py" for name, p in library().items()
               if name.removesuffix(".py") not in UNTESTED_ALONE and not is_tested(p, tests)]
    assert missing == []


def test_every_test_module_names_a_module_or_folder():
    known = {u for p in library().values() for u in unit_names(p)} | set(ACROSS)
    stray = sorted(present() - known)
    assert stray == [], "rename each to test_<folder>_<module>.py (or test_<folder>.py) of what it tests"


def test_the_exceptions_are_still_needed():
    """An exception whose module is gone, or has gained its own test module, leaves the list."""
    tests = present()
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert {m for m in UNTESTED_ALONE if m not in top or f"test_{m.lstrip('_')}" in tests} == set()
    assert {t for t in ACROSS if t not in tests} == set()


def test_the_names_map_as_contributing_says():
    assert unit_names(PACKAGE / "teachers" / "pool.py") == ["test_teachers_pool", "test_teachers"]
    assert unit_names(PACKAGE / "_io.py") == ["test_io"]
    assert unit_names(PACKAGE / "synset" / "__init__.py") == ["test_synset"]
    assert reexports_only(PACKAGE / "teachers" / "__init__.py") and not reexports_only(PACKAGE / "cli.py")
    assert is_tested(PACKAGE / "teachers" / "__init__.py", {"test_teachers_pool"})
    assert not is_tested(PACKAGE / "teachers" / "pool.py", {"test_teachers_experts"})
