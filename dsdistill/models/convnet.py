"""ConvNet: the network DC, DSA, DM, DataDAM and MTT distill with and evaluate on.

Source: DC/DM `networks.py` (github.com/VICO-UoE/DatasetCondensation), class ConvNet. Each block is
Conv3x3(pad 1) -> norm -> activation -> 2x2 pooling, then flatten and Linear(width*h*w -> K).
"""
from __future__ import annotations

from torch import nn

from .base import MODELS, FeatureNet, Stage, require_positive
from .layers import Shape, make_activation, make_norm, make_pooling, output_shape


def conv_stage(
    in_shape: Shape,
    out_channels: int,
    *,
    kernel_size: int = 3,
    padding: int = 1,
    norm: str = "none",
    activation: str = "relu",
    pooling: str = "none",
) -> tuple[Stage, Shape]:
    """Conv -> norm -> activation, then pooling (DC's block, shared with AlexNet and VGG); also returns the shape
    after pooling, which the next block needs."""
    conv = nn.Conv2d(in_shape[0], out_channels, kernel_size, padding=padding)
    conv_shape = output_shape(conv, in_shape)
    body = nn.Sequential(conv, make_norm(norm, conv_shape), make_activation(activation))
    stage = Stage(body, make_pooling(pooling))
    return stage, output_shape(stage.down, conv_shape)


def first_conv_padding(in_channels: int, *, default: int, one_channel: int) -> int:
    """DC pads the first conv more for 1-channel input so 28-px MNIST-like images grow to 32 px inside
    (DC tests `channel == 1`, not the image size; followed here)."""
    return one_channel if in_channels == 1 else default


class ConvNet(FeatureNet):
    """`depth` DC blocks of `width` channels, flatten, linear classifier.

    28 px 1-channel and 32 px inputs both give maps 32, 16, 8 and a 2048-d embedding at depth 3, width 128.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        depth: int,
        width: int,
        norm: str,
        activation: str,
        pooling: str,
    ) -> None:
        require_positive(depth=depth, width=width)
        shape: Shape = (in_channels, image_size, image_size)
        stages = []
        for index in range(depth):
            # DC: padding 3 on the first conv if channel == 1, else 1
            padding = first_conv_padding(in_channels, default=1, one_channel=3) if index == 0 else 1
            stage, shape = conv_stage(
                shape, width, padding=padding, norm=norm, activation=activation, pooling=pooling
            )
            stages.append(stage)
        super().__init__(stages, nn.Flatten(), num_classes, (in_channels, image_size, image_size))


@MODELS.register("convnet")
def convnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 3,  # DC/DM get_network('ConvNet'): net_depth 3
    width: int = 128,  # DC/DM: net_width 128
    norm: str = "instance",  # DC/DM: 'instancenorm'
    activation: str = "relu",  # DC/DM: 'relu'
    pooling: str = "avg",  # DC/DM: 'avgpooling'
) -> ConvNet:
    """The default ConvNet-3 (instance norm), the standard distillation and evaluation network."""
    return ConvNet(
        in_channels, num_classes, image_size,
        depth=depth, width=width, norm=norm, activation=activation, pooling=pooling,
    )


@MODELS.register("convnet-bn")
def convnet_bn(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 3,  # DC/DM get_network('ConvNetBN'): as ConvNet
    width: int = 128,
    norm: str = "batch",  # DC/DM ConvNetBN: 'batchnorm'
    activation: str = "relu",
    pooling: str = "avg",
) -> ConvNet:
    """ConvNet-3 with batch norm, part of DM's cross-architecture pool (mode B)."""
    return ConvNet(
        in_channels, num_classes, image_size,
        depth=depth, width=width, norm=norm, activation=activation, pooling=pooling,
    )
