"""The `dsdistill` command: parses, calls one library function, prints. No decisions of its own: defaults,
caches, resume keys and what runs under torchrun are the library's (each command's function says where).

A user mistake (DsdistillError) prints one line and exits 2; an internal error exits 1 with a traceback.
Imports sit at the top: `python -m dsdistill` loads the package root, which imports the public API (torch, the
synthesizers, the evaluator) anyway, so the rest adds about 0.05 s to `--help`; nothing is gained by importing late.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ._version import __version__
from ._interrupt import interrupted
from ._device import resolve_device
from ._io import check_output, file_stamp, write_json
from ._malloc import keep_freed_memory
from ._distributed import check_command, init_world, is_main_process, load_shard, quiet_unless_main
from .bench import (adopt_folder, bench_suite, import_folders, plan_suite, regenerate, score_whole, verify_manifest,
                    write_manifest)
from .bench.manifest import MANIFEST
from .data import dataset_status, load_dataset
from .errors import ConfigError, DsdistillError
from .evaluate import PROTOCOLS
from .evaluate.files import score_files
from .evaluate.protocols import protocols_table, sized_protocol
from .evaluate.report import compare_table
from .synset.export import FORMATS, export_set
from .synset.tools import describe, draw, import_for_dataset
from .synthesizers import Interrupted, check_seed
from .synthesizers.factory import build_for, checkpoint_for, method_specs
from .synthesizers.finish import save_and_clear
from .teachers.builders import build_named
from .teachers.ensemble import RELABEL_TEMPERATURE
from .teachers.relabel import relabel_file
from ._text import count

if TYPE_CHECKING:
    from .bench import WholeScore
    from .evaluate import Report

class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line answered in one line (argparse prints the usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def output_file(text: str) -> str:
    """An --out/--json/--checkpoint value: a file that can be written, checked before any work."""
    try:
        check_output(text, "")
    except DsdistillError as err:
        raise argparse.ArgumentTypeError(str(err).strip()) from None
    return text


def output_folder(text: str) -> str:
    """A --plots-like value: a folder that can be made or written, checked before any work."""
    try:
        check_output(text, "", folder=True)
    except DsdistillError as err:
        raise argparse.ArgumentTypeError(str(err).strip()) from None
    return text


def seed_value(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not a whole number") from None
    try:
        check_seed(seed)
    except DsdistillError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return seed


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def command(fn: Callable[[argparse._SubParsersAction], None]) -> Callable:
    COMMANDS[fn.__name__.removeprefix("add_")] = fn
    return fn


def _common(p: argparse.ArgumentParser, device: bool = True, data: bool = True) -> None:
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i] (default: auto)")
        p.add_argument("--deterministic", action="store_true",
                       help="deterministic GPU kernels, cuDNN and cuBLAS workspace (docs/evaluation.md: what the same "
                            "seed gives on a GPU with and without it)")
    if data:
        p.add_argument("--data-root", default=None,
                       help="folder holding the dataset files (default search: $DSDISTILL_DATA, "
                            "/usr/share/datasets/<name>, the user cache, then torchvision download)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _load(args: argparse.Namespace, name: str, device=None, **kw):
    return load_dataset(name, args.data_root, device=device or _device(args), **kw)


def _device(args: argparse.Namespace):
    return resolve_device(args.device, deterministic=getattr(args, "deterministic", False))


def _command(args: argparse.Namespace) -> str:
    """This command line, as the files it writes record it."""
    return " ".join(["dsdistill", *args.argv])


def _provenance(synset, args: argparse.Namespace) -> None:
    """Every file we write says what produced it."""
    synset.extra.setdefault("command", _command(args))


def snapshot_path(out: str, minutes: float) -> Path:
    """Where `distill --snapshot-minutes` writes the set taken at `minutes`: OUT-snap{minutes}min.h5 beside OUT."""
    out_path = Path(out)
    return out_path.with_name(f"{out_path.stem}-snap{minutes:g}min{out_path.suffix or '.h5'}")


def _snapshot_writer(args: argparse.Namespace) -> Callable:
    def write(synset) -> None:
        _provenance(synset, args)
        path = snapshot_path(args.out, synset.extra["snapshot_minutes"])
        synset.save(path)   # atomic: a temporary file renamed
        print(f"snapshot {path}: {count(synset.distill_iterations, 'iteration')}, {synset.distill_seconds:.0f} s",
              file=sys.stderr)
    return write


def minutes_list(text: str) -> tuple[float, ...]:
    """'5,20,60' -> (5.0, 20.0, 60.0), for argparse (a bad value is one line and exit 2)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated minutes such as 5,20,60, got {text!r}") from None


# ---------------------------------------------------------------- datasets
@command
def add_datasets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the datasets and whether each is available here",
                       description="List every registered dataset and where its files were found (nothing is downloaded).")
    p.add_argument("--data-root", default=None, help="also look in this folder")
    p.set_defaults(run=run_datasets)


