"""CV-DD: committee voting for dataset distillation (Cui et al., arXiv 2501.07575), the SRe2L family's recover and
relabel stages with a committee of models trained on the REAL data (`dsdistill committee`).

Recover, per IPC index k (the images (c, k) of every class form one batch, one image per class): a pair of voters
fixed for that index, weighted w = softmax(prior / 5); loss = sum_m w_m * (CE(f_m(x~), y) + 0.01 * BN_m(x~)), where
BN_m matches the batch mean/variance at every BatchNorm input to its running statistics (first layer x10); x~ is a
random-resized-crop + flip (none for digits) + jitter of the batch, drawn PER IMAGE from a generator per (class,
iteration) (the official code draws one crop and one flip per batch: reference/cvdd_fyi.md A8.4, not copied); Adam (0.25, betas 0.5/0.9) with cosine decay to 0
over the index's iterations, state reset per index; pixels clamped to the valid range; real-image initialisation of
medium difficulty. Relabel: soft labels of the prior-weighted committee ensemble (softmax(prior / 10)), either stored
in the set file (static, one per image) or, by default, produced online at evaluation for every crop by the
committee the set names (by sha256), as CV-DD's per-crop FKD labels.

Such a set is meant to be scored under the soft-label protocol `kd`; under `dc` it trains on its hard labels only,
and the report says so. Compare it with random selection scored under kd with the same committee as teacher.

Single-model baseline (SRe2L++, reference A6): preset `cvdd.single` = one voter (the member with the highest prior,
or `--set members=NAME`), relabelled by that member alone.

Voter schedule (reference A2), `schedule=auto`: IPC 1 -> the top-2 members by prior (the reference's rule for Tiny
and ImageNet-1K; its fixed CIFAR-10/100 pairs, MBV2 + D121 and SV2 + MBV2, are not a schedule here, even with the
paper committee); IPC 50 and above -> a seeded random pair
per index (official: unseeded random.sample); otherwise -> walk through all C(M, 2) pairs in order (official IPC 10:
the ten pairs of five members), wrapping when IPC exceeds the pair count (ours: the reference defines IPC 1, 10, 50).

Split across torchrun processes by class (like DM): each rank recovers only its classes' images and reads only their
real data. The voters run in eval mode, so each image's logits and CE depend on it alone; the BN term's batch mean
and variance are the one quantity over all classes, and they are computed from per-class moments (mean and mean
square at every BN input) summed in class order over the ranks (World.ordered_sum): the whole batch's statistics, so
no configuration couples the classes beyond what the ranks exchange, and none is refused. With class_batching=
per-class a sharded run gives a one-process run's bytes (same seed, same threads per process); with joint (the
default) each voter sees a rank's classes in one batch: the same function, not always the same bits.

Differences from the official code, all ours: images are stored as float32 in normalised space (official: 8-bit JPEG);
the budget is split evenly over the IPC indices (official: 4000 per index, our default too); the medium-difficulty
init ranks whole real images by the relabel teacher's true-class probability and takes those around the median
(DELT-style; the official patches are RDED crops made offline); stored soft labels are computed once on the stored
images with eval-mode BN (a static label; CV-DD's per-crop train-mode labels are the `online` mode).
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._seed import make_generator
from ..augment.crops import RRC_SCALE, jitter, random_resized_crop
from ..data import RealData
from ..errors import ConfigError
from ..synset import SyntheticSet
from ..teachers.ensemble import RELABEL_TEMPERATURE, Teacher, prior_weights
from ..teachers.committee import PAPER_MEMBERS, load_committee
from ..teachers.relabel import relabel
from .base import Budget, State, SynthConfig, Synthesizer
from .losses import bn_statistics_loss
from .joint import JOINT_MEMORY_GB, joint_chunks
from .sharding import on_host, sum_in_order
from .registry import register

SCHEDULES = ("auto", "top", "cycle", "random")
PAPER_VOTERS = tuple(PAPER_MEMBERS.split(","))  # CV-DD's five, in its order (teachers.committee)


@dataclass
class CVDDConfig(SynthConfig):
    init: str = "medium"              # CV-DD: real patches of "medium" difficulty; also real, noise, file:PATH
    committee: str = ""               # the folder `dsdistill committee` wrote (required)
    members: tuple[str, ...] = ()     # ours: use only these committee members (empty: all; CV-DD: all five)
    priors: tuple[float, ...] = ()    # ours: override the committee's priors, one per member used (e.g. the
                                      # reference's distilled-set accuracies); empty: the committee's
    voters: int = 2                   # CV-DD selected_size 2 (1: the SRe2L++ single-model baseline)
    schedule: str = "auto"            # CV-DD settings 4 / 5 / 3 for IPC 1 / 10 / 50 (see the module docstring)
    weighting: str = "prior"          # CV-DD: softmax(prior / T_w); "equal" is its ablation
    weight_temperature: float = 5.0   # CV-DD recover weight_temperature
    r_bn: float = 0.01                # CV-DD/SRe2L recover r_bn
    first_bn_multiplier: float = 10.0 # CV-DD/SRe2L recover first_bn_multiplier (default, never overridden)
    lr: float = 0.25                  # CV-DD recover: Adam lr 0.25 ...
    betas: tuple[float, ...] = (0.5, 0.9)  # ... betas (0.5, 0.9)
    iterations_per_ipc: int = 4000    # CV-DD: 4000 iterations per IPC index, every dataset (used when no
                                      # --iterations is given; --iterations N is the total over the IPC indices)
    augment: bool = True              # CV-DD --apply-data-augmentation (on for every dataset)
    rrc_scale: tuple[float, ...] = RRC_SCALE  # CV-DD: torchvision default (0.08, 1); the reference note suggests
                                      # (0.5, 1) or (0.25, 1) at 28 px as an ablation
    jitter: int = 4                   # CV-DD: 4 for 32/64 px (32 for 224 px); reference note: 2-4 at 28 px
    candidates: int = 300             # RDED mipc 300: real images per class ranked for the medium init
    relabel: str = "online"           # CV-DD labels every crop (FKD files); "online" does that at evaluation from
                                      # the committee the set names (reference A7: equivalent up to the draws);
                                      # "stored" (ours): one static label per image in the file, eval-mode BN
    relabel_teachers: str = "committee"  # CV-DD: the whole committee; "voters": only members that voted (SRe2L++)
    relabel_temperature: float = RELABEL_TEMPERATURE  # CV-DD relabel: softmax(prior / 10)
    class_batching: str = "joint"     # ours: "joint" (each voter sees the held classes in one batch, as CV-DD) or
                                      # "per-class" (one forward per class: the same function, about 2x slower with
                                      # VGG/ResNet voters on a CPU, and byte-identical for any number of torchrun
                                      # processes, since CPU kernels may pick their summation order by batch size)
    joint_memory_gb: float = JOINT_MEMORY_GB  # ours: a joint pass goes in chunks of classes that fit this many GB
                                      # of activations (synthesizers/joint.py says why 8)
    dsa: bool = False                 # unused by CV-DD (its augmentation is RRC/flip/jitter above)


class _BNRecorder:
    """Forward hooks on every BatchNorm: per-channel moments of its input, in call order, for each of `groups`
    equal blocks of the batch (the classes): the mean and the mean square, float64, as [groups, 2 x channels]."""

    def __init__(self, model: nn.Module, groups: int = 1) -> None:
        self.groups = groups
        self.moments: list[Tensor] = []
        self.running_means: list[Tensor] = []
        self.running_vars: list[Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for m in model.modules()
                         if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        x = inputs[0].reshape(self.groups, -1, *inputs[0].shape[1:])
        dims = [1] + list(range(3, x.dim()))
        mean, var = x.mean(dims).double(), x.var(dims, unbiased=False).double()
        self.moments.append(torch.cat([mean, var + mean ** 2], dim=1))
        self.running_means.append(module.running_mean)
        self.running_vars.append(module.running_var)

    def close(self) -> None:
        for h in self._handles:
            h.remove()


@dataclass
class VoterPass:
    """What a frozen voter says about a batch of class blocks."""
    logits: Tensor               # [batch, classes]
    moments: Tensor              # [blocks, sum over BN layers of 2 x channels] float64 (see _BNRecorder)
    sizes: list[int]             # each BN layer's share of the moments' columns
    running_means: list[Tensor]
    running_vars: list[Tensor]


def voter_pass(model: nn.Module, x: Tensor, groups: int = 1) -> VoterPass:
    """A frozen voter's logits on x (`groups` equal class blocks) and each block's BN-input moments, scoped hooks."""
    recorder = _BNRecorder(model, groups)
    try:
        logits = model(x)
    finally:
        recorder.close()
    moments = torch.cat(recorder.moments, dim=1) if recorder.moments else x.new_zeros(groups, 0, dtype=torch.float64)
    return VoterPass(logits, moments, [m.shape[1] for m in recorder.moments], recorder.running_means,
                     recorder.running_vars)


def bn_loss_from_moments(total: Tensor, blocks: int, voter: VoterPass, first_multiplier: float) -> Tensor:
    """The BN-statistics loss of the whole batch from its blocks' moments summed (`total`, over `blocks` equal
    blocks): mean = E[x], biased variance = E[x^2] - E[x]^2, in float64."""
    means, variances = [], []
    for part in (total / blocks).split(voter.sizes):
        mean, square = part.chunk(2)
        means.append(mean.float())
        variances.append((square - mean ** 2).float())
    if not means:
        return total.new_zeros((), dtype=torch.float32)
    return bn_statistics_loss(means, variances, voter.running_means, voter.running_vars, first_multiplier)


def voter_logits_and_bn(model: nn.Module, x: Tensor, first_multiplier: float) -> tuple[Tensor, Tensor]:
    """A frozen voter's logits on x and its BN-statistics loss over the batch (SRe2L's BNFeatureHook)."""
    out = voter_pass(model, x)
    return out.logits, bn_loss_from_moments(out.moments.sum(0), 1, out, first_multiplier)


def voter_schedule(priors: list[float], ipc: int, voters: int, schedule: str, seed: int) -> list[list[int]]:
    """For each IPC index, the indices of its voters (fixed for all of that index's iterations)."""
    members = len(priors)
    if not 1 <= voters <= members:
        raise ConfigError(f"cvdd needs 1 <= voters <= committee members ({members}); got voters={voters}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"cvdd schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "auto":
        schedule = "top" if ipc == 1 or voters == members else ("random" if ipc >= 50 else "cycle")
    if schedule == "top":
        ranked = sorted(range(members), key=lambda i: (-priors[i], i))
        return [sorted(ranked[:voters])] * ipc
    if schedule == "cycle":
        pairs = list(itertools.combinations(range(members), voters))
        return [list(pairs[k % len(pairs)]) for k in range(ipc)]
    return [sorted(torch.randperm(members, generator=make_generator(seed, "cvdd-voters", k))[:voters].tolist())
            for k in range(ipc)]


def index_bounds(total: int, ipc: int) -> list[int]:
    """Iteration where each IPC index starts (and the end): the budget split evenly, k * total // ipc."""
    return [k * total // ipc for k in range(ipc + 1)]


@register("cvdd")
class CVDD(Synthesizer):
    Config = CVDDConfig
    needs_teacher = True
    teacher_folder = "committee"
    soft_labels = True           # relabel: the committee's logits stored, or the committee named (online)
    class_separable = True       # the BN term's batch statistics, its only quantity over all classes, are added up
                                 # from per-class moments, across torchrun processes too (World.ordered_sum)
    schedules_itself = True      # without --iterations the run is iterations_per_ipc x IPC
    PRESETS = {
        # CV-DD: 4000 iterations per index, voting with its five members (a committee built with `dsdistill committee
        # --preset paper`), named so that another committee is refused and the pairs walk in CV-DD's order
        "paper": {"iterations_per_ipc": 4000, "members": PAPER_VOTERS},
        # SRe2L++ (reference A6): one voter, relabelled by that member alone
        "single": {"voters": 1, "schedule": "top", "relabel_teachers": "voters"},
        # SRe2L++ as CV-DD ran it (reference A3: the single-teacher path is ResNet-18 alone), on the paper committee
        "single-paper": {"voters": 1, "schedule": "top", "relabel_teachers": "voters", "members": ("tv-resnet18",),
                         "iterations_per_ipc": 4000},
        # ours, for 2 CPU cores: 500 iterations per IPC index (the default committee's pairs take about 0.3 s
        # (ConvNet + VGG11) to 1.2 s (VGG11 + ResNet-18) per step there: README, "CV-DD", CPU costs)
        "fmnist-cpu": {"iterations_per_ipc": 500},
        "single-fmnist-cpu": {"voters": 1, "schedule": "top", "relabel_teachers": "voters", "iterations_per_ipc": 500},
    }

    # ---- setup
    def _check(self, real: RealData) -> None:
        cfg = self.config
        if not cfg.committee:
            raise ConfigError(f"cvdd votes with a committee trained on the real data: build one with `dsdistill "
                              f"committee --dataset {real.name} --out DIR` and pass --set committee=DIR")
        if real.zca is not None:
            raise ConfigError("cvdd works in normalised space (its committee and BN statistics live there); drop --zca")
        for key, value, valid in (("weighting", cfg.weighting, ("prior", "equal")),
                                  ("class_batching", cfg.class_batching, ("joint", "per-class")),
                                  ("relabel", cfg.relabel, ("stored", "online")),
                                  ("relabel_teachers", cfg.relabel_teachers, ("committee", "voters"))):
            if value not in valid:
                raise ConfigError(f"cvdd {key} must be one of {', '.join(valid)}, got {value!r}")
        if len(cfg.betas) != 2 or len(cfg.rrc_scale) != 2 or not 0 < cfg.rrc_scale[0] <= cfg.rrc_scale[1] <= 1:
            raise ConfigError("cvdd needs betas=b1,b2 and rrc_scale=lo,hi with 0 < lo <= hi <= 1")

    def setup(self, real: RealData, state: State, seed: int) -> None:
        """Load the committee (state.context); fix the priors, the voter schedule and the relabel teacher's members
        (state.extra, so the checkpoint records the plan)."""
        self._check(real)
        cfg = self.config
        committee = load_committee(cfg.committee, real, device=real.train.images.device)
        if cfg.members:
            committee = committee.select(list(cfg.members))
        priors = [m.prior for m in committee.members]
        if cfg.priors:
            if len(cfg.priors) != len(priors):
                raise ConfigError(f"cvdd priors: {len(cfg.priors)} values for {len(priors)} members "
                                  f"({', '.join(committee.names)})")
            priors = [float(p) for p in cfg.priors]
        schedule = voter_schedule(priors, state.ipc, cfg.voters, cfg.schedule, seed)
        if cfg.relabel_teachers == "voters":
            used = sorted({i for pair in schedule for i in pair})
        else:
            used = list(range(len(priors)))
        state.context["committee"] = committee
        state.extra.update(priors=priors, schedule=schedule, teacher_members=used)

    def plan_budget(self, budget: Budget | None, state: State) -> Budget:
        """The budget is the TOTAL over the IPC indices, split evenly; without one, iterations_per_ipc x IPC."""
        planned = state.ipc * self.config.iterations_per_ipc
        if budget is None:
            return Budget(iterations=planned)
        if budget.iterations is None:
            warnings.warn(f"cvdd with only --minutes: the plan is {planned} iterations ({self.config.iterations_per_ipc}"
                          " per IPC index); if time runs out first, the later IPC indices keep their initial images",
                          stacklevel=4)
            return Budget(iterations=planned, minutes=budget.minutes)
        return budget

    def _voter_weights(self, state: State, pair: list[int]) -> Tensor:
        if self.config.weighting == "equal":
            return torch.full((len(pair),), 1.0 / len(pair))
        return prior_weights([state.extra["priors"][i] for i in pair], self.config.weight_temperature)

    def relabel_teacher(self, state: State, bn_mode: str) -> Teacher:
        committee, members = state.context["committee"], state.extra["teacher_members"]
        chosen = committee.select([committee.names[i] for i in members])
        weights = prior_weights([state.extra["priors"][i] for i in members], self.config.relabel_temperature)
        return chosen.teacher(weights, bn_mode)

    def make_optimizer(self, images: Tensor) -> torch.optim.Optimizer:
        return torch.optim.Adam([images], lr=self.config.lr, betas=tuple(self.config.betas))

    # ---- initialisation: medium-difficulty real images
    def init_images(self, real: RealData, state: State, seed: int) -> Tensor:
        if self.config.init != "medium":
            return super().init_images(real, state, seed)
        ipc = state.ipc
        teacher = self.relabel_teacher(state, "eval")
        picked = []
        for c in real.class_ids:  # the classes this process serves (all of them in one process)
            n = min(self.config.candidates, real.train.class_size(c))
            if n < ipc:
                raise ConfigError(f"cvdd medium init ranks {n} candidates of class {c} but needs {ipc}; raise "
                                  "candidates")
            pool = real.train.sample_class(c, n, make_generator(seed, "init", c))
            with torch.no_grad():
                prob = torch.cat([torch.softmax(teacher(x), -1)[:, c] for x in pool.split(256)])
            order = torch.argsort(prob.cpu(), stable=True)        # hardest first
            start = max(0, min(n - ipc, n // 2 - ipc // 2))        # the window around the median
            picked.append(pool[order[start:start + ipc].to(pool.device)])
        return torch.cat(picked).clone()

    # ---- one iteration
    @staticmethod
    def _position(state: State, it: int) -> tuple[int, int, int]:
        """(IPC index, iteration within it, its length)."""
        bounds = index_bounds(state.budget.iterations, state.ipc)
        k = max(i for i in range(state.ipc) if bounds[i] <= it)
        return k, it - bounds[k], bounds[k + 1] - bounds[k]

    def _augment(self, x: Tensor, real: RealData, seed: int, it: int, c: int) -> Tensor:
        """Class c's batch (its image and, with --flip, the mirror), drawn from (seed, class, iteration) alone."""
        cfg = self.config
        if not cfg.augment:
            return x
        gen = make_generator(seed, "cvdd-aug", c, it)
        x = random_resized_crop(x, gen, scale=tuple(cfg.rrc_scale), flip=not real.digits)
        return jitter(x, gen, cfg.jitter)

    def _voter(self, state: State, member: int, batches: list[Tensor]) -> VoterPass:
        """One voter over the held classes: joint in chunks of classes that fit joint_memory_gb (one chunk at any
        size seen so far), or one class at a time."""
        model = state.context["committee"].members[member].model
        if self.config.class_batching == "joint":
            chunks = joint_chunks(model, [(x,) for x in batches], self.config.joint_memory_gb, self.name)
        else:
            chunks = [[i] for i in range(len(batches))]
        if len(chunks) == 1:
            return voter_pass(model, torch.cat(batches), len(batches))
        passes = [voter_pass(model, torch.cat([batches[i] for i in chunk]), len(chunk)) for chunk in chunks]
        first = passes[0]
        return VoterPass(torch.cat([p.logits for p in passes]), torch.cat([p.moments for p in passes]), first.sizes,
                         first.running_means, first.running_vars)

    def step(self, state: State, real: RealData, it: int, seed: int) -> dict[str, Any]:
        """One Adam step on the k-th image of every held class. The loss splits into per-class CE terms and the
        BN term, whose batch statistics come from every class's moments (summed in class order over the ranks);
        only the last rank reports the BN term, so the ranks' terms add up to one process's loss."""
        cfg = self.config
        world = state.world
        k, local, length = self._position(state, it)
        if local == 0:
            state.optimizer.state.clear()  # CV-DD: a fresh optimiser for every IPC index
        for group in state.optimizer.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * local / length))  # SRe2L lr_cosine_policy
        classes = state.served(real.num_classes)
        index = torch.arange(len(classes), device=state.images.device) * state.ipc + k
        batches = [self._augment(self.view(state.images[i:i + 1]), real, seed, it, c)
                   for i, c in zip(index.tolist(), classes)]
        copies = batches[0].shape[0]
        samples = real.num_classes * copies  # the whole batch, over every rank: CE is its mean
        pair = state.extra["schedule"][k]
        weights = self._voter_weights(state, pair).tolist()
        passes = [self._voter(state, member, batches) for member in pair]
        labels = torch.tensor(classes, device=state.images.device).repeat_interleave(copies)
        loss = state.images.new_zeros(())
        ces, bns = [], []
        for w, out in zip(weights, passes):
            ce = F.cross_entropy(out.logits, labels, reduction="none").view(len(classes), copies).sum(1)  # per class
            loss = loss + w * (ce.sum() / samples)
            ces.append(ce.detach())
        if cfg.r_bn:
            moments = torch.cat([out.moments for out in passes], dim=1)
            total = world.ordered_sum(moments.detach(), "the BN statistics exchange") + (moments - moments.detach()).sum(0)
            for w, out, part in zip(weights, passes, total.split([out.moments.shape[1] for out in passes])):
                bn = bn_loss_from_moments(part, real.num_classes, out, cfg.first_bn_multiplier)
                loss = loss + w * cfg.r_bn * bn
                bns.append(bn.detach())
        values, _ = on_host([*torch.cat(ces), *bns])  # one host synchronisation per iteration
        terms, bn_total = [0.0] * len(classes), 0.0
        for v, (w, _) in enumerate(zip(weights, passes)):
            terms = [t + w * x / samples for t, x in zip(terms, values[v * len(classes):(v + 1) * len(classes)])]
        for w, bn in zip(weights, values[len(passes) * len(classes):]):
            bn_total += w * cfg.r_bn * bn
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        with torch.no_grad():
            low, high = self._bounds(real, state.images)
            state.images[index] = torch.maximum(torch.minimum(state.images[index], high), low)
        class_losses = terms + ([bn_total] if world.rank == world.size - 1 else [])
        return {"loss": sum_in_order(class_losses), "class_losses": class_losses, "ce": sum_in_order(terms),
                "bn": bn_total}

    @staticmethod
    def _bounds(real: RealData, like: Tensor) -> tuple[Tensor, Tensor]:
        """The normalised images of pixels 0 and 1 (CV-DD clips to [-m/s, (1-m)/s] after each step)."""
        zeros = torch.zeros(1, real.channels, 1, 1, device=like.device, dtype=like.dtype)
        return real.from_pixels(zeros), real.from_pixels(zeros + 1)

    # ---- relabel and export
    def export(self, real: RealData, state: State, seed: int, images: Tensor | None = None) -> SyntheticSet:
        synset = super().export(real, state, seed, images)
        cfg = self.config
        names = state.context["committee"].names
        synset.extra["voters"] = [[names[i] for i in pair] for pair in state.extra["schedule"]]
        synset.extra["priors"] = dict(zip(names, state.extra["priors"]))
        teacher = self.relabel_teacher(state, "eval" if cfg.relabel == "stored" else "train")
        return relabel(synset, teacher, cfg.relabel, cfg.relabel_temperature)
