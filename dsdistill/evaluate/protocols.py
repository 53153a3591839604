"""Frozen, named, versioned evaluation protocols.

A protocol fixes everything that decides a score: architecture, optimiser, schedule, augmentation,
label mode and the listed seeds. Its hash goes into every report; only results with the same hash
are comparable. No protocol ever selects an epoch or a hyper-parameter on the test set: the score
is the accuracy of the FINAL epoch on the full test set.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry
from .._text import count
from ..errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    description: str
    architecture: str = "convnet"          # DC/DSA/DM: ConvNet-3, width 128, instance norm
    model_options: tuple[tuple[str, Any], ...] = ()
    optimizer: str = "sgd"                 # DC utils.evaluate_synset
    lr: float = 0.01                       # DC: lr_net 0.01
    momentum: float = 0.9                  # DC
    weight_decay: float = 5e-4             # DC
    batch_size: int = 256                  # DC/DM batch_train 256
    epochs: int = 1000                     # DSA/DM: 1000 (DC without augmentation: 300)
    lr_decay_at: float = 0.5               # DC: lr x0.1 once, at half of the epochs, momentum reset
    lr_decay_factor: float = 0.1
    augmentation: str = "dsa"              # "dsa" (per-sample DSA, DSA/DM evaluation) or "none"
    label_mode: str = "hard"               # "hard": cross-entropy on the stored labels
    lr_source: str = "protocol"            # "protocol" or "set" (a learned step size carried by the set)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    extras: tuple[tuple[str, Any], ...] = field(default=())  # later protocol families (kd temperature, ...)
    derived_from: tuple[str, str] = ()     # (name, hash) of the protocol this one was sized from (derive); () if none
    precision: str = "fp32"                # the arithmetic of training and the test pass: fp32, or bf16 (autocast:
                                           # convolutions and matmuls in bfloat16, weights and sums of the optimiser
                                           # in fp32); a score under bf16 is another protocol, with its own hash

    @property
    def num_models(self) -> int:
        return len(self.seeds)

    def identity(self) -> dict[str, Any]:
        """Every field that decides a score (the description is documentation, not identity; derived_from is
        already in a derived protocol's name, and leaving it out keeps every registered protocol's hash)."""
        d = dataclasses.asdict(self)
        d.pop("description")
        d.pop("derived_from")
        if d["precision"] == "fp32":   # added later: fp32 is what every protocol computed before, and keeps its hash
            d.pop("precision")
        return d

    def derive(self, **changes: int) -> "Protocol":
        """This protocol sized differently: `derive(epochs=300, models=3)` is `dc[epochs=300,models=3]`.

        The derived protocol has its own name and hash, and says which protocol it came from (`derived_from`);
        its scores are NOT comparable with the parent's, and every table and JSON says so. What can change:

        - ``epochs`` (>= 1): the lr decay stays at the same fraction of the training (`lr_decay_at`), so
          dc's x0.1 at half of 1000 epochs becomes x0.1 at half of 300;
        - ``models`` (>= 1): the first M of the parent's listed seeds; more than the parent lists extends
          them with the next unused integers (dc's 0..4 with models=8 gives 0..7), so a derived protocol
          still trains the parent's models first and never picks seeds.

        Other fields are not sizes: they change what the score measures, which is a new protocol to
        register, not a derived one. A change equal to the parent's value is no change (the parent itself
        comes back when nothing differs)."""
        if self.derived_from and self.derived_from[0] in PROTOCOLS:  # re-sizing a derived one: derive from the root
            root = PROTOCOLS.get(self.derived_from[0])
            return root.derive(**{"epochs": self.epochs, "models": self.num_models, **changes})
        unknown = sorted(set(changes) - set(DERIVABLE))
        if unknown:
            raise ConfigError(f"protocol {self.name!r} cannot derive {', '.join(unknown)}; "
                              f"derivable: {', '.join(DERIVABLE)}")
        current = {"epochs": self.epochs, "models": self.num_models}
        for key, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
        changed = {k: int(changes[k]) for k in DERIVABLE if k in changes and changes[k] != current[k]}
        if not changed:
            return self
        epochs = changed.get("epochs", self.epochs)
        name = f"{self.name}[{','.join(f'{k}={v}' for k, v in changed.items())}]"
        return dataclasses.replace(
            self, name=name, epochs=epochs, seeds=_sized_seeds(self.seeds, changed.get("models", self.num_models)),
            derived_from=(self.name, self.hash),
            description=f"{self.name} sized to {count(epochs, 'epoch')} and "
                        f"{count(changed.get('models', self.num_models), 'model')}: not comparable with {self.name}.")

    @property
    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def decay_epoch(self) -> int:
        return int(self.epochs * self.lr_decay_at)

    def extra(self, key: str, default: Any = None) -> Any:
        """A protocol-family option from `extras` (e.g. the kd temperature)."""
        return dict(self.extras).get(key, default)


DERIVABLE = ("epochs", "models")  # Protocol.derive's changes, in the order a derived name lists them


def _sized_seeds(seeds: tuple[int, ...], models: int) -> tuple[int, ...]:
    """The first `models` listed seeds, extended by the next unused integers when more are wanted."""
    out = list(seeds[:models])
    nxt = max(seeds, default=-1) + 1
    while len(out) < models:
        out.append(nxt)
        nxt += 1
    return tuple(out)


def sized_protocol(protocol: "Protocol | str", epochs: int | None = None, models: int | None = None) -> Protocol:
    """The protocol `evaluate --epochs N --models M` scores under: the named one, derived when a size is given."""
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    changes = {k: v for k, v in (("epochs", epochs), ("models", models)) if v is not None}
    return proto.derive(**changes) if changes else proto


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _add(p: Protocol) -> Protocol:
    PROTOCOLS.register(p.name)(p)
    return p


DC = _add(Protocol(
    name="dc", version=1,
    description="The standard hard-label score (DSA/DM evaluation): ConvNet-3 IN, SGD 0.01 mom 0.9 wd 5e-4, "
                "batch 256, 1000 epochs, lr x0.1 at half, per-sample DSA, final epoch, 5 listed seeds.",
))
DC_NOAUG = _add(dataclasses.replace(
    DC, name="dc-noaug", epochs=300, augmentation="none",
    description="The DC paper's baseline setting (its random/herding numbers): as dc but 300 epochs, no augmentation.",
))
DC_QUICK = _add(dataclasses.replace(
    DC, name="dc-quick", epochs=300, seeds=(0, 1, 2),
    description="CPU smoke score: as dc but 300 epochs and 3 models. Not comparable with dc.",
))
DC_BF16 = _add(dataclasses.replace(
    DC, name="dc-bf16", precision="bf16",
    description="dc in bfloat16 autocast (convolutions and matmuls in bf16, optimiser state in fp32): faster where "
                "the CPU or GPU has bf16 units. Declared other numerics: not comparable with dc.",
))
MTT = _add(dataclasses.replace(
    DC, name="mtt", lr_source="set",
    description="dc with the learned step size carried by the set (trajectory matching) as the training lr.",
))
SMOKE = _add(dataclasses.replace(
    DC, name="smoke", epochs=2, seeds=(0,), model_options=(("width", 16),),
    description="Installation check only (2 epochs, 1 narrow model): the score means nothing.",
))

# Soft-label knowledge distillation, CV-DD's post-eval (validate/train_fkd.py; reference/cvdd_fyi.md A4): the student
# sees only the synthetic images and learns KL(teacher || student) at temperature T. Scores under kd are NOT
# comparable with dc: every soft-label method should be compared with random selection scored under kd too.
KD = _add(Protocol(
    name="kd", version=1,
    description="Soft-label score (CV-DD post-eval): ConvNet-3 IN student, KL to the teacher's soft labels at T=20, "
                "AdamW 1e-3 wd 0.01 (weights only), batch 16 in 2 micro-batches, smoothed cosine (eta 1), 300 epochs, "
                "per-sample random-resized-crop + flip (none for digits) + CutMix, final epoch, 5 listed seeds.",
    architecture="convnet",       # ours: the DC evaluation net, so kd and dc differ in labels, not in the student
                                  # (CV-DD: CIFAR-style ResNet-18/50/101; pass --arch resnet18-bn for that student)
    optimizer="adamw",            # CV-DD train_fkd.py: AdamW
    lr=1e-3,                      # CV-DD scripts: 1e-3 for ResNet-18 on CIFAR-10 (untuned for ConvNet-3)
    momentum=0.0,                 # unused by AdamW (default betas 0.9, 0.999 as the official code)
    weight_decay=0.01,            # CV-DD train_fkd.py: 0.01 on weight tensors with dim > 1 only
    batch_size=16,                # CV-DD scripts: batch 16 ...
    epochs=300,                   # CV-DD scripts: 300 epochs
    lr_decay_at=1.0, lr_decay_factor=1.0,  # unused: the schedule is the smoothed cosine below
    augmentation="rrc_flip_cutmix",
    label_mode="soft",
    extras=(
        ("accumulation", 2),      # ... loaded, split into 2 micro-batches (8 each); one step per batch
        ("temperature", 20.0),    # CV-DD scripts: T = 20; KL with reduction batchmean and no T^2 factor
        ("eta", 1.0),             # EDC smoothed cosine lr0 * (1 + cos(pi * e / (E * eta))) / 2, stepped per epoch;
                                  # CV-DD: eta 1 for every CIFAR-10 student (2 elsewhere); eta 1 is plain cosine
        ("rrc_scale", (0.08, 1.0)),  # CV-DD: torchvision RandomResizedCrop default
        ("cutmix", True),         # CV-DD relabel/post-eval: CutMix on every batch, lambda ~ Beta(1, 1)
        ("teacher_bn", "train"),  # CV-DD relabel default (--eval-mode F): BSSL, BN on the micro-batch statistics
        ("prior_temperature", 10.0),  # CV-DD relabel: ensemble weights softmax(prior / 10)
    ),
))
KD_QUICK = _add(dataclasses.replace(
    KD, name="kd-quick", epochs=100, seeds=(0, 1, 2),
    description="CPU smoke score under soft labels: as kd but 100 epochs and 3 models. Not comparable with kd.",
))


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


def protocols_table(width: int = 100) -> str:
    """`dsdistill protocols`: one row per protocol (name, version, hash, epochs, models, labels, architecture),
    its description wrapped beneath it, so the list reads in a terminal."""
    head = f"{'protocol':<10} {'v':>2}  {'hash':<16}  {'epochs':>6}  {'models':>6}  {'labels':<6}  arch"
    lines = [head, "-" * len(head)]
    for name, p in PROTOCOLS.items():
        lines.append(f"{name:<10} {p.version:>2}  {p.hash:<16}  {p.epochs:>6}  {p.num_models:>6}  {p.label_mode:<6}  "
                     f"{p.architecture}")
        lines += textwrap.wrap(p.description, width=width, initial_indent="    ", subsequent_indent="    ")
    lines.append("Only scores under the same hash are comparable. `evaluate`/`compare` --epochs N --models M "
                 "score under a sized protocol (e.g. dc[epochs=300,models=3]) with its own hash.")
    return "\n".join(lines)
