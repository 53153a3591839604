"""The classic cross-architecture evaluation networks of DC/DM: MLP, LeNet, AlexNet(-BN), VGG11(-BN).

Source: DC/DM `networks.py` (github.com/VICO-UoE/DatasetCondensation). DC hard-codes classifier sizes for 28/32 px;
here every size comes from a dry run, so 64 px works too and 28/32 px give DC's sizes.
"""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from .base import MODELS, FeatureNet, Stage, require_positive
from .convnet import conv_stage, first_conv_padding
from .layers import Shape


class MLP(FeatureNet):
    """flatten -> width -> width -> K with ReLU (DC's MLP). Its blocks are the two hidden layers, so its
    `features` are [B, width] vectors rather than maps."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, *, width: int) -> None:
        require_positive(width=width)
        flat = in_channels * image_size * image_size  # DC: 28*28*1 or 32*32*3
        stages = [
            Stage(nn.Sequential(nn.Flatten(), nn.Linear(flat, width), nn.ReLU())),
            Stage(nn.Sequential(nn.Linear(width, width), nn.ReLU())),
        ]
        super().__init__(stages, nn.Identity(), num_classes, (in_channels, image_size, image_size))


class LeNet(FeatureNet):
    """conv 6 k5 -> maxpool -> conv 16 k5 -> maxpool -> fc 120 -> fc 84 -> K, ReLU (DC's LeNet). The two fc
    hidden layers form the neck, so the embedding is 84-d."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        shape: Shape = (in_channels, image_size, image_size)
        # DC: padding 2 if channel == 1 else 0, so 28-px 1-channel and 32-px 3-channel inputs both reach 16x5x5
        first, shape = conv_stage(
            shape, 6, kernel_size=5, padding=first_conv_padding(in_channels, default=0, one_channel=2), pooling="max"
        )
        second, shape = conv_stage(shape, 16, kernel_size=5, padding=0, pooling="max")
        flat = math.prod(shape)
        neck = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()  # DC: fc 120, fc 84
        )
        super().__init__([first, second], neck, num_classes, (in_channels, image_size, image_size))


ConvPlan = Sequence[tuple[int, int, int, bool]]
"""Per conv block: (out_channels, kernel_size, padding, followed by 2x2 max-pool)."""


class PlainConvNet(FeatureNet):
    """A plain stack of conv -> norm -> ReLU blocks with max-pools, then flatten and a linear classifier: the shape
    shared by DC's AlexNet and VGG. The first conv's padding is `first_padding` (DC widens it for 1-channel input)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        plan: ConvPlan,
        first_padding: int,
        norm: str,
    ) -> None:
        shape: Shape = (in_channels, image_size, image_size)
        stages = []
        for index, (channels, kernel, padding, pooled) in enumerate(plan):
            stage, shape = conv_stage(
                shape,
                channels,
                kernel_size=kernel,
                padding=first_padding if index == 0 else padding,
                norm=norm,
                pooling="max" if pooled else "none",
            )
            stages.append(stage)
        super().__init__(stages, nn.Flatten(), num_classes, (in_channels, image_size, image_size))


# DC's AlexNet: conv 128 k5 -> pool -> conv 192 k5 -> pool -> conv 256, 192, 192 k3 -> pool; fc(192*4*4 -> K) at 32 px
ALEXNET_PLAN: ConvPlan = [
    (128, 5, 2, True), (192, 5, 2, True), (256, 3, 1, False), (192, 3, 1, False), (192, 3, 1, True),
]

VggConfig = Sequence[int | str]
VGG11_CONFIG: VggConfig = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]  # DC's cfg_vgg['VGG11']


def vgg_plan(config: VggConfig) -> ConvPlan:
    """DC's VGG config (channels, with 'M' for a max-pool after the previous conv) as a plan of 3x3 convs."""
    plan: list[tuple[int, int, int, bool]] = []
    for item in config:
        if item == "M":
            channels, kernel, padding, _ = plan[-1]
            plan[-1] = (channels, kernel, padding, True)
        else:
            plan.append((int(item), 3, 1, False))
    return plan


class AlexNet(PlainConvNet):
    """DC's AlexNet; DC's AlexNetBN puts a BatchNorm2d after every conv, which norm='batch' gives."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, *, norm: str) -> None:
        padding = first_conv_padding(in_channels, default=2, one_channel=4)  # DC: padding 4 if channel == 1 else 2
        super().__init__(
            in_channels, num_classes, image_size, plan=ALEXNET_PLAN, first_padding=padding, norm=norm
        )


class VGG(PlainConvNet):
    """DC's VGG: 3x3 convs with norm and ReLU, max-pools where the config says 'M'. VGG11 ends at 1x1 for 28/32 px,
    so Linear(512 -> K) as in DC (512*2*2 at 64 px)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, *, config: VggConfig, norm: str) -> None:
        padding = first_conv_padding(in_channels, default=1, one_channel=3)  # DC: padding 3 on conv 0 if channel == 1
        super().__init__(
            in_channels, num_classes, image_size, plan=vgg_plan(config), first_padding=padding, norm=norm
        )


@MODELS.register("mlp")
def mlp(in_channels: int, num_classes: int, image_size: int, width: int = 128) -> MLP:  # DC: hidden width 128
    """DC's MLP."""
    return MLP(in_channels, num_classes, image_size, width=width)


@MODELS.register("lenet")
def lenet(in_channels: int, num_classes: int, image_size: int) -> LeNet:
    """DC's LeNet."""
    return LeNet(in_channels, num_classes, image_size)


@MODELS.register("alexnet")
def alexnet(in_channels: int, num_classes: int, image_size: int, norm: str = "none") -> AlexNet:
    """DC's AlexNet (no norm)."""
    return AlexNet(in_channels, num_classes, image_size, norm=norm)


@MODELS.register("alexnet-bn")
def alexnet_bn(in_channels: int, num_classes: int, image_size: int, norm: str = "batch") -> AlexNet:
    """DC's AlexNetBN."""
    return AlexNet(in_channels, num_classes, image_size, norm=norm)


@MODELS.register("vgg11")
def vgg11(in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> VGG:
    """DC's VGG11 (instance norm: DC's VGG default norm='instancenorm')."""
    return VGG(in_channels, num_classes, image_size, config=VGG11_CONFIG, norm=norm)


@MODELS.register("vgg11-bn")
def vgg11_bn(in_channels: int, num_classes: int, image_size: int, norm: str = "batch") -> VGG:
    """DC's VGG11BN."""
    return VGG(in_channels, num_classes, image_size, config=VGG11_CONFIG, norm=norm)