def run_datasets(args: argparse.Namespace) -> int:
    rows = dataset_status(args.data_root)
    width = max(len(r[0]) for r in rows)
    for name, ok, where in rows:
        print(f"{name:<{width}}  {'yes' if ok else 'no ':<3}  {where}")
    return 0


# ---------------------------------------------------------------- select
@command
def add_select(sub: argparse._SubParsersAction) -> None:
    methods = method_specs("selection")
    p = sub.add_parser("select", help="build a set by selecting real images (random, herding, k-center)",
                       description="Select IPC real images per class and write a synthetic-set file (HDF5).")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(methods)}")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (default: fashion-mnist)")
    p.add_argument("--ipc", type=int, required=True, help="images per class")
    p.add_argument("--seed", type=seed_value, default=0, help="global seed (default: 0)")
    p.add_argument("--out", required=True, type=output_file, help="output .h5 file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a method option, e.g. --set features=random (repeatable)")
    _common(p)
    p.set_defaults(run=run_select)


def run_select(args: argparse.Namespace) -> int:
    method = build_for("selection", args.method, args.set).method
    real = _load(args, args.dataset)
    synset = method.fit(real, args.ipc, seed=args.seed)
    _provenance(synset, args)
    synset.save(args.out)
    print(f"wrote {args.out}: {count(len(synset.images), 'image')} ({args.method}, IPC {synset.ipc}, "
          f"seed {args.seed})")
    return 0


