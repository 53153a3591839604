"""MTT specifics: the learned step size in the set, gradient modes inside the loop, FYI halving, the window check,
AST's student options. Registry-wide behaviour (determinism, resume, flip) is in test_synthesizers.py."""
import math

import pytest
import torch

from conftest import make_tiny_real
from dsdistill.errors import CheckpointError, ConfigError
from dsdistill.evaluate import _train_spec, get_protocol
from dsdistill.synset import SyntheticSet
from dsdistill.synthesizers import Budget, create_synthesizer
from dsdistill.synthesizers.mtt import MTT, balance_scale, kmeans, nearest_distinct, perturb_weights


@pytest.fixture
def mtt(tiny_experts):
    def make(**kw) -> MTT:
        base = {"experts": tiny_experts, "syn_steps": 3, "max_start_epoch": 2, "lr_img": 10.0, "lr_lr": 1e-5}
        return create_synthesizer("mtt", **{**base, **kw})
    return make


def test_learned_lr_is_stored_and_the_mtt_protocol_trains_with_it(mtt, tmp_path):
    real = make_tiny_real()
    synset = mtt().fit(real, 2, seed=0, budget=Budget(iterations=3))
    assert synset.lr is not None and synset.lr > 0 and synset.lr != 0.01  # learned, moved from lr_teacher
    path = tmp_path / "mtt.h5"
    synset.save(path)
    loaded = SyntheticSet.load(path)
    assert loaded.lr == pytest.approx(synset.lr)
    assert _train_spec(get_protocol("mtt"), loaded).lr == pytest.approx(synset.lr)
    assert _train_spec(get_protocol("dc"), loaded).lr == 0.01  # dc stays available
    assert MTT.class_separable is False and MTT.needs_teacher is True


def test_gradient_modes_give_the_same_run(mtt):
    real = make_tiny_real()
    runs = {mode: mtt(gradient=mode, **extra).fit(real, 2, seed=0, budget=Budget(iterations=2))
            for mode, extra in [("unroll", {}), ("exact-constant-memory", {}),
                                ("exact-constant-memory", {"segment": 2}), ("first-order", {})]
            for mode in [mode]}
    unroll, exact = runs["unroll"], runs["exact-constant-memory"]
    assert torch.allclose(unroll.images, exact.images, atol=1e-5)
    assert unroll.lr == pytest.approx(exact.lr, rel=1e-5)
    assert not torch.allclose(unroll.images, runs["first-order"].images, atol=1e-6)


def _state(synth, real, ipc=2):
    return synth.start(real, ipc, 0)


def test_flip_halves_the_distinct_images_per_step(mtt):
    assert [len(c) for c in mtt()._chunks(8, 3, 0, 0)] == [8, 8, 8]
    assert [len(c) for c in mtt(flip=True)._chunks(8, 3, 0, 0)] == [4, 4, 4]
    assert [len(c) for c in mtt(batch_syn=6, flip=True)._chunks(8, 4, 0, 0)] == [3, 3, 2, 3]
    chunks = mtt(batch_syn=3)._chunks(8, 3, 0, 0)
    assert sorted(torch.cat(chunks).tolist()) == list(range(8))  # one permutation covers the set


def test_start_epoch_plus_m_beyond_the_stored_epochs_is_rejected(mtt):
    real = make_tiny_real()  # tiny experts store 4 epochs
    with pytest.raises(ConfigError, match="max_start_epoch in 1..3"):
        mtt(max_start_epoch=4, expert_epochs=2).fit(real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="dsdistill experts"):
        create_synthesizer("mtt").fit(real, 1, budget=Budget(iterations=1))
    with pytest.raises(CheckpointError, match="width=8, not 16"):
        mtt(width=16).fit(real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="gradient must be one of"):
        mtt(gradient="bptt").fit(real, 1, budget=Budget(iterations=1))


def test_balance_scale_is_asts_formula():
    assert balance_scale(0, 20) == pytest.approx(1 / math.log(18, 5))
    assert balance_scale(10, 20) == pytest.approx(math.log(8, 5))
    assert balance_scale(19, 20) == pytest.approx(math.log(17, 5))
    assert 1 / 1.81 < balance_scale(0, 20) < 1 / 1.79 and 1.75 < balance_scale(19, 20) < 1.77  # reference 3.2


