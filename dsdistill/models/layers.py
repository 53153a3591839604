"""Layers by name: the norm, activation and pooling choices of DC/DM's ConvNet ablations, as registries.

Also `output_shape`, a dry run on the meta device, so classifiers and LayerNorm are sized from the real
layers rather than from hand-written arithmetic that can drift away from them.

Source of the choices: DC/DM `networks.py` (github.com/VICO-UoE/DatasetCondensation), `ConvNet._get_normlayer`,
`_get_activation`, `_get_pooling`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from .._registry import Registry
from ..errors import ConfigError

Shape = tuple[int, ...]
"""Shape of one sample, without the batch dimension: (C, H, W) for maps, (D,) for vectors."""

NormFactory = Callable[[Shape], nn.Module]
"""Builds a norm for maps of a given (C, H, W) shape (LayerNorm needs H and W, as in DC)."""

NORMS: Registry[NormFactory] = Registry("norm")
ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
POOLINGS: Registry[Callable[[], nn.Module]] = Registry("pooling")


# ---- norms: DC's `_get_normlayer`; the argument is the (C, H, W) shape being normalised ----


@NORMS.register("instance")
def _instance_norm(shape: Shape) -> nn.Module:
    # DC: GroupNorm(C, C, affine=True), i.e. instance norm with a per-channel affine (nn.InstanceNorm2d has none
    # by default and keeps no state either way, so the GroupNorm spelling is kept for identical parameters).
    return nn.GroupNorm(shape[0], shape[0], affine=True)


@NORMS.register("batch")
def _batch_norm(shape: Shape) -> nn.Module:
    return nn.BatchNorm2d(shape[0])  # DC: BatchNorm2d(C, affine=True), PyTorch's default momentum and eps


@NORMS.register("group")
def _group_norm(shape: Shape) -> nn.Module:
    groups = 4  # DC: GroupNorm(4, C)
    if shape[0] % groups:
        raise ConfigError(f"norm 'group' splits channels into {groups} groups; {shape[0]} channels do not divide")
    return nn.GroupNorm(groups, shape[0], affine=True)


@NORMS.register("layer")
def _layer_norm(shape: Shape) -> nn.Module:
    # DC: LayerNorm([C, H, W], elementwise_affine=True): per-sample statistics over C, H, W and an affine per element
    # (GroupNorm(1, C) has the same statistics but only a per-channel affine, so it is not used).
    return nn.LayerNorm(list(shape), elementwise_affine=True)


@NORMS.register("none")
def _no_norm(shape: Shape) -> nn.Module:
    return nn.Identity()  # DC leaves the layer out; an identity keeps every block the same shape


# ---- activations: never in place (DC uses ReLU(inplace=True)), because the maps are returned and matched and
# torch.func transforms refuse in-place updates of their inputs ----

ACTIVATIONS.register("relu")(nn.ReLU)  # DC default
ACTIVATIONS.register("sigmoid")(nn.Sigmoid)  # DC ablation ConvNetAS
ACTIVATIONS.register("swish")(nn.SiLU)  # DM's Swish is x * sigmoid(x), which is SiLU (ablation ConvNetASwish)
ACTIVATIONS.register("gelu")(nn.GELU)  # ours: not in DC/DM, offered for modern ablations


@ACTIVATIONS.register("leakyrelu")
def _leaky_relu() -> nn.Module:
    return nn.LeakyReLU(negative_slope=0.01)  # DC ablation ConvNetAL: slope 0.01


# ---- pooling between blocks: DC's `net_pooling`, always kernel 2, stride 2 ----


@POOLINGS.register("avg")
def _avg_pool() -> nn.Module:
    return nn.AvgPool2d(kernel_size=2, stride=2)  # DC/DM default ("avgpooling")


@POOLINGS.register("max")
def _max_pool() -> nn.Module:
    return nn.MaxPool2d(kernel_size=2, stride=2)  # DC ablation ConvNetMP


@POOLINGS.register("none")
def _no_pool() -> nn.Module:
    return nn.Identity()  # DC ablation ConvNetNP


def make_norm(name: str, shape: Shape) -> nn.Module:
    """A norm layer by name (instance, batch, group, layer, none) for maps of `shape` = (C, H, W)."""
    return NORMS.get(name)(tuple(shape))


def make_activation(name: str) -> nn.Module:
    """An activation layer by name (relu, leakyrelu, sigmoid, swish, gelu); never in place."""
    return ACTIVATIONS.get(name)()


def make_pooling(name: str) -> nn.Module:
    """A 2x2 pooling layer by name (avg, max) or `none` (identity)."""
    return POOLINGS.get(name)()


def output_shape(module: nn.Module, in_shape: Sequence[int]) -> Shape:
    """The per-sample output shape of `module` for inputs of per-sample shape `in_shape`.

    Runs on the meta device with meta copies of the parameters and buffers: no arithmetic, no side effects (BN
    running statistics stay untouched). An input too small for the layers is a user mistake: ConfigError.
    """
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    meta_state = {name: torch.empty_like(t, device="meta") for name, t in tensors.items()}
    x = torch.empty((2, *in_shape), device="meta")  # 2 samples: BN in training mode refuses one value per channel
    try:
        out = functional_call(module, meta_state, (x,))
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"input of shape {tuple(in_shape)} is too small for this model ({err})") from None
    if any(d <= 0 for d in out.shape):
        raise ConfigError(f"input of shape {tuple(in_shape)} is too small for this model (output {tuple(out.shape)})")
    return tuple(out.shape[1:])
