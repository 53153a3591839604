"""The evaluator: fresh models trained on a synthetic set, scored on the real test set under a
fixed protocol. It never knows which method made the set."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .._device import resolve_device
from ..augment import DSA, DSAConfig, dsa_strategy_for
from ..data import ZCA, RealData, load_dataset
from .._distributed import World
from ..errors import ConfigError
from ..models import create_model, has_batch_norm
from ..synset import SyntheticSet
from ..synset.decode import decode
from ..teachers.committee import state_sha256
from .finished import FinishedModels
from .kd import KDSpec, OnlineLabels, StoredLabels, train_kd
from .protocols import PROTOCOLS, Protocol, get_protocol
from .report import ACCURACY_UNIT, ArchResult, Report, derived_from
from .soft import SoftLabels, resolve_soft_labels
from .engine import check_precision
from .paths import choose_path
from .trainer import TrainSpec, train_fast, train_loop, train_vmap

TRAINERS = {"loop": train_loop, "fast": train_fast, "vmap": train_vmap}

__all__ = ["evaluate", "evaluate_tensors", "Protocol", "PROTOCOLS", "get_protocol", "Report", "ArchResult", "TRAINERS"]


def _check_compatible(synset: SyntheticSet, data: RealData) -> None:
    if synset.dataset != data.name:
        raise ConfigError(f"the set was made from {synset.dataset!r} but the real data is {data.name!r}")
    c, h = synset.images.shape[1], synset.images.shape[-1]
    if (c, h, synset.num_classes) != (data.channels, data.image_size, data.num_classes):
        raise ConfigError(
            f"the set has {c}x{h}px images and {synset.num_classes} classes; {data.name} has "
            f"{data.channels}x{data.image_size}px and {data.num_classes} classes")


def _test_images(synset: SyntheticSet, data: RealData, dev: torch.device) -> torch.Tensor:
    """The real test images in the set's space: a ZCA set carries its whitening, which is applied to
    the test pixels here (or must equal the whitening the data was loaded with)."""
    test_x = data.test.images.to(dev)
    if synset.image_space != "zca":
        if data.zca is not None:
            raise ConfigError("the set is in normalised space but the real data was loaded with ZCA; load it without")
        return test_x
    zca = ZCA.from_state_dict({k: v.to(dev) for k, v in synset.zca.items()})
    if data.zca is None:
        return zca.transform(data.to_pixels(test_x))
    theirs = data.zca.state_dict()
    if not torch.allclose(theirs["matrix"].to(dev).double(), zca.state_dict()["matrix"].double(), atol=1e-6):
        raise ConfigError("the set's ZCA whitening differs from the one the real data was loaded with")
    return test_x


def _train_spec(protocol: Protocol, synset: SyntheticSet) -> TrainSpec:
    lr = protocol.lr
    if protocol.lr_source == "set":
        if synset.lr is None:
            raise ConfigError(f"protocol {protocol.name!r} trains with the set's learned lr, but this set has none; "
                              "use --protocol dc")
        lr = float(synset.lr)
    return TrainSpec(epochs=protocol.epochs, lr=lr, momentum=protocol.momentum,
                     weight_decay=protocol.weight_decay, batch_size=protocol.batch_size,
                     decay_epoch=protocol.decay_epoch(), decay_factor=protocol.lr_decay_factor,
                     precision=protocol.precision)


def _kd_spec(protocol: Protocol, data: RealData) -> KDSpec:
    x = protocol.extra
    return KDSpec(epochs=protocol.epochs, lr=protocol.lr, weight_decay=protocol.weight_decay,
                  batch_size=protocol.batch_size, accumulation=int(x("accumulation", 1)),
                  temperature=float(x("temperature", 1.0)), eta=float(x("eta", 1.0)),
                  rrc_scale=tuple(x("rrc_scale", (0.08, 1.0))), flip=not data.digits, cutmix=bool(x("cutmix", True)))


def _model_identity(set_sha256: str, proto: Protocol, soft: SoftLabels | None) -> dict:
    """What every model depends on beside its architecture, path and seed: the resume log's identity."""
    identity = {"set_sha256": set_sha256, "protocol_hash": proto.hash}
    if soft is not None and isinstance(soft.source, OnlineLabels):
        teacher = soft.source.teacher
        # a module given in memory has no file hashes: hash its weights, less the BN batch counters that every
        # train-mode labelling bumps (the teacher's BN momentum is 0, so they never change a label)
        hashes = teacher.sha256 or [state_sha256({k: v for k, v in m.state_dict().items()
                                                  if not k.endswith("num_batches_tracked")}) for m in teacher.members]
        identity["teacher"] = {"sha256": list(hashes), "bn_mode": teacher.bn_mode,
                               "weights": [round(float(w), 6) for w in teacher.weights]}
    return identity


