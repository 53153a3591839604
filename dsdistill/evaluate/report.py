"""Evaluation reports: a human table and a JSON record that names the protocol and its hash."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._io import write_json
from .._provenance import hardware, utc_now
from .._text import count
from .._version import __version__
from .protocols import Protocol, get_protocol


ACCURACY_UNIT = "fraction"
"""Every accuracy in a report, its JSON and the result store is a fraction in [0, 1]; tables print percent."""


def derived_from(protocol: Protocol) -> dict[str, str] | None:
    """A report's `derived_from` entry: the parent a sized protocol came from, or None."""
    return dict(zip(("name", "hash"), protocol.derived_from)) if protocol.derived_from else None


def comparability_line(name: str, parent: dict[str, str] | None) -> str:
    """'derived from dc #...: not comparable with dc' (the first line of a sized protocol's tables), or ''."""
    if not parent:
        return ""
    return f"{name} is derived from {parent['name']} #{parent['hash']}: not comparable with {parent['name']}"


class AccuracySummary:
    """Mean and population std of `self.accuracies`, shared by every table that reports models."""
    accuracies: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        # population std (np.std, ddof=0), as the DC/DM code reports it
        return float(np.std(self.accuracies))


@dataclass
class ArchResult(AccuracySummary):
    arch: str
    seeds: list[int]
    accuracies: list[float]          # final-epoch test accuracy of each model, in [0, 1]
    seconds: float
    path: str                        # "vmap" or "loop"
    train_seconds: float = 0.0
    test_seconds: float = 0.0


@dataclass
class Report:
    protocol: str
    protocol_version: int
    protocol_hash: str
    dataset: str
    set_sha256: str
    set_path: str
    method: str
    ipc: int
    stored_images: int
    labels: str                      # "hard" or "soft": what the training used
    label_bytes: int                 # bytes the set file spends on labels (hard + stored soft labels)
    results: list[ArchResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    label_source: str = "hard"       # "hard", "stored" (soft labels in the file) or "online" (a teacher labels crops)
    teacher: str = ""                # online: which teacher (committee folder or checkpoint) and its weights
    teacher_bytes: int = 0           # online: bytes of the teacher checkpoints the labels need
    derived_from: dict[str, str] | None = None  # a sized protocol (Protocol.derive): its parent's name and hash;
                                     # such a score is NOT comparable with the parent's
    accuracy_unit: str = ACCURACY_UNIT
    device: str = "cpu"
    hardware: str = field(default_factory=hardware)
    dsdistill_version: str = __version__
    created_utc: str = field(default_factory=utc_now)

    def table(self) -> str:
        how = f" ({self.label_source})" if self.labels == "soft" else ""
        teacher = f" + {self.teacher_bytes} teacher bytes" if self.teacher_bytes else ""
        head = (f"{self.method} | {self.dataset} | IPC {self.ipc} ({self.stored_images} stored images, "
                f"{self.labels} labels{how}, {self.label_bytes} label bytes{teacher}) | protocol {self.protocol} "
                f"v{self.protocol_version} #{self.protocol_hash}")
        warning = comparability_line(self.protocol, self.derived_from)
        rows = [head, *([warning] if warning else []),
                f"{'arch':<14} {'mean':>7} {'std':>6}  {'models':>6}  {'seconds':>8}  accuracies (final epoch)"]
        for r in self.results:
            accs = " ".join(f"{100 * a:.2f}" for a in r.accuracies)
            rows.append(f"{r.arch:<14} {100 * r.mean:>7.2f} {100 * r.std:>6.2f}  {len(r.accuracies):>6}  "
                        f"{r.seconds:>8.1f}  {accs}")
        rows += [f"note: {n}" for n in self.notes]
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for r, rd in zip(self.results, d["results"]):
            rd["mean"], rd["std"] = r.mean, r.std
        return d

    def save_json(self, path: str, command: str | None = None) -> None:
        """The report as JSON, with the command that produced it when given (every file we write says so)."""
        write_json(path, {**self.to_json(), **({"command": command} if command else {})})


def compare_table(protocol: Protocol | str, set_paths: Sequence[str], reports: Sequence[Report]) -> str:
    """`dsdistill compare`'s table: one line per set and architecture under one protocol."""
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    width = max(len(str(p)) for p in set_paths)
    warning = comparability_line(protocol.name, derived_from(protocol))
    lines = [f"protocol {protocol.name} v{protocol.version} #{protocol.hash}: final-epoch test accuracy (%), "
             f"mean ± std over {count(protocol.num_models, 'model')}", *([warning] if warning else []),
             f"{'set':<{width}}  {'method':<10} {'dataset':<14} {'IPC':>4}  {'arch':<12} {'accuracy':>14}  labels"]
    for path, rep in zip(set_paths, reports):
        labels = rep.labels + (f" ({rep.label_source})" if rep.labels == "soft" else "")
        for r in rep.results:  # one row per architecture (--arch a,b)
            lines.append(f"{str(path):<{width}}  {rep.method:<10} {rep.dataset:<14} {rep.ipc:>4}  {r.arch:<12} "
                         f"{100 * r.mean:>7.2f} ± {100 * r.std:<5.2f}  {labels}, {rep.label_bytes} label bytes")
    return "\n".join(lines)
