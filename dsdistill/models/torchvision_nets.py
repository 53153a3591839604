"""CV-DD's committee architectures, built from torchvision.models with the small-image stems of CV-DD's CIFAR code.

CV-DD (reference/cvdd_fyi.md A1) votes with ResNet-18, ResNet-50, ShuffleNetV2 x0.5, MobileNetV2 and DenseNet-121.
For 32/64 px its official code (Jiacheng8/CV-DD models/, kuangliu pytorch-cifar variants) changes each stem so that
the first maps keep the input's size; for ImageNet-sized inputs it uses torchvision's models as they are. Here every
network is torchvision's own module (never a copy) with the stem changed in place, `stem="small"` (default):
- ResNet-18/50: the 7x7 stride-2 conv becomes 3x3 stride 1, the max-pool goes (CV-DD models/resnet.py);
- ShuffleNetV2 x0.5: conv1 at stride 1, the max-pool goes (CV-DD models/shufflenetv2.py comments it out);
- MobileNetV2: conv1 and the first stride-2 stage (24 channels) at stride 1 (CV-DD models/mobilenetv2.py);
- DenseNet-121 (growth 32, torchvision's default): a bare 3x3 stride-1 conv of 64 = 2 x growth channels, no
  norm, ReLU or max-pool after it (CV-DD models/densenet.py).
`stem="imagenet"` keeps torchvision's stem (CV-DD's ImageNette and ImageNet-1K committees). Either way the stem conv
takes `in_channels` (1 for Fashion-MNIST), the head is global average pooling (CV-DD: avg_pool over whatever size
remains) and FeatureNet's own nn.Linear, so torchvision's classifier and MobileNetV2's dropout are not used (CV-DD's
CIFAR nets have no dropout). Activations are set not in place (the package's rule: layers.py); BatchNorm stays in
every block, which CV-DD's BN-statistics loss hooks.

Deviations from CV-DD's CIFAR variants, all from taking torchvision's blocks (ours: one maintained definition):
MobileNetV2 uses ReLU6, has no 1x1 expansion in its t=1 block and no projection shortcut on stride-1 blocks that
change width (the kuangliu block has both, with ReLU); DenseNet concatenates new features after the old ones
(kuangliu: before; a channel permutation). Weights: the trainers re-initialise every layer with seeded_init
(reset_parameters, PyTorch's default init), which is also what the kuangliu models use.
"""
from __future__ import annotations

import itertools
from types import ModuleType

from torch import nn

from ..errors import ConfigError
from .base import MODELS, FeatureNet, Stage

STEMS = ("small", "imagenet")
SMALL_STEM = (3, 1, 1)  # CV-DD models/: conv 3x3, stride 1, padding 1


def _tv() -> ModuleType:
    """torchvision.models, imported when a model is built: importing it adds about 2 s to every command's start
    (as data/locate.py defers torchvision.datasets)."""
    import torchvision.models

    return torchvision.models


def _stem_conv(old: nn.Conv2d, in_channels: int, small: bool) -> nn.Conv2d:
    """torchvision's stem conv for `in_channels` inputs, or (small) 3x3 at stride 1 with the same width."""
    kernel, stride, padding = SMALL_STEM if small else (old.kernel_size, old.stride, old.padding)
    return nn.Conv2d(in_channels, old.out_channels, kernel, stride, padding, bias=old.bias is not None)