def evaluate(synset: SyntheticSet, protocol: Protocol | str = "dc", *, archs: Sequence[str] | None = None,
             data: RealData | None = None, data_root: str | None = None, device: str | torch.device = "auto",
             path: str = "auto", set_path: str = "", teacher: "str | Path | torch.nn.Module | None" = None,
             world: World | None = None, resume: str | Path | None = None) -> Report:
    """Score `synset` under `protocol` for each architecture (default: the protocol's own).

    path: "auto", "loop", "fast" or "vmap" (trainer.py; the same function, at different speeds). auto takes vmap
    on CUDA for models without batch norm; on the CPU, fast (compiled) or the loop, whichever measurement on this
    machine says finishes sooner (evaluate/paths.py; a short run takes the loop). Soft-label protocols (kd)
    always take the loop.

    teacher (soft-label protocols only): a committee folder (`dsdistill committee`), one member checkpoint, or a
    dsdistill.teachers.ensemble.Teacher. Given, it labels every crop online, whatever the set stores; not given, the set's
    own soft labels are used (stored in the file, or online from the committee the set names, checked by sha256).
    This is how a set without soft labels (random, DM, ...) is scored under kd: with the same teacher as the
    soft-label method it is compared with.


    world (torchrun): the (architecture x seed) models are split across the ranks in contiguous
    blocks; every model depends only on its own seed, so each rank trains its share and every rank
    gets the merged report, equal to the single-process one except the seconds (summed over the
    ranks: compute time, not wall time), `device` and `hardware`.

    resume: a file that logs every model as soon as it is scored (dsdistill.evaluate.finished), so that the
    same evaluation, interrupted and run again, trains only the models it had not finished; it is removed
    when the report is complete (Report.notes says how many models were resumed). Under torchrun
    each rank keeps its own file (World.checkpoint_path), so a resume needs the same number of processes.
    """
    world = world or World()
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if path not in ("auto", *TRAINERS):
        raise ConfigError(f"unknown training path {path!r}; valid: auto, {', '.join(TRAINERS)}")
    if proto.label_mode == "soft" and world.sharded:
        raise ConfigError("soft-label protocols (kd) are not sharded across ranks yet; run this evaluation "
                          "in one process")
    check_precision(proto.precision)
    if proto.precision != "fp32" and proto.label_mode == "soft":
        raise ConfigError(f"protocol {proto.name!r}: soft-label protocols train in fp32 only")
    if proto.label_mode not in ("hard", "soft"):
        raise ConfigError(f"protocol {proto.name!r} has an unknown label mode {proto.label_mode!r}")
    if teacher is not None and proto.label_mode == "hard":
        raise ConfigError(f"a teacher only serves soft-label protocols (kd); protocol {proto.name!r} trains on "
                          "hard labels: drop --teacher or use --protocol kd")
    dev = resolve_device(device)
    synset.validate()
    if data is None:
        data = load_dataset(synset.dataset, data_root, device=dev)
    _check_compatible(synset, data)
    test_x, test_y = _test_images(synset, data, dev), data.test.labels.to(dev)
    images, labels = decode(synset.images.to(dev), synset.labels.to(dev), synset.decoder)
    spec = _train_spec(proto, synset)
    augment = None
    if proto.augmentation == "dsa":
        augment = DSA(DSAConfig(strategy=dsa_strategy_for(data.digits))).per_sample
    notes = []
    if synset.decoder != "none":
        notes.append(f"decoder {synset.decoder}: the {len(synset.images)} stored images trained as {len(images)} images")
    soft: SoftLabels | None = None
    if proto.label_mode == "soft":
        soft = resolve_soft_labels(synset, teacher, data, dev, proto)
        if synset.decoder != "none" and soft.source.kind == "stored":
            raise ConfigError("stored soft labels of a set with a decoder: label the decoded images online with "
                              "--teacher")
        notes += soft.notes
    elif synset.soft_labels is not None or synset.extra.get("teacher"):
        notes.append("the set carries soft labels; this hard-label protocol trained on its hard labels only "
                     "(score it under kd for its soft labels)")
    set_sha256 = synset.payload_sha256()  # hashes every image: once (the whole training set is 188 MB)
    finished = FinishedModels(None if resume is None else world.checkpoint_path(resume),
                              _model_identity(set_sha256, proto, soft))
    if finished.resumed:
        notes.append(f"resumed: {finished.resumed} model(s) came from an interrupted run of this evaluation "
                     f"({finished.path})")
    report = Report(protocol=proto.name, protocol_version=proto.version, protocol_hash=proto.hash,
                    dataset=data.name, set_sha256=set_sha256, set_path=set_path,
                    method=synset.method, ipc=synset.ipc, stored_images=len(synset.images),
                    labels=proto.label_mode, label_bytes=synset.label_bytes, notes=notes, device=str(dev),
                    label_source=soft.source.kind if soft else "hard", teacher=soft.teacher if soft else "",
                    teacher_bytes=soft.teacher_bytes if soft else 0, derived_from=derived_from(proto))
    arch_list = list(archs or [proto.architecture])
    mine = world.share([(a, seed) for a in range(len(arch_list)) for seed in proto.seeds])
    parts = []
    for a, arch in enumerate(arch_list):
        options = dict(proto.model_options) if arch == proto.architecture else {}

        def factory(arch=arch, options=options):
            return create_model(arch, data.channels, data.num_classes, data.image_size, **options)

        if soft is not None:
            if path in ("vmap", "fast"):
                raise ConfigError("soft-label protocols train with the loop path; use --path loop or auto")
            start = time.perf_counter()
            out = train_kd(factory, proto.seeds, images, soft.source, _kd_spec(proto, data), test_x, test_y,
                           desc=f"{arch} x{proto.num_models} kd", log=finished.for_arch(f"{arch}/loop"))
            report.results.append(ArchResult(arch=arch, seeds=list(proto.seeds), accuracies=out.accuracies,
                                             seconds=time.perf_counter() - start, path="loop",
                                             train_seconds=out.train_seconds, test_seconds=out.test_seconds))
            continue
        batch_norm = has_batch_norm(factory())
        if path == "vmap" and batch_norm:
            raise ConfigError(f"{arch} has batch norm, which couples samples; use --path loop")
        seeds = [seed for i, seed in mine if i == a]
        if not seeds:
            continue
        chosen = path
        if path == "auto":
            chosen, why = choose_path(dev, batch_norm, factory, images, labels, spec, len(seeds))
            if why:
                notes.append(f"{arch}: {why}")
        start = time.perf_counter()
        out = TRAINERS[chosen](factory, seeds, images, labels, spec, augment, test_x, test_y,
                               desc=f"{arch} x{len(seeds)}", log=finished.for_arch(f"{arch}/{chosen}"))
        parts.append((a, chosen, out.accuracies, time.perf_counter() - start, out.train_seconds, out.test_seconds))
    merged = [part for rank in world.all_gather(parts, "merging the evaluation results") for part in rank]
    for a, arch in enumerate(arch_list):
        mine_a = [p for p in merged if p[0] == a]  # rank order = seed order (contiguous blocks)
        if not mine_a:
            continue  # scored above (soft-label protocols)
        report.results.append(ArchResult(arch=arch, seeds=list(proto.seeds),
                                         accuracies=[acc for p in mine_a for acc in p[2]],
                                         seconds=sum(p[3] for p in mine_a), path=mine_a[0][1],
                                         train_seconds=sum(p[4] for p in mine_a),
                                         test_seconds=sum(p[5] for p in mine_a)))
    if world.sharded:
        report.device = f"{dev.type} x{world.size} processes ({world.backend})"
    finished.remove()
    return report


