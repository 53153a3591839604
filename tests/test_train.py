"""The one training loop (dsdistill.train.loop), its recipes (dsdistill.train.recipe) and the real-data trainer's
choices (dsdistill.train.real)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsdistill._seed import make_generator
from dsdistill.augment import DSA, DSAConfig
from dsdistill.augment.crops import random_crop_flip
from dsdistill.data import Split
from dsdistill.errors import ConfigError, UnknownNameError
from dsdistill.train.loop import Augmentation, Data, batch_order, train_epochs, train_model
from dsdistill.train.real import RealTrainConfig, make_augment, train_on_real
from dsdistill.train.recipe import MultiStep, Recipe, SmoothedCosine, smoothed_cosine


def blobs(n_per_class=16, classes=3, dim=4, seed=0):
    """Three well separated Gaussian blobs: a linear model learns them in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=g), labels


def new_model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def ce(model, batch):
    return F.cross_entropy(model(batch.x), batch.y)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run(model, recipe, epochs, data=None, **kwargs):
    data = data or Data(*blobs(), order="test-order")
    return list(train_model(model, data, recipe, 0, epochs, kwargs.pop("loss", ce), **kwargs))


def reference_sgd(model, images, labels, recipe, epochs, decay_epoch, factor, recreate):
    """The evaluator's loop before the renovation: SGD, lr x factor at `decay_epoch`, optimiser re-created there
    (momentum dropped) when `recreate`, otherwise its lr changed in place."""
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    for epoch in range(epochs):
        if epoch == decay_epoch:
            if recreate:
                opt = torch.optim.SGD(model.parameters(), lr=recipe.lr * factor, momentum=recipe.momentum,
                                      weight_decay=recipe.weight_decay)
            else:
                for group in opt.param_groups:
                    group["lr"] *= factor
        order = torch.randperm(len(images), generator=make_generator(0, "test-order", epoch))
        for idx in order.split(recipe.batch_size):
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


# ---------------------------------------------------------------- the loop learns
def test_a_tiny_model_learns():
    images, labels = blobs()
    model = new_model()
    before = (model(images).argmax(1) == labels).float().mean()
    ends = run(model, Recipe(lr=0.1, batch_size=8, momentum=0.9), 6, desc="test")
    after = (model(images).argmax(1) == labels).float().mean()
    assert [e.epoch for e in ends] == list(range(6)) and after == 1.0 and before < 1.0
    losses = [e.loss for e in ends]
    assert losses[-1] < losses[0] / 4  # the mean loss of each epoch is reported with a bar


def test_every_draw_comes_from_the_seed():
    rng = torch.get_rng_state()
    a, b = new_model(), new_model()
    torch.set_rng_state(rng)
    run(a, Recipe(lr=0.1, batch_size=8), 2)
    run(b, Recipe(lr=0.1, batch_size=8), 2)
    assert same(state(a), state(b)) and torch.equal(rng, torch.get_rng_state())


def test_without_a_bar_no_loss_is_tracked():
    assert all(e.loss is None for e in run(new_model(), Recipe(lr=0.1, batch_size=8), 2))


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("reset", [True, False])
def test_the_step_decay_happens_at_its_epoch_and_resets_the_momentum_if_asked(reset):
    images, labels = blobs()
    recipe = Recipe(lr=0.05, batch_size=8, momentum=0.9, weight_decay=5e-4,
                    schedule=MultiStep((2,), 0.1, reset=reset))
    lrs, model = [], new_model()
    for end in train_model(model, Data(images, labels, "test-order"), recipe, 0, 4, ce):
        lrs.append(end.optimizer.param_groups[0]["lr"])
    assert lrs == [0.05, 0.05, 0.05 * 0.1, 0.05 * 0.1]
    ref, other = new_model(), new_model()
    reference_sgd(ref, images, labels, recipe, 4, 2, 0.1, recreate=reset)
    reference_sgd(other, images, labels, recipe, 4, 2, 0.1, recreate=not reset)
    assert same(state(model), state(ref)) and not same(state(model), state(other))


