"""What every benchmark script shares: the import path, the allocator tuning and the provenance
header (command, hardware, date) that every results file carries."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from dsdistill._malloc import keep_freed_memory  # noqa: E402
from dsdistill.evaluate.report import hardware, utc_now  # noqa: E402

keep_freed_memory()


def header(title: str, device: str = "cpu") -> list[str]:
    return [f"# {title}", "", f"Command: `python {' '.join(sys.argv)}`", f"Hardware: {hardware()}",
            f"Device: {device}", f"Date: {utc_now()}", ""]


def write_results(path: str | None, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if path:
        from dsdistill._io import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(text)


def method_from_spec(spec: str, overrides: list[str] = ()):
    """'datadam.fmnist-cpu+flip=true' -> (the method, its preset's iteration budget or None).

    The preset comes first, then the `+key=value` parts of the spec, then `overrides` (synthesizers only)."""
    from dsdistill._config import parse_overrides
    from dsdistill.synthesizers import resolve_method
    name, *parts = spec.split("+")
    cls, preset = resolve_method(name)
    iterations = preset.pop("iterations", None)
    values = {**preset, **parse_overrides(cls.Config, parts + (list(overrides) if cls.kind == "synthesis" else []))}
    return cls(**values), iterations
