"""Model registry tests. The registry-wide tests loop over list_models(), so a new model is tested for free."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import torchvision.models as tv_models
from torch.func import functional_call, stack_module_state, vmap

from dsdistill.errors import ConfigError, UnknownNameError
from dsdistill.models import FeatureNet, create_model, has_batch_norm, list_models, model_options

NUM_CLASSES = 5
BATCH = 2  # BN in training mode needs more than one value per channel
SMALL_OPTIONS = {"width": 8}  # applied where a model has the option, for speed
INPUTS = [(1, 28), (3, 32), (3, 64)]


@functools.lru_cache(maxsize=None)
def built(name: str, in_channels: int, image_size: int) -> FeatureNet:
    """One small instance per (model, input), shared by the tests (they never train it)."""
    options = {key: value for key, value in SMALL_OPTIONS.items() if key in model_options(name)}
    return create_model(name, in_channels, NUM_CLASSES, image_size, **options)


def batch(in_channels: int, image_size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, in_channels, image_size, image_size, generator=gen)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers as a dict of copies, as functional callers hold them."""
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


# ---- registry-wide ----


@pytest.mark.parametrize("in_channels,image_size", INPUTS)
@pytest.mark.parametrize("name", list_models())
def test_forward_gives_logits_for_every_input_size(name: str, in_channels: int, image_size: int) -> None:
    logits = built(name, in_channels, image_size)(batch(in_channels, image_size))
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_features_and_embed_come_from_one_consistent_pass(name: str) -> None:
    model, x = built(name, 3, 32), batch(3, 32)
    maps, embedding = model.features_and_embed(x)
    assert len(maps) == model.num_blocks
    assert all(m.shape[0] == BATCH for m in maps)
    assert embedding.shape == (BATCH, model.embed_dim)
    assert isinstance(model.classifier, torch.nn.Linear)
    torch.testing.assert_close(model.classifier(embedding), model(x))
    torch.testing.assert_close(model.embed(x), embedding)
    for a, b in zip(model.features(x), maps):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list_models())
def test_gradients_reach_the_input(name: str) -> None:
    x = batch(1, 28).requires_grad_()
    built(name, 1, 28)(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_functional_call_matches_the_module(name: str) -> None:
    model, x = built(name, 1, 28), batch(1, 28)
    for train in (True, False):  # train: batch statistics; eval: running statistics from the state dict
        model.train(train)
        state = model_state(model)
        expected = model(x)
        torch.testing.assert_close(functional_call(model, state, (x,)), expected)
    model.train()


@pytest.mark.parametrize("name", list_models())
def test_no_activation_works_in_place(name: str) -> None:
    model = built(name, 1, 28)
    assert not any(getattr(m, "inplace", False) for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_has_batch_norm_exactly_for_the_bn_variants(name: str) -> None:
    # torchvision's architectures (tv-) are defined with BatchNorm in every block
    assert has_batch_norm(built(name, 1, 28)) == ("-bn" in name or name.startswith("tv-"))


# ---- ConvNet: the shapes DC/DM/DataDAM rely on ----


def test_convnet3_on_one_channel_28px_matches_dc() -> None:
    model = create_model("convnet", 1, 10, 28)
    maps, embedding = model.features_and_embed(torch.randn(1, 1, 28, 28))
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 32, 32), (128, 16, 16), (128, 8, 8)]
    assert all(m.min() >= 0 for m in maps)  # taken after ReLU ...
    assert embedding.shape == (1, 2048)  # ... and before pooling: 8 px maps, a 128*4*4 embedding


@pytest.mark.parametrize(
    "in_channels,image_size,depth,embed_dim", [(3, 32, 3, 2048), (3, 64, 3, 8192), (3, 64, 4, 2048)]
)
def test_convnet_embedding_sizes_match_dm(in_channels: int, image_size: int, depth: int, embed_dim: int) -> None:
    assert create_model("convnet", in_channels, 10, image_size, depth=depth).embed_dim == embed_dim


@pytest.mark.parametrize(
    "name,in_channels,image_size,classifier_inputs",
    [("alexnet", 1, 28, 192 * 4 * 4), ("vgg11", 3, 32, 512), ("resnet18", 1, 28, 512),
     ("resnet18-bn-ap", 1, 28, 512 * 3 * 3), ("resnet18-bn-ap", 3, 32, 512 * 4 * 4)],
)
def test_classifier_sizes_match_dc(name: str, in_channels: int, image_size: int, classifier_inputs: int) -> None:
    assert built(name, in_channels, image_size).classifier.in_features == classifier_inputs


def test_lenet_matches_dc_sizes() -> None:
    model = built("lenet", 1, 28)
    assert model.neck[1].in_features == 16 * 5 * 5 and model.embed_dim == 84


def test_vmap_over_stacked_convnets_matches_a_loop() -> None:
    copies = [create_model("convnet", 1, NUM_CLASSES, 28, width=8) for _ in range(3)]
    params, buffers = stack_module_state(copies)
    template = copy.deepcopy(copies[0]).to("meta")
    inputs = torch.stack([batch(1, 28, seed) for seed in range(len(copies))])

    def run(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (p, b), (x,))

    vectorised = vmap(run)(params, buffers, inputs)
    looped = torch.stack([model(x) for model, x in zip(copies, inputs)])
    torch.testing.assert_close(vectorised, looped, rtol=1e-4, atol=1e-5)


# ---- torchvision's networks with CV-DD's small-image stems (models/torchvision_nets.py) ----