# ---------------------------------------------------------------- distill
@command
def add_distill(sub: argparse._SubParsersAction) -> None:
    from .synthesizers import DEFAULT_BUDGET
    methods = method_specs("synthesis")
    p = sub.add_parser("distill", help="optimise a synthetic set (DM, DataDAM, ...) and write it",
                       description="Optimise IPC synthetic images per class against what the method matches "
                                   "(freshly initialised networks for DM and DataDAM, expert trajectories for MTT, a "
                                   "pool of trained models for NCFM, a committee for CV-DD) and write a synthetic-set "
                                   "file. METHOD.PRESET picks a named configuration (e.g. datadam.official); --set "
                                   "values override it. Without --iterations or "
                                   f"--minutes the run stops after the preset's iterations, the method's own schedule "
                                   f"(cvdd) or {DEFAULT_BUDGET.describe()}. The run state is checkpointed to OUT.ckpt every few "
                                   "minutes and on Ctrl-C; --resume continues it. The checkpoint is removed once the "
                                   "set is written; a failed or interrupted run keeps it for --resume. Under torchrun "
                                   "(`torchrun --nproc_per_node P -m dsdistill distill ...`) the classes are split "
                                   "into P contiguous blocks, each process reads and distills only its classes "
                                   "(gloo on CPU, NCCL on GPUs), rank 0 writes the one set file (the same set as one "
                                   "process with the same seed), and each rank keeps OUT.rank{r}-of-{P}.ckpt; "
                                   "methods whose objective couples the classes (class_separable False, e.g. mtt) "
                                   "refuse. CV-DD adds its BN-term statistics across the processes; its default joint "
                                   "batching gives the same function, --set class_batching=per-class the same bytes.")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(methods)}")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (default: fashion-mnist)")
    p.add_argument("--ipc", type=int, required=True, help="images per class")
    p.add_argument("--seed", type=seed_value, default=0, help="global seed (default: 0)")
    p.add_argument("--out", required=True, type=output_file, help="output .h5 file")
    p.add_argument("--iterations", type=int, default=None, help="budget: number of iterations")
    p.add_argument("--minutes", type=float, default=None, help="budget: wall-clock minutes")
    p.add_argument("--snapshot-minutes", default=None, metavar="M1,M2,...", type=minutes_list,
                   help="also write the set as it stands after M1, M2, ... minutes of distillation, to "
                        "OUT-snap{M}min.h5 beside OUT (each file records its own seconds and iterations): accuracy "
                        "against distillation time from one run and seed. Combine with --minutes for the last one")
    p.add_argument("--flip", action="store_true", default=None,
                   help="FYI: match every synthetic batch together with its horizontal mirror")
    p.add_argument("--zca", action="store_true", help="distill in ZCA-whitened space (kornia ZCA, fit on train)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT.ckpt (under torchrun: every rank from its OUT.rank{r}-of-{P}.ckpt, at the "
                        "newest iteration all ranks have; use the same number of processes)")
    p.add_argument("--checkpoint", default=None, type=output_file,
                   help="checkpoint path (default: OUT.ckpt; removed when the set is written, kept on a failure or "
                        "Ctrl-C)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr_img=1 (repeatable; unknown keys list the valid ones)")
    _common(p)
    p.set_defaults(run=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    built = build_for("synthesis", args.method, args.set, flip=args.flip, iterations=args.iterations,
                      minutes=args.minutes)
    method, budget = built.method, built.budget
    if args.snapshot_minutes:
        if budget is None:
            raise ConfigError(f"--snapshot-minutes: {args.method} plans its own length; give --iterations or --minutes")
        budget = dataclasses.replace(budget, snapshot_minutes=args.snapshot_minutes)
    if is_main_process() and built.source != "given":   # say which budget it took when the user named none
        print(built.describe(), file=sys.stderr)
    checkpoint = checkpoint_for(args.out, args.checkpoint)
    out_before = file_stamp(args.out)  # a second run writing the same --out meanwhile is found at save
    with init_world(args.device) as world:
        real = load_shard(world, args.dataset, args.data_root, zca=args.zca, device=world.device)
        try:
            synset = method.fit(real, args.ipc, seed=args.seed, budget=budget, checkpoint=checkpoint,
                                resume=args.resume, world=world,
                                snapshot=_snapshot_writer(args) if args.snapshot_minutes else None)
        except Interrupted as stop:
            print(f"dsdistill: {world.describe() + ': ' if world.sharded else ''}{stop}; continue with the same "
                  "command plus --resume", file=sys.stderr)
            return 130
        if synset is not None:
            _provenance(synset, args)
        try:  # the set first (never over a file another run wrote meanwhile), then the checkpoints it no longer needs
            save_and_clear(synset, args.out, checkpoint, world, unchanged_since=out_before)
        except ConfigError as err:
            raise ConfigError(f"{err}: this run is kept in {checkpoint}; write it elsewhere with the same command "
                              f"plus --resume --checkpoint {checkpoint} --out OTHER.h5") from None
    if synset is None:  # a rank other than 0 under torchrun: rank 0 writes the set
        return 0
    print(f"wrote {args.out}: {count(len(synset.images), 'image')} ({args.method}, IPC {synset.ipc}, "
          f"{count(synset.distill_iterations, 'iteration')}, {synset.distill_seconds:.0f} s)")
    teacher = synset.extra.get("teacher")
    if synset.soft_labels is not None or teacher:
        where = (f"stored in the file ({synset.soft_labels.numel() * synset.soft_labels.element_size()} bytes)"
                 if synset.soft_labels is not None else
                 f"online from {teacher.get('path')} ({teacher.get('checkpoint_bytes', 0)} checkpoint bytes)")
        print(f"soft labels: {where}; label bytes in the file {synset.label_bytes}; score it with --protocol kd")
    return 0


# ---------------------------------------------------------------- pool / experts / committee
def _model_folder_parser(sub: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
                         own: Callable[[argparse.ArgumentParser], None], *, help: str, description: str,
                         set_help: str | None = None, out_help: str = "output folder (reuse it to resume)") -> None:
    """A command that trains a folder of models resumably (dsdistill.teachers.folder): the options they all take,
    --arch and --set (model options) when `set_help` is given, and the command's own, added by own(parser)."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (default: fashion-mnist)")
    own(p)
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument("--seed", type=seed_value, default=0, help="global seed (default: 0)")
    if set_help is not None:
        p.add_argument("--arch", default="convnet", help="model architecture (default: convnet)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--zca", action="store_true", help="train in ZCA-whitened space (kornia ZCA, fit on train)")
    _common(p)
    p.set_defaults(run=run)


def _train_model_folder(args: argparse.Namespace, line: Callable[[dict], str] | None = None) -> int:
    """Map the arguments onto the command's request (dsdistill.teachers.TEACHER_BUILDERS) and build it into args.out
    (resumable; this command line is recorded, a line per newly trained model goes to stderr), then print every
    finished model and the folder's size."""
    built = build_named(args.command, vars(args), data_root=args.data_root, device=_device(args),
                        command=_command(args), on_unit=_report_trained)
    for e in built.entries:
        print(line(e) if line else f"{built.kind.unit} {e['index']}: test accuracy {100 * e['test_accuracy']:.2f}%")
    print(f"wrote {built.folder}: {count(len(built.entries), built.kind.unit, built.kind.entries)} ({built.described}), "
          f"{built.bytes / 2**20:.1f} MiB on disk")
    return 0


def _report_trained(entry: dict) -> None:
    """As each model finishes, on stderr; the summary goes to stdout at the end."""
    prior = f"prior {entry['prior']:.2f}, " if "prior" in entry else ""
    print(f"trained {entry.get('name', entry['file'])}: {prior}test accuracy {100 * entry['test_accuracy']:.2f}% "
          f"({entry['seconds']:.0f} s)", file=sys.stderr, flush=True)


@command
def add_pool(sub: argparse._SubParsersAction) -> None:
    from .teachers.pool import DEFAULT_EPOCHS, DEFAULT_MODELS, OFFICIAL_EPOCHS, OFFICIAL_MODELS

    def own(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", type=int, default=DEFAULT_MODELS,
                       help=f"pool size (default: {DEFAULT_MODELS}; official: {OFFICIAL_MODELS})")
        p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                       help=f"training epochs per model (default: {DEFAULT_EPOCHS}; official: {OFFICIAL_EPOCHS})")

    _model_folder_parser(
        sub, "pool", _train_model_folder, own, help="train a pool of models on the real data (NCFM's feature extractors)",
        description="Train MODELS fresh models on the real training set and store each one's random init and trained "
                    "weights in DIR (pool.json + model-NNN.pt). NCFM reads it with --set pool=DIR and matches "
                    "features of lam*init + (1-lam)*trained of a random member. Training follows NCFM's official "
                    "pretrain script: SGD 0.01, momentum 0.9, wd 5e-4, batch 128, lr x0.2 at 2/3 and 5/6 of the "
                    "epochs, per-sample DSA (color, crop) and CutMix (p 0.5). The official pool is "
                    f"{OFFICIAL_MODELS} models x {OFFICIAL_EPOCHS} epochs; the defaults here ({DEFAULT_MODELS} x "
                    f"{DEFAULT_EPOCHS}) are sized for about 10 minutes on 2 CPU cores for Fashion-MNIST. Rerunning "
                    "the same command resumes: finished models are kept.",
        set_help="override a model option, e.g. --set width=64 (repeatable; default ConvNet: width 128, depth 3, "
                 "instance norm, as NCFM)")