def test_multistep_repeats_torch_multisteplr_with_repeated_milestones():
    """train/real.py's schedule was torch's MultiStepLR stepped after each epoch; [1, 1] decays by gamma ** 2."""
    images, labels = blobs()
    schedule = MultiStep((1, 1, 3), 0.2)
    model, ref = new_model(), new_model()
    got = [e.optimizer.param_groups[0]["lr"]
           for e in train_model(model, Data(images, labels, "test-order"),
                                Recipe(lr=0.01, batch_size=8, momentum=0.9, schedule=schedule), 0, 5, ce)]
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 1, 3], gamma=0.2)
    want = []
    for epoch in range(5):
        want.append(opt.param_groups[0]["lr"])
        order = torch.randperm(len(images), generator=make_generator(0, "test-order", epoch))
        for idx in order.split(8):
            loss = F.cross_entropy(ref(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    assert got == want and same(state(model), state(ref))  # the same floats, not just close ones
    assert [schedule.lr(0.01, e, 5) for e in range(5)] == want and not any(schedule.resets(e) for e in range(5))


def test_smoothed_cosine_is_set_per_epoch():
    s = SmoothedCosine(eta=2.0)
    assert [s.lr(1.0, e, 4) for e in range(4)] == [smoothed_cosine(1.0, e, 4, 2.0) for e in range(4)]
    assert s.lr(1.0, 0, 4) == 1.0 and s.lr(1.0, 4, 4) == pytest.approx(0.5) and not s.resets(0)


# ---------------------------------------------------------------- resume
@pytest.mark.parametrize("stop", [1, 2, 3])  # the recipe decays and resets at epoch 2
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resuming_mid_run_gives_the_uninterrupted_weights(stop, optimizer):
    schedule = MultiStep((2,), 0.1, reset=True) if optimizer == "sgd" else SmoothedCosine()
    recipe = Recipe(lr=0.05, batch_size=8, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0,
                    weight_decay=1e-3, schedule=schedule)
    data = Data(*blobs(), order="test-order")
    whole = new_model()
    run(whole, recipe, 4, data)
    first = new_model()
    for end in train_model(first, data, recipe, 0, 4, ce):
        if end.epoch + 1 == stop:
            saved = copy.deepcopy((first.state_dict(), end.optimizer.state_dict()))
            break
    resumed = new_model(seed=1)  # other weights: everything comes from the saved point
    resumed.load_state_dict(saved[0])
    ends = run(resumed, recipe, 4, data, first_epoch=stop, optimizer_state=saved[1])
    assert [e.epoch for e in ends] == list(range(stop, 4)) and same(state(resumed), state(whole))


# ---------------------------------------------------------------- AdamW, accumulation, augmentation
def test_adamw_decays_only_weight_matrices_and_matches_a_direct_loop():
    images, labels = blobs()
    recipe = Recipe(lr=0.01, batch_size=8, optimizer="adamw", weight_decay=0.1, decay_matrices_only=True,
                    schedule=SmoothedCosine(1.0))
    model, ref = new_model(), new_model()
    opt = run(model, recipe, 3)[-1].optimizer
    assert isinstance(opt, torch.optim.AdamW)
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 0.1), (1, 0.0)]
    direct = torch.optim.AdamW([{"params": [ref.weight], "weight_decay": 0.1},
                                {"params": [ref.bias], "weight_decay": 0.0}], lr=0.01)
    for epoch in range(3):
        for group in direct.param_groups:
            group["lr"] = smoothed_cosine(0.01, epoch, 3, 1.0)
        order = torch.randperm(len(images), generator=make_generator(0, "test-order", epoch))
        for idx in order.split(8):
            direct.zero_grad(set_to_none=True)
            F.cross_entropy(ref(images[idx]), labels[idx]).backward()
            direct.step()
    assert same(state(model), state(ref))


def test_cvdd_squeeze_is_adam_with_l2_and_cosine_annealing():
    """The real-data trainer's "adam" + "cosine" (CV-DD squeeze.py): torch.optim.Adam with weight_decay and
    CosineAnnealingLR(T_max=epochs) stepped per epoch, the same weights as that loop."""
    images, labels = blobs()
    config = RealTrainConfig(optimizer="adam", lr=0.01, weight_decay=1e-2, batch_size=8, schedule="cosine",
                             dsa=False, cutmix_prob=0.0)
    model, ref = nn.Sequential(nn.Flatten(), new_model()), new_model()
    train_on_real(model, Split.from_tensors(images.view(-1, 4, 1, 1), labels, 3), config, 0, 3)
    direct = torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=1e-2)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(direct, T_max=3)
    for epoch in range(3):
        order = torch.randperm(len(images), generator=make_generator(0, "pretrain-order", epoch))
        for idx in order.split(8):
            direct.zero_grad(set_to_none=True)
            F.cross_entropy(ref(images[idx]), labels[idx]).backward()
            direct.step()
        annealing.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(state(model[1]).values(), state(ref).values()))


