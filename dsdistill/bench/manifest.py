"""The manifest of published sets (synthetic_sets/manifest.json): for each set file its sha256s, method,
config, the command that made it and its scores by protocol, taken from the result store. Rebuilt, never
edited: `dsdistill manifest synthetic_sets`. `check_manifest` is what the tests run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .._version import __version__
from .._io import file_sha256, read_json, write_json
from ..errors import ConfigError, DsdistillError
from ..synset import SyntheticSet
from .store import Store, open_store

MANIFEST = "manifest.json"


def _scores(store: Store, sha: str) -> dict[str, Any]:
    scores = {}
    for ev in store.records("eval"):
        if ev["set_sha256"] != sha:
            continue
        r = ev["report"]["results"][0]
        scores[ev["protocol"]] = {"protocol_version": ev["protocol_version"], "protocol_hash": ev["protocol_hash"],
                                  "arch": r["arch"], "mean": r["mean"], "std": r["std"], "models": len(r["accuracies"]),
                                  "accuracies": r["accuracies"], "hardware": ev["hardware"]}
    return dict(sorted(scores.items()))


def build_manifest(folder: str | Path, store: Store, command: str = "dsdistill manifest") -> dict[str, Any]:
    """Describe every .h5 file in `folder` and write folder/manifest.json."""
    folder = Path(folder)
    entries = []
    for path in sorted(folder.glob("*.h5")):
        s = SyntheticSet.load(path)
        entries.append({
            "file": path.name, "file_sha256": file_sha256(path), "payload_sha256": s.payload_sha256(),
            "dataset": s.dataset, "method": s.method, "ipc": s.ipc, "seed": s.seed,
            "method_config": s.method_config, "distill_iterations": s.distill_iterations,
            "distill_seconds": round(s.distill_seconds, 1), "created_utc": s.file_info.get("created_utc", ""),
            "command": s.extra.get("command", ""), "scores": _scores(store, s.payload_sha256()),
        })
    manifest = {"generated_by": command, "dsdistill_version": __version__, "store": store.root.as_posix(),
                "note": "scores: final-epoch test accuracy in [0, 1], mean and population std over the protocol's "
                        "listed model seeds", "sets": entries}
    write_json(folder / MANIFEST, manifest)
    return manifest


def check_manifest(folder: str | Path) -> list[str]:
    """Every listed file loads, validates (SyntheticSet.load checks the payload sha256 it carries) and has the
    file and payload sha256 the manifest names; every .h5 in the folder is listed. Returns the problems."""
    folder = Path(folder)
    remedy = f"rebuild it with `dsdistill manifest {folder}`"
    manifest = read_json(folder / MANIFEST, "set manifest", remedy)
    entries = manifest.get("sets") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"file", "file_sha256", "payload_sha256"}
                                                <= e.keys() for e in entries):
        raise ConfigError(f"{folder / MANIFEST} is not a dsdistill set manifest (no list of sets with file and "
                          f"sha256 entries); {remedy}")
    problems, listed = [], set()
    for entry in entries:
        path = folder / entry["file"]
        listed.add(entry["file"])
        try:
            s = SyntheticSet.load(path)
        except DsdistillError as err:
            problems.append(str(err))
            continue
        if file_sha256(path) != entry["file_sha256"]:
            problems.append(f"{path}: file sha256 differs from the manifest")
        if s.payload_sha256() != entry["payload_sha256"]:
            problems.append(f"{path}: payload sha256 differs from the manifest")
    problems += [f"{p}: not in the manifest" for p in sorted(folder.glob("*.h5")) if p.name not in listed]
    return problems


def write_manifest(folder: str | Path, store: str | Path | None = None,
                   command: str = "dsdistill manifest") -> dict[str, Any]:
    """`dsdistill manifest`: build_manifest with the scores of an existing store (default DEFAULT_STORE)."""
    return build_manifest(folder, open_store(store, existing=True), command)


def verify_manifest(folder: str | Path) -> None:
    """`dsdistill manifest --check`: check_manifest, every problem in one ConfigError."""
    problems = check_manifest(folder)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s): {'; '.join(problems)}")