@command
def add_experts(sub: argparse._SubParsersAction) -> None:
    from .teachers.experts import (DEFAULT_EPOCHS, DEFAULT_EXPERTS, DEFAULT_WIDTH, OFFICIAL_EPOCHS, OFFICIAL_EXPERTS,
                          RECIPES)

    def own(p: argparse.ArgumentParser) -> None:
        p.add_argument("--experts", type=int, default=DEFAULT_EXPERTS,
                       help=f"number of experts (default: {DEFAULT_EXPERTS}; MTT: {OFFICIAL_EXPERTS})")
        p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                       help=f"epochs per expert (default: {DEFAULT_EPOCHS}; MTT: {OFFICIAL_EPOCHS})")
        p.add_argument("--recipe", default="mtt", choices=list(RECIPES), help="training recipe (default: mtt)")
        p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training option of the recipe, e.g. --train lr=0.02 (repeatable; keys: lr, "
                            "momentum, weight_decay, batch_size, decay_factor, loss_scales, gp_weight, dsa, "
                            "images_per_epoch)")

    _model_folder_parser(
        sub, "experts", _train_model_folder, own, help="train expert trajectories on the real data (MTT's buffers)",
        description="Train EXPERTS fresh models on the real training set and store each one's parameters after every "
                    "epoch, the random start included, in DIR (experts.json + expert-NNN.pt). `dsdistill distill "
                    "--method mtt --set experts=DIR` matches them. Recipes: mtt (MTT buffer.py: plain SGD lr 0.01, "
                    "no momentum, batch 256, DSA) and ast (AST's smooth experts: SGD momentum 0.9, wd 1e-3, lr 0.003 "
                    "x0.6 after epoch E//2+1, loss scaled 0.5..0.95 over epochs 0-9, gradient penalty 2). MTT's "
                    f"official buffers are {OFFICIAL_EXPERTS} experts x {OFFICIAL_EPOCHS} epochs of ConvNet-3 width "
                    f"128; the defaults here ({DEFAULT_EXPERTS} x {DEFAULT_EPOCHS} epochs, width {DEFAULT_WIDTH}) are "
                    "sized for about an hour on 2 CPU cores for Fashion-MNIST. Rerunning the same command resumes: "
                    "finished experts are kept.",
        set_help=f"override a model option, e.g. --set width=128 for MTT's network (repeatable; default ConvNet: "
                 f"width {DEFAULT_WIDTH}, depth 3, instance norm)")


@command
def add_committee(sub: argparse._SubParsersAction) -> None:
    from .teachers.committee import DEFAULT_HOLDOUT, DEFAULT_PRESET, PRESETS

    def own(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                       help=f"members, epochs and training (default: {DEFAULT_PRESET}, about 13 minutes on 2 cores "
                            f"for Fashion-MNIST: {PRESETS['cpu'].members} x {PRESETS['cpu'].epochs} epoch; paper: "
                            f"CV-DD's {PRESETS['paper'].members} x {PRESETS['paper'].epochs} epochs, Adam 1e-3, wd "
                            "1e-4, batch 512, cosine, crop + flip, for a GPU; paper-tiny-imagenet: its Tiny-ImageNet "
                            "recipe, SGD 0.01, batch 128, 50 epochs)")
        p.add_argument("--members", default=None,
                       help="comma-separated members ARCH[:key=value...] instead of the preset's: a BN model and its "
                            "options, plus epochs=N and per_class=N (train on at most N images per class)")
        p.add_argument("--epochs", type=int, default=None,
                       help="training epochs per member unless its spec says (default: the preset's)")
        p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training option of the preset, e.g. --train batch_size=256 (repeatable; keys: "
                            "lr, momentum, weight_decay, batch_size, optimizer, schedule, crop_flip, dsa, cutmix_prob, "
                            "milestones, gamma, dsa_strategy)")
        p.add_argument("--holdout", type=int, default=DEFAULT_HOLDOUT,
                       help=f"validation images per class held out for the priors (default: {DEFAULT_HOLDOUT})")

    _model_folder_parser(
        sub, "committee", run_committee, own, help="train CV-DD's committee of BatchNorm models on the real data",
        description="Train each member (a BatchNorm model) on the real training set and store its checkpoint, "
                    "sha256, test accuracy and prior in DIR (committee.json + member-NAME.pt). The prior is the "
                    "member's accuracy (%) on HOLDOUT validation images per class held out of training (ours; "
                    "CV-DD uses the accuracy of a set distilled by the member alone). CV-DD (--method cvdd) votes "
                    "with these members and labels with their weighted ensemble; `evaluate --protocol kd --teacher "
                    "DIR` scores any set with it. Training: the toolkit's real-data trainer, as the preset says (cpu: "
                    "SGD 0.01, momentum 0.9, wd 5e-4, batch 128, DSA, CutMix; paper: CV-DD's squeeze). Rerunning "
                    "resumes: finished members are kept, new ones added.",
        out_help="output folder (reuse it to resume or add members)")