# each block's map size at 32 px: CV-DD's CIFAR stems keep 32 px through the stem and the first stage(s); torchvision's
# ImageNet stem (stride-2 conv, max-pool) would start at 8 or 16
SMALL_STEM_MAPS = {
    "tv-resnet18": [32, 32, 16, 8, 4],          # stem, layer1 (no max-pool), layer2-4
    "tv-resnet50": [32, 32, 16, 8, 4],
    "tv-shufflenetv2-0.5": [32, 16, 8, 4, 4],   # stem at stride 1, stage2-4, conv5
    "tv-mobilenetv2": [32, 32, 32, 16, 8, 8, 4, 4, 4],  # conv1 and the 24-channel stage at stride 1
    "tv-densenet121": [32, 32, 16, 8, 4],       # bare 3x3 stem, dense blocks 1-4 (transitions halve)
}
IMAGENET_STEM_MAPS = {"tv-resnet18": [16, 8], "tv-shufflenetv2-0.5": [16, 4], "tv-mobilenetv2": [16, 16, 8],
                      "tv-densenet121": [16, 8]}  # the first maps with stem="imagenet" (torchvision's own)
TV_BLOCKS = {  # the torchvision class of the first block after the stem: the networks are torchvision's
    "tv-resnet18": tv_models.resnet.BasicBlock, "tv-resnet50": tv_models.resnet.Bottleneck,
    "tv-shufflenetv2-0.5": tv_models.shufflenetv2.InvertedResidual,
    "tv-mobilenetv2": tv_models.mobilenetv2.InvertedResidual, "tv-densenet121": tv_models.densenet._DenseLayer,
}


def test_the_tv_family_is_cvdds_committee() -> None:
    assert list_models("tv-*") == sorted(SMALL_STEM_MAPS)


@pytest.mark.parametrize("name", sorted(SMALL_STEM_MAPS))
def test_cvdd_small_stems_keep_32px_maps(name: str) -> None:
    model = built(name, 3, 32)
    assert [m.shape[-1] for m in model.features(batch(3, 32))] == SMALL_STEM_MAPS[name]
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert (stem.in_channels, stem.kernel_size, stem.stride) == (3, (3, 3), (1, 1))
    assert built(name, 1, 28).features(batch(1, 28))[0].shape[-2:] == (28, 28)  # Fashion-MNIST: 1 channel, 28 px


@pytest.mark.parametrize("name", sorted(IMAGENET_STEM_MAPS))
def test_imagenet_stem_is_torchvisions(name: str) -> None:
    model = create_model(name, 3, NUM_CLASSES, 32, stem="imagenet")
    sizes = [m.shape[-1] for m in model.features(batch(3, 32))]
    assert sizes[:len(IMAGENET_STEM_MAPS[name])] == IMAGENET_STEM_MAPS[name]
    with pytest.raises(ConfigError, match="stem must be one of small, imagenet"):
        create_model(name, 3, NUM_CLASSES, 32, stem="cifar")


@pytest.mark.parametrize("name", sorted(TV_BLOCKS))
def test_tv_nets_are_torchvisions_blocks_with_batch_norm_and_no_dropout(name: str) -> None:
    model = built(name, 1, 28)
    assert any(isinstance(m, TV_BLOCKS[name]) for stage in model.stages[1:] for m in stage.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # CV-DD's CIFAR nets: no dropout
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) >= 2 * model.num_blocks


# ---- create_model: names and options ----


def test_unknown_model_name_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="convnet.*resnet18"):
        create_model("convnet7", 1, 10, 28)


def test_unknown_option_lists_the_valid_options() -> None:
    with pytest.raises(ConfigError, match="depht.*valid: depth, width, norm, activation, pooling"):
        create_model("convnet", 1, 10, 28, depht=4)
    with pytest.raises(ConfigError, match=r"\(none\)"):
        create_model("lenet", 1, 10, 28, width=4)


def test_options_set_to_none_keep_the_defaults() -> None:
    model = create_model("convnet", 1, 10, 28, depth=None, width=None, norm=None, activation=None, pooling=None)
    assert model.embed_dim == 2048 and model.num_blocks == 3


def test_bad_option_values_are_user_errors() -> None:
    with pytest.raises(UnknownNameError, match="instance"):
        create_model("convnet", 1, 10, 28, width=8, norm="bogus")
    with pytest.raises(ConfigError, match="depth=0"):
        create_model("convnet", 1, 10, 28, depth=0)
    with pytest.raises(ConfigError, match="group"):
        create_model("convnet", 1, 10, 28, width=6, norm="group")
    with pytest.raises(ConfigError, match="too small"):
        create_model("convnet", 1, 10, 28, width=8, depth=6)
    with pytest.raises(ConfigError, match="num_classes=0"):
        create_model("mlp", 1, 0, 28)


def test_has_batch_norm_follows_the_layers_not_the_name() -> None:
    assert has_batch_norm(create_model("convnet", 1, 10, 28, width=8, norm="batch"))
    assert not has_batch_norm(create_model("convnet-bn", 1, 10, 28, width=8, norm="instance"))


def test_models_leave_seeding_to_the_caller() -> None:
    first, second = (create_model("convnet", 1, 10, 28, width=8) for _ in range(2))
    assert not torch.equal(first.classifier.weight, second.classifier.weight)
    torch.manual_seed(3)
    again = create_model("convnet", 1, 10, 28, width=8)
    torch.manual_seed(3)
    torch.testing.assert_close(create_model("convnet", 1, 10, 28, width=8).classifier.weight, again.classifier.weight)