def _unstride(module: nn.Module) -> None:
    """Every strided conv in `module` at stride 1 (the map keeps its size)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.stride != (1, 1):
            m.stride = (1, 1)


def _not_in_place(module: nn.Module) -> nn.Module:
    """Activations that keep their input (the package's rule, layers.py: maps are returned and matched)."""
    for m in module.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    return module


class TorchvisionNet(FeatureNet):
    """A FeatureNet whose stages are a torchvision network's blocks, pooled globally into FeatureNet's classifier."""

    def __init__(self, stages: list[Stage], num_classes: int, in_channels: int, image_size: int) -> None:
        neck = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # CV-DD: avg_pool over the remaining map
        super().__init__([_not_in_place(s) for s in stages], neck, num_classes, (in_channels, image_size, image_size))


def _small(stem: str) -> bool:
    if stem not in STEMS:
        raise ConfigError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
    return stem == "small"


def _resnet(arch: str, in_channels: int, num_classes: int, image_size: int, stem: str) -> TorchvisionNet:
    small = _small(stem)
    net = getattr(_tv(), arch)(weights=None)
    conv = _stem_conv(net.conv1, in_channels, small)
    stages = [Stage(nn.Sequential(conv, net.bn1, net.relu), None if small else net.maxpool),
              *(Stage(layer) for layer in (net.layer1, net.layer2, net.layer3, net.layer4))]
    return TorchvisionNet(stages, num_classes, in_channels, image_size)


@MODELS.register("tv-resnet18")
def tv_resnet18(in_channels: int, num_classes: int, image_size: int, stem: str = "small") -> TorchvisionNet:
    """torchvision resnet18; stem "small": CV-DD's CIFAR ResNet18 (3x3 stride-1 stem, no max-pool)."""
    return _resnet("resnet18", in_channels, num_classes, image_size, stem)


@MODELS.register("tv-resnet50")
def tv_resnet50(in_channels: int, num_classes: int, image_size: int, stem: str = "small") -> TorchvisionNet:
    """torchvision resnet50; stem "small": CV-DD's CIFAR ResNet50 (3x3 stride-1 stem, no max-pool)."""
    return _resnet("resnet50", in_channels, num_classes, image_size, stem)


@MODELS.register("tv-shufflenetv2-0.5")
def tv_shufflenetv2_05(in_channels: int, num_classes: int, image_size: int, stem: str = "small") -> TorchvisionNet:
    """torchvision shufflenet_v2_x0_5 (CV-DD: net_size 0.5); stem "small": conv1 at stride 1, no max-pool."""
    small = _small(stem)
    net = _tv().shufflenet_v2_x0_5(weights=None)
    net.conv1[0] = _stem_conv(net.conv1[0], in_channels, small)
    stages = [Stage(net.conv1, None if small else net.maxpool),
              *(Stage(s) for s in (net.stage2, net.stage3, net.stage4, net.conv5))]
    return TorchvisionNet(stages, num_classes, in_channels, image_size)


@MODELS.register("tv-mobilenetv2")
def tv_mobilenetv2(in_channels: int, num_classes: int, image_size: int, stem: str = "small") -> TorchvisionNet:
    """torchvision mobilenet_v2 (width 1.0, CV-DD's); stem "small": conv1 and the 24-channel stage at stride 1.
    One stage per row of its inverted-residual table (blocks of one width), between the stem and the 1x1 head."""
    small = _small(stem)
    features = _tv().mobilenet_v2(weights=None).features
    features[0][0] = _stem_conv(features[0][0], in_channels, small)
    blocks = list(features[1:-1])
    if small:
        first = next(b for b in blocks if b.stride != 1)  # the 24-channel stage's first block
        _unstride(first)
        first.stride = 1
    groups = [nn.Sequential(*g) for _, g in itertools.groupby(blocks, key=lambda b: b.out_channels)]
    stages = [Stage(features[0]), *(Stage(g) for g in groups), Stage(features[-1])]
    return TorchvisionNet(stages, num_classes, in_channels, image_size)


@MODELS.register("tv-densenet121")
def tv_densenet121(in_channels: int, num_classes: int, image_size: int, stem: str = "small") -> TorchvisionNet:
    """torchvision densenet121 (growth 32, blocks 6-12-24-16, as CV-DD's); stem "small": a bare 3x3 stride-1 conv.
    Each dense block is a stage, its transition (BN, ReLU, 1x1 conv, 2x2 average pool) the stage's `down`."""
    small = _small(stem)
    f = _tv().densenet121(weights=None).features
    conv = _stem_conv(f.conv0, in_channels, small)
    stem_stage = Stage(conv) if small else Stage(nn.Sequential(conv, f.norm0, f.relu0), f.pool0)
    stages = [stem_stage, Stage(f.denseblock1, f.transition1), Stage(f.denseblock2, f.transition2),
              Stage(f.denseblock3, f.transition3), Stage(nn.Sequential(f.denseblock4, f.norm5, nn.ReLU()))]
    return TorchvisionNet(stages, num_classes, in_channels, image_size)