def run_committee(args: argparse.Namespace) -> int:
    return _train_model_folder(args, line=lambda m: f"{m['name']:<40} prior {m['prior']:6.2f}  test "
                               f"{100 * m['test_accuracy']:6.2f}%  {count(m['train_images'], 'image')}  "
                               f"{m['bytes'] / 2**20:.1f} MiB  sha256 {m['sha256'][:12]}")


@command
def add_relabel(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("relabel", help="attach a teacher's soft labels to any set (stored or online)",
                       description="Label a set with a teacher: a committee folder (weighted ensemble, weights "
                                   "softmax(prior/T)) or one member checkpoint. --mode online (default) stores no "
                                   "labels but names the teacher by sha256; the kd protocol then labels every crop "
                                   "with it. --mode stored saves one logit vector per image (eval-mode BN; N x K x 4 "
                                   "bytes, reported). Either way the set can be scored under --protocol kd without "
                                   "--teacher, with the same labels as a CV-DD set made with that committee.")
    p.add_argument("set", help="synthetic-set file (.h5)")
    p.add_argument("--teacher", required=True, metavar="DIR|FILE", help="committee folder or member checkpoint")
    p.add_argument("--mode", default="online", choices=["online", "stored"], help="online (default) or stored")
    p.add_argument("--temperature", type=float, default=RELABEL_TEMPERATURE,
                   help=f"prior temperature of the ensemble weights (default: {RELABEL_TEMPERATURE:g}, CV-DD relabel)")
    p.add_argument("--out", required=True, type=output_file, help="output .h5 file")
    _common(p)
    p.set_defaults(run=run_relabel)


def run_relabel(args: argparse.Namespace) -> int:
    labelled, teacher = relabel_file(args.set, args.teacher, args.mode, args.out, temperature=args.temperature,
                                     data_root=args.data_root, device=_device(args), command=_command(args))
    soft = labelled.soft_labels
    what = (f"soft labels stored ({soft.numel() * soft.element_size()} bytes)" if soft is not None else
            f"soft labels online from {args.teacher} ({teacher.checkpoint_bytes} checkpoint bytes)")
    print(f"wrote {args.out}: {what}; label bytes in the file {labelled.label_bytes}; {teacher.describe()}")
    return 0


# ---------------------------------------------------------------- evaluate
@command
def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a set: train fresh models on it, test on the real test set",
                       description="Train fresh models on a synthetic set under a fixed protocol and report the "
                                   "FINAL-epoch accuracy on the real test set, mean and std over the protocol's "
                                   "listed seeds. Protocols: " + "; ".join(
                                       f"{n} ({PROTOCOLS.get(n).description})" for n in PROTOCOLS.list())
                                   + ". Under torchrun (`torchrun --nproc_per_node P -m dsdistill evaluate ...`) the "
                                   "(architecture x seed) models are split across the P processes and rank 0 prints "
                                   "and writes the one merged report (seconds are summed over the ranks).")
    p.add_argument("set", nargs="?", help="synthetic-set file (.h5)")
    p.add_argument("--protocol", default="dc", help=f"one of: {', '.join(PROTOCOLS.list())} (default: dc)")
    _arch_options(p)
    p.add_argument("--json", default=None, type=output_file, help="also write the report as JSON here")
    _size_options(p)
    p.add_argument("--whole", action="store_true",
                   help="score the whole training set of --dataset instead of a file (cached per protocol hash)")
    p.add_argument("--dataset", default="fashion-mnist", help="with --whole: the dataset (default: fashion-mnist)")
    _teacher_option(p)
    _common(p)
    p.set_defaults(run=run_evaluate)


def _size_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="train N epochs instead of the protocol's (lr decay at the same fraction): a sized protocol "
                        "such as dc[epochs=300] with its own hash, NOT comparable with its parent")
    p.add_argument("--models", type=int, default=None, metavar="M",
                   help="train M models: the protocol's first M seeds (more extends them 0..M-1); a sized protocol, "
                        "NOT comparable with its parent")


