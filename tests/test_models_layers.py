"""Layers by name (norm, activation, pooling) and the meta-device shape dry run."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dsdistill.errors import ConfigError, UnknownNameError
from dsdistill.models.layers import (
    ACTIVATIONS,
    NORMS,
    POOLINGS,
    make_activation,
    make_norm,
    make_pooling,
    output_shape,
)

SHAPE = (8, 4, 4)


def maps(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def test_the_registered_names() -> None:
    assert NORMS.list() == ["batch", "group", "instance", "layer", "none"]
    assert ACTIVATIONS.list() == ["gelu", "leakyrelu", "relu", "sigmoid", "swish"]
    assert POOLINGS.list() == ["avg", "max", "none"]


@pytest.mark.parametrize("name", NORMS.list())
def test_every_norm_keeps_the_shape(name: str) -> None:
    x = maps()
    assert make_norm(name, SHAPE)(x).shape == x.shape


def test_instance_norm_normalises_each_sample_and_channel() -> None:
    out = make_norm("instance", SHAPE)(maps())
    torch.testing.assert_close(out.mean(dim=(2, 3)), torch.zeros(3, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=(2, 3), unbiased=False), torch.ones(3, 8), atol=1e-3, rtol=0)


def test_layer_norm_normalises_each_sample_over_c_h_w_with_an_elementwise_affine() -> None:
    norm = make_norm("layer", SHAPE)
    out = norm(maps())
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=(1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    assert norm.weight.shape == SHAPE


def test_group_norm_uses_four_groups_and_rejects_other_widths() -> None:
    assert make_norm("group", SHAPE).num_groups == 4
    with pytest.raises(ConfigError, match="6 channels"):
        make_norm("group", (6, 4, 4))


def test_batch_and_none_norms() -> None:
    assert isinstance(make_norm("batch", SHAPE), nn.BatchNorm2d)
    x = maps()
    assert torch.equal(make_norm("none", SHAPE)(x), x)


@pytest.mark.parametrize("name", ACTIVATIONS.list())
def test_activations_never_work_in_place(name: str) -> None:
    x = maps()
    before = x.clone()
    make_activation(name)(x)
    assert torch.equal(x, before)
    assert not getattr(make_activation(name), "inplace", False)


def test_activation_definitions() -> None:
    x = maps()
    torch.testing.assert_close(make_activation("swish")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(make_activation("leakyrelu")(x), torch.where(x > 0, x, 0.01 * x))
    torch.testing.assert_close(make_activation("relu")(x), x.clamp(min=0))


def test_pooling_halves_or_keeps_the_maps() -> None:
    x = maps()
    torch.testing.assert_close(make_pooling("avg")(x), x.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2)))
    torch.testing.assert_close(make_pooling("max")(x), x.unfold(2, 2, 2).unfold(3, 2, 2).amax(dim=(-1, -2)))
    assert torch.equal(make_pooling("none")(x), x)


@pytest.mark.parametrize("factory", [make_norm, make_activation, make_pooling])
def test_unknown_layer_names_list_the_valid_ones(factory) -> None:
    args = ("bogus", SHAPE) if factory is make_norm else ("bogus",)
    with pytest.raises(UnknownNameError, match="valid: "):
        factory(*args)


def test_output_shape_is_a_side_effect_free_dry_run() -> None:
    block = nn.Sequential(nn.Conv2d(1, 4, 3, padding=3), nn.BatchNorm2d(4), nn.AvgPool2d(2), nn.Flatten())
    before = {name: t.clone() for name, t in block.state_dict().items()}
    assert output_shape(block, (1, 28, 28)) == (4 * 16 * 16,)
    for name, t in block.state_dict().items():
        assert torch.equal(t, before[name]) and t.device.type == "cpu"


def test_output_shape_reports_too_small_inputs_as_user_errors() -> None:
    with pytest.raises(ConfigError, match="too small"):
        output_shape(nn.AvgPool2d(2), (4, 1, 1))
