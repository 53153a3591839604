"""ResNet-18 as DC/DM use it for cross-architecture evaluation (a CIFAR-style ResNet, He et al. 2016).

Source: DC/DM `networks.py` (github.com/VICO-UoE/DatasetCondensation), classes ResNet, BasicBlock, ResNet_AP,
BasicBlock_AP: a 3x3 stem with no max-pool, BasicBlocks [2, 2, 2, 2] of widths 64-512, avg_pool(4), Linear.
The `_AP` form swaps every stride-2 conv for a stride-1 conv followed by AvgPool(2) and drops the final pooling.
"""
from __future__ import annotations

from torch import Tensor, nn

from .base import MODELS, FeatureNet, Stage
from .layers import Shape, make_norm, output_shape

RESNET18_BLOCKS = (2, 2, 2, 2)  # DC: ResNet(BasicBlock, [2, 2, 2, 2])
RESNET_WIDTHS = (64, 128, 256, 512)  # DC: layer1-layer4 planes
RESNET_STRIDES = (1, 2, 2, 2)  # DC: layer1 keeps the stem's size, layers 2-4 halve it


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)  # DC: no bias


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut, ReLU after the sum. With `avgpool_downsample` (DC's BasicBlock_AP) a stride-2
    block convolves at stride 1 and average-pools instead, in both branches."""

    def __init__(self, in_shape: Shape, planes: int, stride: int, norm: str, avgpool_downsample: bool) -> None:
        super().__init__()
        conv_stride = 1 if avgpool_downsample else stride
        pools = avgpool_downsample and stride != 1
        self.conv1 = conv3x3(in_shape[0], planes, conv_stride)
        shape = output_shape(self.conv1, in_shape)
        self.norm1 = make_norm(norm, shape)
        self.act1 = nn.ReLU()
        self.down = nn.AvgPool2d(kernel_size=2, stride=2) if pools else nn.Identity()  # DC BasicBlock_AP
        shape = output_shape(self.down, shape)
        self.conv2 = conv3x3(planes, planes)
        self.norm2 = make_norm(norm, shape)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_shape[0] != planes:
            projection = [nn.Conv2d(in_shape[0], planes, kernel_size=1, stride=conv_stride, bias=False)]
            if pools:
                projection.append(nn.AvgPool2d(kernel_size=2, stride=2))  # DC BasicBlock_AP shortcut
            self.shortcut = nn.Sequential(*projection, make_norm(norm, shape))
        self.act2 = nn.ReLU()
        self.out_shape: Shape = shape

    def forward(self, x: Tensor) -> Tensor:
        out = self.down(self.act1(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))  # not `out += ...`: no in-place updates (torch.func, autograd)


class ResNet(FeatureNet):
    """Stem and four layers are the five blocks whose outputs `features` returns (timm's feature stages)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        blocks_per_layer: tuple[int, ...],
        norm: str,
        avgpool_downsample: bool,
    ) -> None:
        input_shape: Shape = (in_channels, image_size, image_size)
        stem_conv = conv3x3(in_channels, RESNET_WIDTHS[0])  # DC: 3x3 stem, stride 1, no max-pool
        shape = output_shape(stem_conv, input_shape)
        stages = [Stage(nn.Sequential(stem_conv, make_norm(norm, shape), nn.ReLU()))]
        for planes, stride, count in zip(RESNET_WIDTHS, RESNET_STRIDES, blocks_per_layer):
            layer = []
            for block_stride in [stride] + [1] * (count - 1):
                block = BasicBlock(shape, planes, block_stride, norm, avgpool_downsample)
                shape = block.out_shape
                layer.append(block)
            stages.append(Stage(nn.Sequential(*layer)))
        if avgpool_downsample:
            neck: nn.Module = nn.Flatten()  # DC ResNet_AP: avg_pool2d(kernel 1) is a no-op; 512*4*4 at 32 px
        else:
            neck = nn.Sequential(nn.AvgPool2d(kernel_size=4), nn.Flatten())  # DC: F.avg_pool2d(out, 4); 512 at 32 px
        super().__init__(stages, neck, num_classes, input_shape)


@MODELS.register("resnet18")
def resnet18(in_channels: int, num_classes: int, image_size: int, norm: str = "instance") -> ResNet:
    """DC's ResNet18 (instance norm: DC's default norm='instancenorm')."""
    return ResNet(
        in_channels, num_classes, image_size, blocks_per_layer=RESNET18_BLOCKS, norm=norm, avgpool_downsample=False
    )


@MODELS.register("resnet18-bn")
def resnet18_bn(in_channels: int, num_classes: int, image_size: int, norm: str = "batch") -> ResNet:
    """DC's ResNet18BN."""
    return ResNet(
        in_channels, num_classes, image_size, blocks_per_layer=RESNET18_BLOCKS, norm=norm, avgpool_downsample=False
    )


@MODELS.register("resnet18-bn-ap")
def resnet18_bn_ap(in_channels: int, num_classes: int, image_size: int, norm: str = "batch") -> ResNet:
    """DC's ResNet18BN_AP (stride-2 convs replaced by stride-1 conv + AvgPool(2))."""
    return ResNet(
        in_channels, num_classes, image_size, blocks_per_layer=RESNET18_BLOCKS, norm=norm, avgpool_downsample=True
    )