def _arch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default=None,
                   help="comma-separated architectures for cross-architecture scores, e.g. convnet,mlp,lenet,"
                        "alexnet,vgg11,resnet18 (default: the protocol's)")
    p.add_argument("--path", default="auto", choices=["auto", "loop", "fast", "vmap"],
                   help="training path, the same function at different speeds: loop (one model after another), fast "
                        "(the loop compiled with torch.compile: pays 15-40 s of compiling once), vmap (the models "
                        "vectorised; for GPUs), or auto (default: vmap on CUDA; on the CPU whichever of loop and fast "
                        "measurement on this machine says finishes sooner, timings cached per machine)")


def _archs(args: argparse.Namespace) -> list[str] | None:
    return [a.strip() for a in args.arch.split(",") if a.strip()] if args.arch else None


def _teacher_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default=None, metavar="DIR|FILE",
                   help="soft-label protocols (kd): label every crop online with this teacher, a committee folder "
                        "(`dsdistill committee`; weights softmax(prior/10)) or one member checkpoint. Needed for a "
                        "set without soft labels (random, DM, ...); use the committee of the soft-label set it is "
                        "compared with")


def run_evaluate(args: argparse.Namespace) -> int:
    archs = _archs(args)
    protocol = sized_protocol(args.protocol, args.epochs, args.models)
    if args.whole:
        score = score_whole(args.dataset, protocol, archs=archs, data_root=args.data_root, device=args.device,
                            path=args.path, teacher=args.teacher)
        if score is None:  # a rank other than 0 under torchrun
            return 0
        print(score.table)
        if score.cached is not None:
            print(f"(cached: {score.cached})")
        scored: WholeScore | Report = score
    elif not args.set:
        raise ConfigError("give a set file to evaluate, or --whole --dataset NAME")
    else:
        reports = score_files([args.set], protocol, archs=archs, data_root=args.data_root, device=args.device,
                              path=args.path, teacher=args.teacher)
        if reports is None:  # a rank other than 0 under torchrun
            return 0
        scored = reports[0]
        print(scored.table())
    if args.json:
        scored.save_json(args.json, command=_command(args))
        print(f"wrote {args.json}")
    return 0


@command
def add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="score several sets under one protocol and print one table",
                       description="Evaluate every given set file under the same protocol and seeds and print one "
                                   "table (final-epoch accuracy, mean and std over the protocol's listed seeds). "
                                   "Under torchrun each set's models are split across the processes; rank 0 prints.")
    p.add_argument("sets", nargs="+", help="synthetic-set files (.h5)")
    p.add_argument("--protocol", default="dc", help="protocol name (default: dc)")
    _size_options(p)
    _arch_options(p)
    p.add_argument("--json", default=None, type=output_file, help="also write every report into this JSON file")
    _teacher_option(p)
    _common(p)
    p.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    protocol = sized_protocol(args.protocol, args.epochs, args.models)
    reports = score_files(args.sets, protocol, archs=_archs(args), data_root=args.data_root, device=args.device,
                          path=args.path, teacher=args.teacher)
    if reports is None:  # a rank other than 0 under torchrun
        return 0
    print(compare_table(protocol, args.sets, reports))
    if args.json:
        write_json(args.json, [rep.to_json() for rep in reports])
    return 0


# ---------------------------------------------------------------- show / info / import
@command
def add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="save a class-by-class image grid of a set",
                       description="Write a grid (PNG, or JPEG for .jpg/.jpeg): one column per class under its "
                                   "name, its images down the column, a title naming method, dataset and IPC, "
                                   "shown over the set's own pixel range (stated on the picture).")
    p.add_argument("set", help="synthetic-set file (.h5)")
    p.add_argument("--out", required=True, type=output_file, help="output .png, .jpg or .jpeg")
    p.add_argument("--max-per-class", type=int, default=10, help="images per column (default: 10)")
    p.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    draw(args.set, args.out, args.max_per_class)
    print(f"wrote {args.out}")
    return 0


@command
def add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a set's metadata",
                       description="Print a synthetic-set file's metadata: dataset, method, class names, images, "
                                   "labels, the stored loss curve (first, last, min, iterations), provenance.")
    p.add_argument("set", help="synthetic-set file (.h5)")
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    for k, v in describe(args.set).items():
        print(f"{k:<15} {v}")
    return 0


