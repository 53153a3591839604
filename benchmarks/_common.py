"""What every benchmark script shares: the import path, the allocator tuning, the provenance
header (command, hardware, date) that every results file carries, and the process-per-cell harness
(a cell measured in a fresh process has its own peak memory)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from dsdistill._malloc import keep_freed_memory  # noqa: E402
from dsdistill._provenance import hardware, peak_memory, status_mib, utc_now  # noqa: E402,F401  (status_mib: for the scripts)
from dsdistill.synthesizers import Built, build, resolve_method  # noqa: E402

keep_freed_memory()


def header(title: str, device: str = "cpu") -> list[str]:
    return [f"# {title}", "", f"Command: `python {' '.join(sys.argv)}`", f"Hardware: {hardware(features=True)}",
            f"Device: {device}", f"Date: {utc_now()}", ""]


def write_results(path: str | None, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    if path:
        from dsdistill._io import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(text)


def run_worker(script: str, args: Sequence[str], label: str, env: Mapping[str, str] | None = None) -> dict:
    """Run `python script args...` in a fresh process and return the JSON object on the last line it prints;
    when it fails, exit naming `label` with the end of its stderr."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{label} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_mib(device: str) -> float:
    """This process's peak memory: CUDA memory allocated since the last reset, or the peak resident set."""
    return peak_memory(device)[0]


def method_from_spec(spec: str, overrides: Sequence[str] = (), iterations: int | None = None,
                     minutes: float | None = None) -> Built:
    """'datadam.fmnist-cpu+flip=true' -> the method and its budget, through dsdistill's one factory.

    The preset comes first, then the `+key=value` parts of the spec, then `overrides`; `overrides` and the budget
    apply to synthesizers only (a run's --set and --iterations are meant for them, not the selections beside)."""
    name, *parts = spec.split("+")
    synthesis = resolve_method(name)[0].kind == "synthesis"
    if not synthesis:
        return build(name, parts)
    return build(name, [*parts, *overrides], iterations=iterations, minutes=minutes)
