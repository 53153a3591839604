"""DM: distribution matching (Zhao & Bilen, WACV 2023), the base of DataDAM and NCFM.

Each iteration draws a fresh randomly initialised network (frozen); per class, one Siamese DSA draw
is applied to a real batch and to that class's synthetic images; the loss is the squared distance
between mean embeddings, summed over classes; SGD on the pixels.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._seed import make_generator, seeded_init
from ..augment import DSA, DSAConfig, always_flip_for, dsa_strategy_for
from ..data import RealData
from .._compile import compiled
from ..errors import ConfigError
from ..models import create_model, has_batch_norm
from .base import State, SynthConfig, Synthesizer
from .joint import JOINT_MEMORY_GB, joint_chunks
from .sharding import on_host, sum_in_order
from .losses import mean_embedding_loss
from .registry import register


@dataclass
class DMConfig(SynthConfig):
    lr_img: float = 1.0            # DM official README: lr_img 1 for IPC <= 50 (10 above)
    momentum: float = 0.5          # DM official main_DM.py
    batch_real: int = 256          # DM official: real images per class per iteration
    width: int = 128               # DC/DM ConvNet width
    depth: int = 3                 # DC/DM ConvNet depth
    class_batching: str = "auto"   # ours: "joint" (all classes in one forward) or "per-class" (a loop, as
                                   # DM's non-BN branch). With instance norm both are the same function;
                                   # with batch norm joint is the official semantics (real and synthetic
                                   # batches each normalised by their own statistics over all classes:
                                   # DM's BN branch, DataDAM's code). "auto": joint with batch norm or on
                                   # CUDA, per-class otherwise: on 2 CPU cores the joint pass measured about
                                   # half as fast with 2.4-4x the memory (benchmarks/results/synth_speed-cpu.md).
    joint_memory_gb: float = JOINT_MEMORY_GB  # ours: a joint pass goes in chunks of classes that fit this many GB
                                   # of activations (synthesizers/joint.py says why 8)
    compile: bool = False          # ours: torch.compile the network's passes (the real batch's no-grad forward, most
                                   # of an iteration, and the synthetic forward): the same function to float
                                   # rounding, compiled once per run (benchmarks/synth_speed.py measures it)


@dataclass
class Features:
    """What a network says about a batch, with a leading class axis: [K, n, ...]."""
    maps: list[Tensor]
    embedding: Tensor


def _features_and_embed(net: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    return net.features_and_embed(x)


@functools.lru_cache(maxsize=None)
def _compiled_features():
    """One compiled feature pass per process: every iteration's fresh network is the same graph with other
    parameters (they are graph inputs), so it compiles once per batch shape and grad mode."""
    return compiled(_features_and_embed, "the feature pass", "drop --set compile=true")


@functools.lru_cache(maxsize=None)
def dsa_for(strategy: str, all_groups: bool = False, always_flip: bool = False) -> DSA:
    """One DSA per strategy (it holds no state beyond its parsed config), shared rather than kept on a method."""
    return DSA(DSAConfig(strategy=strategy, all_groups=all_groups, always_flip=always_flip))


@register("dm")
class DM(Synthesizer):
    Config = DMConfig
    fyi_sampler_under_flip = True   # FYI's DM code: its DSA sampler under the flip
    TINY = {"width": 8, "batch_real": 6}   # a narrow ConvNet and 6 real images per class
    PRESETS = {
        "paper": {"iterations": 20000},                      # DM official: 20k iterations
        # ours: sized for 2 CPU cores (about 10 minutes at IPC 10); 64 real images per class is
        # DataDAM's official value and makes the real pass, which dominates on a CPU, 4x cheaper
        "fmnist-cpu": {"iterations": 400, "batch_real": 64},
    }

    def make_optimizer(self, images: Tensor) -> torch.optim.Optimizer:
        return torch.optim.SGD([images], lr=self.config.lr_img, momentum=self.config.momentum)

    # ---- the matching objective (subclasses override)
    def match(self, real: Features, syn: Features) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one group and its named parts (0-dim tensors; the step reads them once per iteration)."""
        loss = mean_embedding_loss(real.embedding, syn.embedding)
        return loss, {}

    def needs_maps(self) -> bool:
        return False

    # ---- shared machinery
    def random_network(self, real: RealData, seed: int, it: int) -> nn.Module:
        """A fresh random network per iteration, seeded by (seed, iteration), frozen, in train mode."""
        cfg = self.config
        options: dict[str, Any] = {"norm": cfg.norm, "width": cfg.width, "depth": cfg.depth} if cfg.arch.startswith("convnet") else {}
        net = create_model(cfg.arch, real.channels, real.num_classes, real.image_size, **options)
        net = seeded_init(net, seed, "net", it).to(real.train.images.device)
        for p in net.parameters():
            p.requires_grad_(False)
        return net.train()

    def dsa(self, real: RealData) -> DSA | None:
        if not self.config.dsa:
            return None
        return dsa_for(dsa_strategy_for(real.digits), always_flip=always_flip_for(self.config.dsa_sampler, real.digits))

    def class_inputs(self, state: State, real: RealData, c: int, it: int, seed: int) -> tuple[Tensor, Tensor]:
        """The per-class seam: class c's augmented real batch and (viewed) synthetic batch."""
        real_batch = real.train.sample_class(c, self.config.batch_real, make_generator(seed, "real", c, it))
        syn_batch = self.view(state.class_slice(c))
        dsa = self.dsa(real)
        if dsa is not None:
            real_batch, syn_batch = dsa.siamese(real_batch, syn_batch, generator=make_generator(seed, "dsa", c, it))
        return real_batch, syn_batch

    def _features(self, net: nn.Module, batches: list[Tensor]) -> Features:
        k = len(batches)
        embed = _compiled_features() if self.config.compile else _features_and_embed
        maps, emb = embed(net, torch.cat(batches))
        if not self.needs_maps():
            maps = []
        return Features([m.reshape(k, -1, *m.shape[1:]) for m in maps], emb.reshape(k, -1, emb.shape[-1]))

    def batching(self, net: nn.Module, device: torch.device) -> str:
        mode = self.config.class_batching
        if mode not in ("auto", "joint", "per-class"):
            raise ConfigError(f"class_batching must be auto, joint or per-class, got {mode!r}")
        if mode == "auto":
            return "joint" if has_batch_norm(net) or device.type == "cuda" else "per-class"
        return mode

    def groups(self, net: nn.Module, state: State, inputs: list[tuple[Tensor, Tensor]] | None = None) -> list[list[int]]:
        """Positions of the held classes matched together: all at once (joint; in chunks of classes that fit
        joint_memory_gb when `inputs` are given) or one class at a time."""
        positions = list(range(len(state.images) // state.ipc))
        if self.batching(net, state.images.device) != "joint":
            return [[i] for i in positions]
        if inputs is None:
            return [positions]
        return joint_chunks(net, inputs, self.config.joint_memory_gb, self.name)

    def shard_problem(self, real: RealData) -> str | None:
        """Batch norm in the joint pass normalises all classes together: that couples the classes."""
        problem = super().shard_problem(real)
        net = self.random_network(real, 0, 0)
        if problem is None and has_batch_norm(net) and self.batching(net, real.train.images.device) == "joint":
            problem = (f"{self.name} with batch norm matches all classes in one batch-normalised pass, which couples "
                       "the classes: split across processes only with --set class_batching=per-class (each class "
                       "normalised alone, a different objective) or --set norm=instance, or run in one process")
        return problem

    def step(self, state: State, real: RealData, it: int, seed: int) -> dict[str, Any]:
        net = self.random_network(real, seed, it)
        inputs = [self.class_inputs(state, real, c, it, seed) for c in state.served(real.num_classes)]
        state.optimizer.zero_grad(set_to_none=True)
        losses, parts = [], []
        for group in self.groups(net, state, inputs):
            with torch.no_grad():
                real_out = self._features(net, [inputs[i][0] for i in group])
            syn_out = self._features(net, [inputs[i][1] for i in group])
            loss, terms = self.match(real_out, syn_out)
            loss.backward()
            losses.append(loss.detach())
            parts.append(terms)
        state.optimizer.step()
        losses, parts = on_host(losses, parts)  # one host synchronisation per iteration, not one per group
        figures: dict[str, float] = {}
        for terms in parts:
            for k, v in terms.items():
                figures[k] = figures.get(k, 0.0) + v
        return {"loss": sum_in_order(losses), "class_losses": losses, **figures}