@command
def add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="convert a set made elsewhere (DC/DSA/DM .pt, tensor pair) to a set file",
                       description="Read an official DC/DSA/DM result file or a plain (images, labels) tensor "
                                   "file with torch.load(weights_only=True) - no code in it can run - and write "
                                   "a dsdistill set file. Images must be normalised with the dataset's mean/std.")
    p.add_argument("source", help=".pt file")
    p.add_argument("--labels", default=None, help="separate .pt file holding the labels")
    p.add_argument("--dataset", default="fashion-mnist", help="the dataset the set was made from")
    p.add_argument("--experiment", type=int, default=0, help="which experiment of a DC/DM result file (default 0)")
    p.add_argument("--method", default="imported", help="method name to record")
    p.add_argument("--lr", default=None, metavar="NUMBER|FILE",
                   help="the learned step size, a number or MTT's lr_best.pt (official MTT files store it): kept in "
                        "the set, so --protocol mtt trains with it")
    p.add_argument("--zca", action="store_true",
                   help="the images are ZCA-whitened, as MTT's CIFAR sets (kornia ZCA fit on the train pixels): the "
                        "dataset is loaded to fit the same whitening, which the set then carries")
    p.add_argument("--data-root", default=None, help="with --zca: folder holding the dataset files")
    p.add_argument("--out", required=True, type=output_file, help="output .h5")
    p.set_defaults(run=run_import)


def run_import(args: argparse.Namespace) -> int:
    synset = import_for_dataset(args.source, args.out, dataset=args.dataset, labels_path=args.labels,
                                experiment=args.experiment, method=args.method, command=_command(args),
                                lr=_number_or_path(args.lr), zca=args.zca, data_root=args.data_root)
    extra = (f", learned lr {synset.lr:g}" if synset.lr is not None else "") + (", ZCA" if args.zca else "")
    print(f"wrote {args.out}: {count(len(synset.images), 'image')}{extra}")
    return 0


def _number_or_path(value: str | None) -> float | str | None:
    """--lr 0.01 is a number, --lr lr_best.pt a file (the importer reads it)."""
    try:
        return None if value is None else float(value)
    except ValueError:
        return value


@command
def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a set as an image folder (torchvision ImageFolder) or a numpy .npz",
                       description="Write a set file for tools that do not read HDF5. imagefolder: the decoded "
                                   "training images as 8-bit PNGs, one folder per class named KK-<class name> (the "
                                   "index keeps torchvision.datasets.ImageFolder's class index equal to the label), "
                                   "and manifest.json (the set's sha256, its normalisation, the de-normalisation "
                                   "used, clipped pixel values). npz: the stored float32 images exactly, labels, "
                                   "soft labels and lr when present, and a metadata JSON string.")
    p.add_argument("set", help="synthetic-set file (.h5)")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="imagefolder or npz")
    p.add_argument("--out", required=True, metavar="PATH", help="a new folder (imagefolder) or an .npz file")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    manifest = export_set(args.set, args.format, args.out, command=_command(args))
    print(f"wrote {args.out}: {count(manifest['images'], 'image')} of "
          f"{count(manifest['num_classes'], 'class', 'classes')} ({args.format}, set sha256 "
          f"{manifest['payload_sha256'][:12]})")
    return 0


@command
def add_protocols(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocols", help="list the evaluation protocols with their hashes",
                       description="List every evaluation protocol: name, version, hash and what it is for. Only "
                                   "scores under the same hash are compared.")
    p.set_defaults(run=run_protocols)


def run_protocols(args: argparse.Namespace) -> int:
    print(protocols_table())
    return 0


# ---------------------------------------------------------------- bench / report / manifest
@command
def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite into the result store (resumable)",
                       description="Run a suite (benchmarks/suites/NAME.toml): every method x dataset x IPC x seed x "
                                   "protocol it lists, plus the references random, herding, k-center and the whole "
                                   "training set under the same protocols and seeds. Each finished distillation and "
                                   "evaluation is one record in the store (written only when complete); a rerun skips "
                                   "what is stored and resumes an interrupted distillation from its checkpoint. "
                                   "Under soft-label protocols (kd) a set is scored with its own soft labels (CV-DD) "
                                   "or labelled online by the suite's teacher (a committee folder), whose members' "
                                   "sha256 join the score's key. "
                                   "--import takes in results of benchmarks/accuracy.py instead of running a suite. "
                                   "Under torchrun (`torchrun --nproc_per_node P -m dsdistill bench SUITE`) each "
                                   "distillation splits its classes and each evaluation its (architecture x seed) "
                                   "models across the P processes; rank 0 alone reads and writes the store (one "
                                   "record per step, as one process writes). Steps that cannot be split (methods "
                                   "that couple their classes such as mtt, soft-label protocols, prerequisites not "
                                   "yet made) are refused before anything runs: --skip them here and run them in "
                                   "one process.")
    p.add_argument("suite", nargs="?", help="suite file (.toml)")
    p.add_argument("--store", default=None, help="result store folder (default: benchmarks/results/store)")
    p.add_argument("--only", action="append", metavar="PATTERN", help="run only cells whose label matches (repeatable)")
    p.add_argument("--skip", action="append", metavar="PATTERN", help="skip cells whose label matches (repeatable)")
    p.add_argument("--ipc", action="append", type=int, metavar="N",
                   help="run only cells at this IPC (repeatable; the whole-set reference has none and is left out)")
    p.add_argument("--dry-run", action="store_true", help="list every step as stored or to run, and run nothing")
    p.add_argument("--make-only", action="store_true",
                   help="make and record the sets, score nothing (e.g. distill on a GPU, score elsewhere later)")
    p.add_argument("--import", dest="import_dirs", nargs="+", metavar="DIR",
                   help="add the evaluation JSONs (and their sets) in these folders to the store")
    p.add_argument("--adopt", metavar="STORE",
                   help="replace imported records that measured no peak memory with the same recipes remade into "
                        "STORE by --make-only, where the set's sha256 is unchanged")
    _common(p)
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    if args.import_dirs:
        for folder, added, stored in import_folders(args.import_dirs, args.store):
            print(f"{folder}: {count(added, 'record')} added, {stored} already stored")
        return 0
    if args.adopt:
        adopted, differ = adopt_folder(args.adopt, args.store)
        print(f"{args.adopt}: {count(len(adopted), 'record')} adopted" + "".join(f"\n  adopted {a}" for a in adopted))
        if differ:
            print(f"not adopted, the remade set differs from the stored one: {'; '.join(differ)}", file=sys.stderr)
        return 0
    cells = {"only": args.only, "skip": args.skip, "ipcs": args.ipc, "make_only": args.make_only}
    if args.dry_run:
        lines = plan_suite(args.suite, args.store, **cells)
        if lines is not None:  # None: a rank other than 0 under torchrun
            print("\n".join(lines))
        return 0
    try:
        summary = bench_suite(args.suite, args.store, **cells, device=args.device, data_root=args.data_root,
                              command=_command(args))
    except Interrupted as stop:
        print(f"dsdistill: {stop}; rerun the same command to resume", file=sys.stderr)
        return 130
    if summary is not None:
        print(f"suite {summary.suite}: {summary.line()}; store: {summary.store}")
    return 0


