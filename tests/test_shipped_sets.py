"""Every set file committed to the repository still loads and validates under the current reader.

Stored sets are the project's results: a change of the reader or the schema that stops one of them from
loading (or changes its payload hash) must fail here, not in a user's leaderboard run."""
from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import pytest

from dsdistill.synset import SyntheticSet

ROOT = Path(__file__).resolve().parent.parent


def committed_sets() -> list[str]:
    """The .h5 files git tracks (untracked scratch files are not the project's)."""
    try:
        out = subprocess.run(["git", "ls-files", "*.h5"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): whatever is on disk
        return sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("**/*.h5") if ".venv" not in p.parts)
    return sorted(out.stdout.split())


SETS = committed_sets()


def test_the_repository_holds_sets() -> None:
    assert any(p.startswith("synthetic_sets/") for p in SETS)
    assert any(p.startswith("benchmarks/results/store/") for p in SETS)


@pytest.mark.parametrize("relative", SETS)
def test_committed_set_loads_and_validates(relative: str) -> None:
    path = ROOT / relative
    synset = SyntheticSet.load(path)  # checks format, version, dtypes, shapes, values and the payload sha256
    synset.validate(source=relative)
    with h5py.File(path) as f:
        assert synset.payload_sha256() == f.attrs["payload_sha256"]
        assert synset.ipc == f.attrs["ipc"] and synset.label_bytes == f.attrs["label_bytes"]
