"""Take results made before the store existed (benchmarks/accuracy.py's evaluation JSONs and the set
files beside them) into the store, so that the leaderboard starts from every number already measured.

Each JSON becomes an evaluation record (keyed by the set's sha256 and the protocol hash, as the runner
keys them) and its set a distillation record under the same recipe key the runner computes, so a suite
that asks for the same recipe finds it stored and does not make it again. A soft-label score joins the store
only when its teacher is known by sha256: labels stored in the set, or the committee the set names; a teacher
given on the command line is named in the report in words only, so such a score is refused.

Those imported distillation records measured no peak memory. `adopt_remade` replaces one with the record of
the same recipe remade by `bench --make-only` into another store, but only when the remade set has the same
payload sha256: every score of the set stays attached, and the old record is kept inside the new one.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .._distributed import single_process
from ..errors import ConfigError
from ..synset import SyntheticSet
from ..synthesizers import SYNTHESIZERS
from .._io import atomic_path, read_json
from .runner import Labels, display_path
from .store import Store, eval_key, open_store, set_labels
from .suite import recipe, recipe_key


def _distill_record(rep: dict[str, Any], synset: SyntheticSet, set_path: str, source: str) -> dict[str, Any]:
    kind = SYNTHESIZERS.get(synset.method).kind if synset.method in SYNTHESIZERS else "synthesis"
    budget = {"iterations": synset.distill_iterations, "minutes": None} if kind == "synthesis" else None
    seconds = synset.distill_seconds if kind == "synthesis" else None   # a selection's time was not recorded
    zca = synset.image_space == "zca"
    r = recipe(synset.dataset, synset.method, synset.method_config, synset.ipc, int(synset.seed or 0), budget, zca)
    return {
        "kind": "distill", "key": recipe_key(r), "recipe": r, "suite": "imported", "label": rep["method_label"],
        "method": synset.method, "spec": rep["method_label"].split("+")[0], "family": kind,
        "dataset": synset.dataset, "ipc": synset.ipc, "seed": int(synset.seed or 0), "zca": zca,
        **set_labels(synset), "method_config": synset.method_config, "budget": budget, "set_sha256": synset.payload_sha256(),
        "set_path": set_path, "stored_images": len(synset.images), "distill_seconds": seconds,
        "distill_iterations": synset.distill_iterations, "wall_seconds": seconds,
        "peak_memory_mib": None, "memory_kind": "not measured", "device": rep.get("device", ""),
        "command": synset.extra.get("command", rep.get("command", "")), "hardware": rep["hardware"],
        "dsdistill_version": synset.file_info.get("dsdistill_version", rep.get("dsdistill_version", "")),
        "torch_version": synset.file_info.get("torch_version", ""), "python": "",
        "created_utc": synset.file_info.get("created_utc", rep["created_utc"]), "imported_from": source,
    }


def _labels(rep: dict[str, Any], distill: dict[str, Any], path: Path) -> Labels:
    """Where an imported score's targets came from (as the runner's Labels)."""
    if rep["labels"] != "soft":
        return Labels("hard")
    if rep.get("label_source") == "stored":
        return Labels("stored")
    given = any(str(n).startswith("soft labels online from the given") for n in rep.get("notes", []))
    if distill.get("teacher") and not given:
        return Labels("set", distill.get("teacher_path", ""), distill["teacher"])
    raise ConfigError(f"{path}: a soft-label score by a teacher given on the command line, which the report names in "
                      "words only; the store keys such scores by the members' sha256, so score the set with a suite "
                      "entry (teacher = \"DIR\") instead")


def _eval_record(rep: dict[str, Any], distill: dict[str, Any], source: str, labels: Labels) -> dict[str, Any]:
    report = {k: v for k, v in rep.items() if k not in ("method_label", "set_seed", "command", "distill")}
    seconds = sum(r["seconds"] for r in rep["results"])
    return {
        "kind": "eval", "key": eval_key(rep["set_sha256"], rep["protocol_hash"], labels.key),
        "set_sha256": rep["set_sha256"],
        "distill_key": distill["key"], "protocol": rep["protocol"], "protocol_version": rep["protocol_version"],
        "protocol_hash": rep["protocol_hash"], "label_mode": rep["labels"], "labels": labels.source,
        "teacher": labels.record(), "teacher_key": labels.key, "zca": distill["zca"], "dataset": rep["dataset"],
        "label": distill["label"], "method": rep["method"], "family": distill["family"], "ipc": rep["ipc"],
        "seed": distill["seed"], "report": report, "wall_seconds": seconds, "peak_memory_mib": None,
        "memory_kind": "not measured", "device": rep.get("device", ""), "command": rep.get("command", ""),
        "hardware": rep["hardware"], "dsdistill_version": rep.get("dsdistill_version", ""), "torch_version": "",
        "python": "", "created_utc": rep["created_utc"], "imported_from": source,
    }


def import_reports(folder: str | Path, store: Store, root: str | Path = ".") -> tuple[int, int]:
    """Import every evaluation JSON in `folder`; returns (records added, records already stored).

    Set paths in the JSONs are relative to `root` (the repository root). A set whose file is missing or
    no longer has the sha256 its JSON names is an error: the score would no longer describe it."""
    folder, root = Path(folder), Path(root)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ConfigError(f"{folder}: no evaluation JSON to import (expected benchmarks/accuracy.py results)")
    added = stored = 0
    for path in files:
        rep = read_json(path, "evaluation report", "remove it from the folder or rerun benchmarks/accuracy.py")
        if not isinstance(rep, dict) or not {"protocol_hash", "results", "set_sha256", "set_path"} <= rep.keys():
            raise ConfigError(f"{path}: not an evaluation report (no protocol_hash/results/set_sha256/set_path)")
        rep.setdefault("method_label", rep["method"])
        set_path = rep["set_path"]
        synset = SyntheticSet.load(root / set_path)
        if synset.payload_sha256() != rep["set_sha256"]:
            raise ConfigError(f"{path}: its set {set_path} has another sha256 now; not imported")
        source = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        distill = _distill_record(rep, synset, set_path, source)
        for record in (distill, _eval_record(rep, distill, source, _labels(rep, distill, path))):
            if store.has(record["kind"], record["key"]):
                stored += 1
            else:
                store.put(record)
                added += 1
    return added, stored


def adopt_remade(remade: Store, store: Store) -> tuple[list[str], list[str]]:
    """Adopt `remade`'s distillation records where `store` holds an imported record of the same key that
    measured no peak memory; returns (labels adopted, labels whose remade set differs and were left alone).
    The remade set file is copied beside the store's own sets; the replaced record goes under "supersedes"."""
    adopted, differ = [], []
    for new in remade.records("distill"):
        old = store.get("distill", new["key"])
        if old is None or "imported_from" not in old or old.get("peak_memory_mib") is not None:
            continue
        what = f"{new['label']} IPC {new['ipc']} seed {new['seed']}"
        if new["set_sha256"] != old["set_sha256"]:
            differ.append(what)
            continue
        if new["family"] != "whole":   # set_path as the runner wrote it: relative to the working directory
            source = Path(new["set_path"])
            if SyntheticSet.load(source).payload_sha256() != new["set_sha256"]:
                raise ConfigError(f"{source}: not the set its record names (sha256 differs); not adopted")
            target = store.set_file(new["dataset"], source.stem)
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)   # byte for byte: the file keeps the provenance it was made with
            new = {**new, "set_path": display_path(target)}
        store.supersede(new)
        adopted.append(what)
    return adopted, differ


ONE_PROCESS = "`dsdistill bench --import/--adopt`"


def import_folders(folders: list[str | Path], store: str | Path | None = None) -> list[tuple[str, int, int]]:
    """`dsdistill bench --import`: import_reports of each folder into the store (default DEFAULT_STORE);
    returns (folder, records added, records already stored) per folder. One process only: it writes the store."""
    single_process(ONE_PROCESS)
    target = open_store(store)
    return [(str(folder), *import_reports(folder, target)) for folder in folders]


def adopt_folder(remade: str | Path, store: str | Path | None = None) -> tuple[list[str], list[str]]:
    """`dsdistill bench --adopt`: adopt_remade from the store `remade` (which `bench --make-only` wrote) into the
    store (default DEFAULT_STORE). One process only: it writes the store."""
    single_process(ONE_PROCESS)
    if not Path(remade, "distill").is_dir():
        raise ConfigError(f"{remade}: no distillation records there (run `dsdistill bench SUITE --make-only "
                          f"--store {remade} --only LABEL` first)")
    return adopt_remade(Store(remade), open_store(store))


__all__ = ["adopt_folder", "adopt_remade", "import_folders", "import_reports"]