@command
def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="regenerate the leaderboard (markdown, CSV, plots) from the result store",
                       description="Write LEADERBOARD.md and a CSV from the store: per dataset, IPC and protocol (hard- "
                                   "and soft-label tables apart; only equal protocol hashes share a table) each "
                                   "method's mean ± std over seeds, gain over random, fraction of the whole-dataset "
                                   "accuracy, distillation cost and Welch's t-test against the next method, with the "
                                   "published numbers beside, marked. Also draws accuracy vs IPC, accuracy vs "
                                   "distillation time and an image grid of every set. Same store, same bytes.")
    p.add_argument("--store", default=None, help="result store folder (default: benchmarks/results/store)")
    p.add_argument("--out", default="benchmarks/LEADERBOARD.md", type=output_file, help="markdown file (default: %(default)s)")
    p.add_argument("--csv", default=None, type=output_file, help="CSV file (default: leaderboard.csv beside --out)")
    p.add_argument("--plots", default=None, type=output_folder, help="plot folder (default: plots/ beside --out)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--html", action="store_true",
                   help="also write the leaderboard as a static page, site/index.html beside --out (offline: no "
                        "external resource; it references the plot folder relatively)")
    p.add_argument("--site", default=None, help="folder of the HTML page (default: site/ beside --out)")
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    files, plots = regenerate(args.store, args.out, args.csv, args.plots, draw=not args.no_plots,
                              command=_command(args), html=args.html, site_dir=args.site)
    site = [f for f in files if f.name == "index.html"]
    print(f"wrote {files[0]}, {files[1]}" + (f" and {count(len(files) - 2 - len(site), 'picture')} under {plots}"
                                             if plots else "") + (f"; the site {site[0]}" if site else ""))
    return 0


@command
def add_manifest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifest", help="rebuild the manifest of a folder of published sets",
                       description="Write DIR/manifest.json: for every set file in DIR its file and payload sha256, "
                                   "method, config, the command that made it and its scores by protocol from the "
                                   "result store. --check verifies an existing manifest instead.")
    p.add_argument("folder", nargs="?", default="synthetic_sets", help="folder of .h5 sets (default: %(default)s)")
    p.add_argument("--store", default=None, help="result store folder (default: benchmarks/results/store)")
    p.add_argument("--check", action="store_true", help="verify every listed file loads and matches its sha256")
    p.set_defaults(run=run_manifest)


def run_manifest(args: argparse.Namespace) -> int:
    if args.check:
        verify_manifest(args.folder)
        print(f"{args.folder}/{MANIFEST}: every set loads and matches its sha256")
        return 0
    manifest = write_manifest(args.folder, args.store, _command(args))
    print(f"wrote {args.folder}/{MANIFEST}: {count(len(manifest['sets']), 'set')}")
    return 0


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dsdistill",
        description="Dataset distillation: generate a small synthetic set, score it under a fixed protocol, "
                    "compare methods. Run `dsdistill COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"dsdistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
        args.argv = argv
        quiet_unless_main(getattr(args, "quiet", False))  # under torchrun only rank 0 draws bars
        keep_freed_memory()
        check_command(args.command)  # what may run under torchrun: dsdistill._distributed.SHARDED_COMMANDS
        return args.run(args)
    except DsdistillError as err:
        print(f"dsdistill: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()