def test_weight_perturbation_touches_only_conv_kernels(mtt):
    synth = mtt()
    flat = synth.start(make_tiny_real(), 1, 0).context["flat"]
    theta = torch.randn(flat.size, generator=torch.Generator().manual_seed(0))
    out = perturb_weights(theta, flat, 1.0, torch.Generator().manual_seed(1))
    for before, after, shape in zip(theta.split(flat.numels), out.split(flat.numels), flat.shapes):
        if len(shape) == 4:
            rel = (after - before).norm() / before.norm()
            assert 0 < rel < 3 / math.sqrt(before.numel()) * 3  # relative noise of about 1/sqrt(numel)
        else:
            assert torch.equal(before, after)


def test_intermediate_matching_reads_the_middle_iterate(mtt, monkeypatch):
    import dsdistill.synthesizers.mtt as module
    seen = {}
    original = module.trajectory_gradient

    def spy(mode, theta0, images, lr, steps, step_loss, outer, reads=(), segment=0, **kw):
        seen["reads"] = reads
        return original(mode, theta0, images, lr, steps, step_loss, outer, reads=reads, segment=segment, **kw)

    monkeypatch.setattr(module, "trajectory_gradient", spy)
    real = make_tiny_real()
    synth = mtt(syn_steps=4, expert_epochs=2, intermediate="agg")
    state = _state(synth, real)
    synth.step(state, real, 0, 0)
    assert sorted(seen["reads"]) == [2, 4]  # n_1 = (N // M) * 1 and the end
    plain = mtt(syn_steps=4, expert_epochs=2)
    a = synth.step(_state(synth, real), real, 0, 0)["loss"]
    b = plain.step(_state(plain, real), real, 0, 0)["loss"]
    assert a > b  # the extra (positive) term


def test_representative_init_picks_distinct_real_images_near_cluster_centres(mtt):
    real = make_tiny_real()
    images = mtt(init="representative").start(real, 3, 0).images.detach()
    assert images.shape == (12, 1, 28, 28)
    for c in range(4):
        pool = real.train.class_images(c).flatten(1)
        picked = images[3 * c:3 * c + 3].flatten(1)
        hits = [int(torch.nonzero((pool == p).all(1))[0]) for p in picked]
        assert len(set(hits)) == 3
    points = torch.cat([torch.randn(20, 2) + 10, torch.randn(20, 2) - 10])
    centres = kmeans(points, 2, torch.Generator().manual_seed(0))
    assert sorted(centres[:, 0].sign().tolist()) == [-1.0, 1.0]
    assert nearest_distinct(points, torch.stack([points[3], points[3]])).tolist()[0] == 3


def test_ast_preset_runs(mtt):
    synset = mtt(init="representative", balance_loss=True, intermediate="adaptive", weight_perturb=1.0,
                 gradient="exact-constant-memory").fit(make_tiny_real(), 1, budget=Budget(iterations=2))
    synset.validate()
    assert synset.lr > 0


def test_student_momentum_reaches_the_unroll_and_needs_it(mtt, monkeypatch):
    import dsdistill.synthesizers.mtt as module
    seen = {}
    original = module.trajectory_gradient

    def spy(*args, **kw):
        seen["momentum"] = kw.get("momentum")
        return original(*args, **kw)

    monkeypatch.setattr(module, "trajectory_gradient", spy)
    real = make_tiny_real()
    synth = mtt(student_momentum=0.9)
    a = synth.step(_state(synth, real), real, 0, 0)["loss"]
    assert seen["momentum"] == 0.9
    plain = mtt()
    assert a != plain.step(_state(plain, real), real, 0, 0)["loss"]
    for bad, message in (({"student_momentum": 0.9, "gradient": "first-order"}, "needs gradient=unroll"),
                         ({"student_momentum": 1.0}, r"in \[0, 1\)")):
        with pytest.raises(ConfigError, match=message):
            mtt(**bad).fit(real, 1, budget=Budget(iterations=1))
    assert create_synthesizer("mtt.ast").config.student_momentum == 0.9     # AST's code: --mom 0.9, always on
    assert create_synthesizer("mtt.ast-plain").config.student_momentum == 0.0


def test_fyi_dsa_sampler_reaches_the_student_augmentation(mtt):
    real = make_tiny_real()
    a = mtt().fit(real, 1, seed=0, budget=Budget(iterations=1))
    b = mtt(dsa_sampler="fyi").fit(real, 1, seed=0, budget=Budget(iterations=1))
    assert a.payload_sha256() != b.payload_sha256()