def evaluate_tensors(images: Any, labels: Any = None, protocol: Protocol | str = "dc", *, dataset: str,
                     soft_labels: Any = None, lr: float | None = None, method: str = "imported",
                     archs: Sequence[str] | None = None, data: RealData | None = None, data_root: str | None = None,
                     device: str | torch.device = "auto", path: str = "auto",
                     teacher: "str | Path | torch.nn.Module | None" = None) -> Report:
    """Score another tool's tensors in one call: `evaluate_tensors(images, labels, "dc", dataset="cifar10")`.

    images [N, C, H, W] normalised with the dataset's mean/std; labels [N] class indices or None for
    class-major order (SyntheticSet.from_tensors states the defaults). With `data` given, its classes and
    statistics are the set's (the images must be normalised as it is). The report equals evaluating the same
    tensors saved as a set file; the rest of the arguments are evaluate()'s."""
    facts = {} if data is None else {"num_classes": data.num_classes, "class_names": data.class_names,
                                     "mean": data.mean, "std": data.std}
    synset = SyntheticSet.from_tensors(images, labels, dataset=dataset, soft_labels=soft_labels, lr=lr,
                                       method=method, **facts)
    return evaluate(synset, protocol, archs=archs, data=data, data_root=data_root, device=device, path=path,
                    teacher=teacher)
