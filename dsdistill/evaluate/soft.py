"""Where a soft-label protocol gets its targets: the set's stored soft labels, or a teacher labelling online.

Resolution, first match wins:
1. a teacher given to evaluate() (`--teacher DIR|FILE`): it labels every crop online, whatever the set stores;
2. soft labels stored in the set file (`soft_labels`, logits unless extra["soft_labels"]["kind"] == "probs");
3. the committee the set names in extra["teacher"] (online labels), loaded from its recorded folder and checked
   member by member against the recorded sha256;
4. otherwise a ConfigError that says to pass --teacher.
A set with neither (random, DM, ...) is thus scored under kd by naming a teacher: the same one as the soft-label
set it is compared with, so that the comparison is like with like.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data import RealData
from ..errors import ConfigError
from ..synset import SyntheticSet
from ..teachers import Teacher, load_teacher
from .kd import OnlineLabels, StoredLabels
from .protocols import Protocol


@dataclass
class SoftLabels:
    source: StoredLabels | OnlineLabels
    teacher: str = ""                 # words: which teacher, with its weights and BN mode
    teacher_bytes: int = 0            # checkpoint bytes an online teacher needs
    notes: list[str] = field(default_factory=list)


def stored_logits(synset: SyntheticSet) -> Tensor:
    """The set's soft labels as logits (probabilities are turned into log-probabilities)."""
    kind = (synset.extra.get("soft_labels") or {}).get("kind", "logits")
    soft = synset.soft_labels
    if kind == "probs":
        return torch.log(soft.clamp_min(1e-12))
    if kind != "logits":
        raise ConfigError(f"the set's soft labels are of unknown kind {kind!r} (logits or probs)")
    return soft


def prior_temperature(protocol: Protocol) -> float:
    """The temperature of the committee's ensemble weights softmax(prior / T) under `protocol` (CV-DD: 10)."""
    return float(protocol.extra("prior_temperature", 10.0))


def load_protocol_teacher(teacher: Any, data: RealData, device: torch.device, protocol: Protocol,
                          recorded: dict | None = None) -> Teacher:
    """A Teacher, a model or a committee path as `protocol` labels with it (its BN mode and prior temperature)."""
    return load_teacher(teacher, data, bn_mode=protocol.extra("teacher_bn", "train"),
                        temperature=prior_temperature(protocol), device=device, expected=recorded)


def load_stored_teacher(folder: Any, data: RealData, device: torch.device, protocol: Protocol) -> Teacher:
    """The committee as it stores one label per image for `protocol`: eval-mode BN (a label independent of the
    batch it is computed in), the protocol's prior temperature. `dsdistill relabel --mode stored` labels so."""
    return load_teacher(folder, data, bn_mode="eval", temperature=prior_temperature(protocol), device=device)


def resolve_soft_labels(synset: SyntheticSet, teacher: Any, data: RealData, device: torch.device,
                        protocol: Protocol) -> SoftLabels:
    recorded = synset.extra.get("teacher") or None
    if teacher is not None:
        loaded = load_protocol_teacher(teacher, data, device, protocol)
        notes = [f"soft labels online from the given {loaded.describe()}"]
        if synset.soft_labels is not None:
            notes.append("the set's stored soft labels were NOT used: the given teacher labelled every crop")
        if recorded and [m.get("sha256") for m in recorded.get("members", [])] != loaded.sha256:
            notes.append("the given teacher is not the committee this set was made with")
        return SoftLabels(OnlineLabels(loaded), loaded.describe(), loaded.checkpoint_bytes, notes)
    if synset.soft_labels is not None:
        logits = stored_logits(synset).to(device)
        made = (synset.extra.get("soft_labels") or {}).get("made", "")
        note = (f"soft labels stored in the set ({synset.soft_labels.numel() * synset.soft_labels.element_size()} "
                f"bytes), static: one target per image whatever the crop" + (f"; {made}" if made else ""))
        return SoftLabels(StoredLabels(logits), notes=[note])
    if recorded:
        if not recorded.get("path"):
            raise ConfigError("the set names a teacher but not its folder; pass --teacher DIR")
        loaded = load_protocol_teacher(recorded["path"], data, device, protocol, recorded=recorded)
        return SoftLabels(OnlineLabels(loaded), loaded.describe(), loaded.checkpoint_bytes,
                          [f"soft labels online from the set's own {loaded.describe()} (sha256 checked)"])
    raise ConfigError(f"protocol {protocol.name!r} trains on soft labels, and this {synset.method} set has none: pass "
                      "--teacher DIR (a committee from `dsdistill committee`, or one member checkpoint)")
