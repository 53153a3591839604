"""DSA kernels and sampler: exact formulas, gradients, Siamese replay, determinism, config errors."""
from __future__ import annotations

import pytest
import torch

from dsdistill._seed import make_generator
from dsdistill.augment import DSA, DSA_STRATEGY, VALID_OPS, DSAConfig, DSAParams, dsa_strategy_for
from dsdistill.augment import functional as AF
from dsdistill.errors import ConfigError

SIZE = 8  # tiny images keep the suite fast; DSA's ranges scale with the size (crop shift 1, cutout side 4)


def _images(batch: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _only(group: str, **overrides) -> DSA:
    """A DSA whose strategy has one group, so every call applies that group."""
    return DSA(DSAConfig(strategy=group, **overrides))


GROUP_CASES = list(VALID_OPS) + ["always_flip"]


def _dsa_for_case(case: str) -> DSA:
    return DSA(DSAConfig(always_flip=True)) if case == "always_flip" else _only(case)


# --- kernels against direct formulas -----------------------------------------------------------

def test_color_kernels_match_dsa_formulas():
    x = _images(3)
    r = torch.tensor([0.1, 0.5, 0.9])
    m_pixel = x.mean(dim=1, keepdim=True)
    m_image = x.mean(dim=(1, 2, 3), keepdim=True)
    rv = r.view(-1, 1, 1, 1)
    torch.testing.assert_close(AF.brightness(x, r, 1.0), x + (rv - 0.5) * 1.0, rtol=0, atol=0)
    torch.testing.assert_close(AF.saturation(x, r, 2.0), (x - m_pixel) * (rv * 2.0) + m_pixel, rtol=0, atol=0)
    torch.testing.assert_close(AF.contrast(x, r, 0.5), (x - m_image) * (rv + 0.5) + m_image, rtol=0, atol=0)
    # a [1] parameter is shared by the whole batch
    torch.testing.assert_close(AF.brightness(x, torch.tensor([0.9])), x + 0.4)


def test_crop_moves_a_one_hot_pixel_by_dx_dy_and_zero_fills():
    x = torch.zeros(2, 1, SIZE, SIZE)
    x[:, 0, 3, 4] = 1.0
    out = AF.crop(x, dx=torch.tensor([2, -1]), dy=torch.tensor([-1, 3]))
    assert out[0, 0, 2, 6] == 1 and out[0].sum() == 1
    assert out[1, 0, 6, 3] == 1 and out[1].sum() == 1
    full = torch.ones(1, 1, SIZE, SIZE)
    shifted = AF.crop(full, torch.tensor([1]), torch.tensor([-2]))
    assert shifted[0, 0, :, 0].sum() == 0 and shifted[0, 0, -2:, :].sum() == 0
    assert shifted.sum() == (SIZE - 1) * (SIZE - 2)


@pytest.mark.parametrize("size", [7, 8])  # odd and even cutout sides
def test_cutout_matches_dsa_clamped_square(size):
    x = torch.randn(1, 2, size, size)
    side = AF.cutout_side(size)
    offsets = torch.arange(side)
    for cy in range(AF.cutout_centre_high(size)):
        for cx in range(AF.cutout_centre_high(size)):
            mask = torch.ones(size, size)
            rows = (offsets + cy - side // 2).clamp(0, size - 1)
            cols = (offsets + cx - side // 2).clamp(0, size - 1)
            mask[rows[:, None], cols[None, :]] = 0  # DSA's clamped-index formulation
            assert torch.equal(AF.cutout(x, torch.tensor([cy]), torch.tensor([cx])), x * mask)


def test_flip_equals_torch_flip_per_sample():
    x = _images(3)
    out = AF.flip(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], torch.flip(x[0], dims=[2]))
    assert torch.equal(out[1], x[1])
    assert torch.equal(out[2], torch.flip(x[2], dims=[2]))


def test_rotate_and_scale_identity_and_exact_cases():
    x = _images(2)
    torch.testing.assert_close(AF.rotate(x, torch.zeros(1)), x)
    torch.testing.assert_close(AF.scale(x, torch.ones(1), torch.ones(1)), x)
    # pixel centres land on pixel centres: +90 degrees is a quarter turn, sx = -1 a mirror
    torch.testing.assert_close(AF.rotate(x, torch.tensor([90.0])), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(AF.scale(x, torch.tensor([-1.0]), torch.ones(1)), torch.flip(x, dims=[3]))


def test_kernel_rejects_parameters_of_another_batch_size():
    with pytest.raises(ValueError, match="expected 1 or 2"):
        AF.brightness(_images(2), torch.rand(3))


# --- gradients -----------------------------------------------------------------------------------

KERNELS = {
    "brightness": lambda x: AF.brightness(x, torch.tensor([0.2, 0.7])),
    "saturation": lambda x: AF.saturation(x, torch.tensor([0.2, 0.7])),
    "contrast": lambda x: AF.contrast(x, torch.tensor([0.2, 0.7])),
    "crop": lambda x: AF.crop(x, torch.tensor([1, -1]), torch.tensor([0, 1])),
    "cutout": lambda x: AF.cutout(x, torch.tensor([1, 4]), torch.tensor([3, 0])),
    "flip": lambda x: AF.flip(x, torch.tensor([True, False])),
    "scale": lambda x: AF.scale(x, torch.tensor([1.15, 0.9]), torch.tensor([0.85, 1.1])),
    "rotate": lambda x: AF.rotate(x, torch.tensor([12.0, -7.0])),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_gradcheck_kernel(name):
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(KERNELS[name], (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("case", GROUP_CASES)
def test_every_group_passes_finite_nonzero_gradients_to_pixels(case):
    syn = _images(2).requires_grad_()
    (out,) = _dsa_for_case(case).siamese(syn, generator=make_generator(0, "grad", case))
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(syn.grad).all() and syn.grad.abs().sum() > 0


# --- Siamese replay, determinism, per-sample mode -------------------------------------------------

@pytest.mark.parametrize("case", GROUP_CASES)
def test_siamese_branches_get_the_identical_transform(case):
    dsa = _dsa_for_case(case)
    real, syn = _images(3, seed=1), _images(5, seed=2)
    out_real, out_syn = dsa.siamese(real, syn, generator=make_generator(0, "siamese", case))
    joint = dsa.apply(torch.cat([real, syn]), dsa.sample(make_generator(0, "siamese", case), 1, SIZE))
    assert torch.equal(torch.cat([out_real, out_syn]), joint)
    # identical images in batches of different sizes come out identical
    image = _images(1, seed=3)
    small, large = dsa.siamese(image.expand(2, -1, -1, -1), image.expand(4, -1, -1, -1), generator=make_generator(1))
    assert all(torch.equal(img, small[0]) for img in torch.cat([small, large]))


def test_same_seed_same_output_different_seeds_different_draws():
    dsa = DSA()
    x = _images(4)
    first = dsa.per_sample(x, make_generator(7, "eval"))
    assert torch.equal(first, dsa.per_sample(x, make_generator(7, "eval")))
    draws = [dsa.sample(make_generator(seed, "eval"), batch_size=4, image_size=SIZE) for seed in range(2)]
    assert draws[0].group != draws[1].group or any(
        not torch.equal(draws[0].values[k], draws[1].values[k]) for k in draws[0].values
    )


def test_sampling_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DSA().per_sample(_images(2), make_generator(0))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("group", VALID_OPS)
def test_per_sample_mode_draws_different_values_per_image(group):
    params = _only(group).sample(make_generator(0, "per-sample", group), batch_size=16, image_size=SIZE)
    assert params.group == group
    for value in params.values.values():
        assert value.shape == (16,) and not torch.all(value == value[0])


def test_each_call_picks_one_group_and_all_groups_occur():
    dsa = DSA()
    gen = make_generator(0, "groups")
    seen = {dsa.sample(gen, image_size=SIZE).group for _ in range(60)}
    assert seen == set(DSA_STRATEGY.split("_"))


def test_digits_strategy_has_no_flip():
    assert dsa_strategy_for(digits=False) == DSA_STRATEGY
    digits = dsa_strategy_for(digits=True)
    assert "flip" not in digits.split("_") and set(digits.split("_")) == set(VALID_OPS) - {"flip"}
    gen = make_generator(0, "digits")
    assert all(DSA(DSAConfig(strategy=digits)).sample(gen).group != "flip" for _ in range(40))


@pytest.mark.parametrize("strategy", ["none", "None", ""])
def test_none_strategy_is_identity(strategy):
    x = _images(2)
    dsa = _only(strategy)
    assert dsa.sample(make_generator(0)) == DSAParams("none", {})
    assert torch.equal(dsa.per_sample(x, make_generator(0)), x)


# --- configuration and FYI's always-flip sampler ---------------------------------------------------

def test_unknown_op_raises_config_error_listing_valid_ops():
    with pytest.raises(ConfigError, match="'blur'.*valid ops: color, crop, cutout, flip, scale, rotate"):
        DSA(DSAConfig(strategy="color_blur"))
    with pytest.raises(ConfigError, match="prob_flip"):
        DSA(DSAConfig(prob_flip=1.5))


def test_always_flip_applies_flip_then_exactly_one_other_group():
    dsa = DSA(DSAConfig(always_flip=True))
    x = _images(2)
    others = set()
    for seed in range(30):
        params = dsa.sample(make_generator(seed, "fyi"), image_size=SIZE)
        first, other = params.groups
        assert first == "flip" and other != "flip"
        others.add(other)
        flipped = AF.flip(x, params.values["flip"])
        expected = _only(other).apply(flipped, DSAParams(other, params.values))
        assert torch.equal(dsa.apply(x, params), expected)
    assert others == set(VALID_OPS) - {"flip"}
    with pytest.raises(ConfigError, match="always_flip"):
        DSA(DSAConfig(strategy=dsa_strategy_for(digits=True), always_flip=True))


# --- crops and jitter (augment/crops.py): sample from the generator, then apply ----------------------------------

def test_crop_and_jitter_draws_come_only_from_the_generator():
    from dsdistill.augment.crops import jitter, jitter_shifts, random_resized_crop, resized_crop, sample_crops
    x = _images(6)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    gen = torch.Generator().manual_seed(4)
    boxes, flips = sample_crops(6, SIZE, SIZE, gen)
    shifts = jitter_shifts(6, 2, gen)
    assert torch.equal(torch.get_rng_state(), global_state)
    replay = torch.Generator().manual_seed(4)
    out = random_resized_crop(x, replay)
    assert torch.equal(out, resized_crop(x, boxes, flips))          # sampling then applying is the whole op
    assert torch.equal(jitter(x, replay, 2), torch.stack([torch.roll(img, (dy, dx), (-2, -1))
                                                          for img, (dy, dx) in zip(x, shifts.tolist())]))
    assert torch.equal(replay.get_state(), gen.get_state())


def test_no_flip_crops_make_the_same_draws_without_flipping():
    from dsdistill.augment.crops import sample_crops
    a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    boxes, flips = sample_crops(32, SIZE, SIZE, a, flip=True)
    same_boxes, no_flips = sample_crops(32, SIZE, SIZE, b, flip=False)
    assert torch.equal(boxes, same_boxes) and flips.any() and not no_flips.any()
    assert torch.equal(a.get_state(), b.get_state())   # what follows in the stream is the same either way


def test_jitter_roll_gradient_is_a_copy_to_the_bit():
    """roll's backward copies gradients (keeping -0.0), which a batched gather's scatter-add would not."""
    from dsdistill.augment.crops import roll
    x = _images(3).requires_grad_(True)
    shifts = torch.tensor([[0, 1], [2, 3], [7, 0]])
    weight = -torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    weight[:, :, :2] = -0.0
    (roll(x, shifts) * weight).sum().backward()
    expected = torch.stack([torch.roll(w, (-dy, -dx), (-2, -1)) for w, (dy, dx) in zip(weight, shifts.tolist())])
    assert x.grad.numpy().tobytes() == expected.numpy().tobytes()


def test_random_crop_flip_is_torchvisions_padded_crop_per_image():
    """RandomCrop(size, padding=p) + RandomHorizontalFlip, as CV-DD's squeeze trains: each image the window of its
    zero-padded copy at its own offset, mirrored on its own coin; the same draws without the flip."""
    from dsdistill.augment.crops import random_crop_flip
    x, p = _images(16), 3
    out = random_crop_flip(x, torch.Generator().manual_seed(5), p)
    replay = torch.Generator().manual_seed(5)
    shifts = torch.randint(-p, p + 1, (16, 2), generator=replay)
    coins = torch.rand(16, generator=replay) < 0.5
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for img, padded_img, (dy, dx), coin in zip(out, padded, shifts.tolist(), coins):
        window = padded_img[:, p - dy:p - dy + SIZE, p - dx:p - dx + SIZE]
        assert torch.equal(img, window.flip(-1) if coin else window)
    assert coins.any() and not coins.all() and (shifts != 0).any()
    plain = random_crop_flip(x, torch.Generator().manual_seed(5), p, flip=False)
    assert torch.equal(plain, AF.crop(x, shifts[:, 1], shifts[:, 0]))
