"""The paper-settings dry run's smallest cell, and the GPU check's scripts parse (their CPU rehearsal:
`DEVICE=cpu benchmarks/gpu_check.sh`, recorded in benchmarks/results/gpu-check-cpu-rehearsal.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import paper_dryrun  # noqa: E402


def test_the_smallest_paper_cell_runs_two_iterations_and_is_projected():
    cell = paper_dryrun.cells(quick=True)[0]
    assert (cell["dataset"], cell["ipc"], cell["spec"]) == ("cifar10", 1, "dm.paper")
    result = paper_dryrun.worker(cell, classes=1)
    assert all(s > 0 for s in result["seconds"]) and result["flops_per_iteration"] > 0
    assert result["scale"] == 10 and result["iterations"] == 20000
    line = paper_dryrun.row(cell, result)
    assert "| yes |" in line and "20000" in line


def test_tiny_imagenet_needs_the_chunked_joint_pass_to_fit():
    """The issue's figure: one joint pass over Tiny-ImageNet's 200 classes does not fit 80 GB; in chunks it does."""
    cell = {"dataset": "tiny-imagenet", "ipc": 50, "method": "dm", "spec": "dm.paper"}
    memory = paper_dryrun.memory_only(cell)["memory_gb"]
    assert memory["activations (unchunked joint pass)"] > 100
    assert sum(v for k, v in memory.items() if "unchunked" not in k) < paper_dryrun.GPU_GB


def test_the_gpu_check_scripts_parse():
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")]).returncode == 0
    out = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--device" in out.stdout