def test_crop_flip_comes_before_dsa_and_never_flips_digits():
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    crop_only = make_augment(RealTrainConfig(crop_flip=2, dsa=False), digits=True)
    assert torch.equal(crop_only(x, torch.Generator().manual_seed(1)),
                       random_crop_flip(x, torch.Generator().manual_seed(1), 2, flip=False))
    both = make_augment(RealTrainConfig(crop_flip=2), digits=False)
    gen = torch.Generator().manual_seed(1)
    expected = DSA(DSAConfig(strategy="color_crop")).per_sample(random_crop_flip(x, gen, 2), gen)
    assert torch.equal(both(x, torch.Generator().manual_seed(1)), expected)
    assert make_augment(RealTrainConfig(dsa=False), digits=False) is None


def test_real_train_options_added_later_stay_out_of_a_folders_identity():
    before = RealTrainConfig().identity()
    assert not {"optimizer", "schedule", "crop_flip"} & set(before)
    assert RealTrainConfig(schedule="cosine", crop_flip=4).identity() == {**before, "schedule": "cosine", "crop_flip": 4}
    with pytest.raises(ConfigError, match="schedule must be one of"):
        RealTrainConfig(schedule="step")
    with pytest.raises(ConfigError, match="crop_flip"):
        RealTrainConfig(crop_flip=-1)


def test_accumulation_splits_each_batch_and_averages_the_micro_losses():
    images, labels = blobs()
    seen = []

    def loss(model, batch):
        seen.append((batch.epoch, batch.batch, batch.micro, len(batch.index)))
        return ce(model, batch)

    split, whole = new_model(), new_model()
    run(split, Recipe(lr=0.1, batch_size=8, accumulation=2), 1, loss=loss)
    run(whole, Recipe(lr=0.1, batch_size=8), 1)
    assert seen == [(0, b, k, 4) for b in range(6) for k in range(2)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(state(split).values(), state(whole).values()))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_augmentation_is_drawn_per_batch_and_the_raw_images_stay_available(accumulation):
    """Each loaded batch its own draw, each micro-batch its own with accumulation."""
    images, labels = blobs()
    seen = []

    def shift(x, generator):
        return x + torch.rand(1, generator=generator)

    def loss(model, batch):
        shifts = batch.x - batch.raw
        assert torch.allclose(shifts, shifts[0, 0].expand_as(shifts), atol=1e-5)
        seen.append(shifts[0, 0].item())
        return ce(model, batch)

    run(new_model(), Recipe(lr=0.1, batch_size=16, accumulation=accumulation), 2,
        augment=Augmentation(shift, "test-aug"), loss=loss)
    keys = [(e, b) for e in range(2) for b in range(3)]
    if accumulation > 1:
        keys = [key + (k,) for key in keys for k in range(accumulation)]
    want = [torch.rand(1, generator=make_generator(0, "test-aug", *key)).item() for key in keys]
    assert seen == pytest.approx(want, abs=1e-5)


def test_batch_order_draws_a_fresh_subset_each_epoch():
    a, b = batch_order(10, 4, 0, "p", 0), batch_order(10, 4, 0, "p", 1)
    assert [len(x) for x in a] == [4, 4, 2] and sorted(torch.cat(a).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(a), torch.cat(b))
    sub = batch_order(10, 4, 0, "p", 0, limit=6)
    assert torch.equal(torch.cat(sub), torch.cat(a)[:6])
    assert Data(*blobs(), order="test-order", per_epoch=20).size == 20
    assert Data(*blobs(), order="test-order", per_epoch=100).size == 48


def test_train_epochs_trains_any_parameters():
    """The loop itself knows no model: here one tensor, a micro-batch is a target, the loss a square distance."""
    w = torch.zeros(3, requires_grad=True)
    targets = [torch.tensor([1.0, 2.0, 3.0])] * 4
    for _ in train_epochs([w], Recipe(lr=0.25, batch_size=1), 20, lambda epoch: [[t] for t in targets],
                          lambda t: ((w - t) ** 2).sum()):
        pass
    assert torch.allclose(w, targets[0], atol=1e-5)


def test_bad_recipes_are_user_errors():
    with pytest.raises(ConfigError):
        Recipe(lr=0.0, batch_size=8)
    with pytest.raises(ConfigError):
        Recipe(lr=0.1, batch_size=8, accumulation=0)
    with pytest.raises(UnknownNameError, match="valid: adam, adamw, sgd"):
        Recipe(lr=0.1, batch_size=8, optimizer="lamb")
    assert math.isclose(MultiStep().lr(0.3, 100, 100), 0.3)
