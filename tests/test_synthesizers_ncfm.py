"""NCFM specifics: the CF discrepancy, the learned sampler's ascent, multi-formation, pixel space.
Registry-wide behaviour (determinism, resume, flip) is in test_synthesizers.py."""
import math
from dataclasses import asdict

import pytest
import torch

from dsdistill.bench.suite import recipe, recipe_key
from dsdistill.errors import ConfigError
from dsdistill.evaluate import evaluate
from dsdistill.evaluate.protocols import Protocol
from dsdistill.synset.decode import decode, decoder_factor, multiformation_decode, multiformation_encode
from dsdistill.synthesizers import Budget, create_synthesizer
from dsdistill.synthesizers.losses import cf_discrepancy
from dsdistill.synthesizers.ncfm import NCFM

FAST = {"width": 8, "batch_real": 6, "num_freqs": 32, "extractor": "random"}


def ncfm(**kw) -> NCFM:
    return create_synthesizer("ncfm", **{**FAST, **kw})


def _complex_reference(real, syn, freqs, alpha, scale):
    """|Phi_r - Phi_s| from complex exponentials: with alpha = 1/2 the loss is sqrt(1/2) of its mean."""
    real = torch.nn.functional.normalize(real, dim=-1).double()
    syn = torch.nn.functional.normalize(syn, dim=-1).double()
    phi_r = torch.exp(1j * (real @ freqs.double().transpose(-1, -2))).mean(-2)
    phi_s = torch.exp(1j * (syn @ freqs.double().transpose(-1, -2))).mean(-2)
    return scale * (math.sqrt(alpha) * (phi_r - phi_s).abs()).mean(-1).sum()


def test_cf_discrepancy_is_the_modulus_of_the_cf_difference():
    g = torch.Generator().manual_seed(0)
    real, syn = torch.randn(3, 20, 16, generator=g), torch.randn(3, 4, 16, generator=g)
    freqs = torch.randn(3, 50, 16, generator=g)
    ours = cf_discrepancy(real, syn, freqs, alpha=0.5, scale=300.0)
    assert torch.allclose(ours.double(), _complex_reference(real, syn, freqs, 0.5, 300.0), rtol=1e-4)
    # features are L2-normalised: their scale does not matter
    assert torch.allclose(cf_discrepancy(3 * real, syn / 7, freqs), ours, rtol=1e-5)
    # the same distribution gives (almost) nothing: float32 rounding in the phase term and the clamp remain
    assert cf_discrepancy(real, real, freqs).item() < 1e-3 * ours.item()


def test_amplitude_and_phase_weights():
    g = torch.Generator().manual_seed(1)
    real, syn, freqs = torch.randn(1, 30, 8, generator=g), torch.randn(1, 5, 8, generator=g), torch.randn(1, 40, 8, generator=g)
    amplitude_only = cf_discrepancy(real, syn, freqs, alpha=1.0)
    phase_only = cf_discrepancy(real, syn, freqs, alpha=0.0)
    assert amplitude_only > 0 and phase_only > 0 and not torch.allclose(amplitude_only, phase_only)
    # a rotation of the phase alone (negating the projections conjugates the CF) leaves the amplitude unchanged
    assert cf_discrepancy(real, real, freqs, alpha=1.0) < 1e-3
    assert cf_discrepancy(real, -real, freqs, alpha=1.0) < 1e-2 < cf_discrepancy(real, -real, freqs, alpha=0.0)


def test_one_synthetic_sample_gets_no_amplitude_gradient():
    """|Phi_s(t)| = 1 for a single sample, so at IPC 1 without multi-formation only the phase term
    moves the image (towards the class centre, as DM's mean matching): the IPC-1 finding in README."""
    g = torch.Generator().manual_seed(0)
    real, freqs = torch.randn(1, 50, 16, generator=g), torch.randn(1, 64, 16, generator=g)
    norms = []
    for m in (1, 4):
        syn = torch.randn(1, m, 16, generator=g, requires_grad=True)
        (grad,) = torch.autograd.grad(cf_discrepancy(real, syn, freqs, alpha=1.0), syn)
        norms.append(grad.norm().item())
    assert norms[0] < 1e-4 < 1.0 < norms[1]


def _sampler_case(tiny_real, **options):
    """A learned-sampler NCFM with its state, psi, random real/synthetic embeddings and psi's input noise."""
    synth = ncfm(sampler="learned", num_freqs=64, **options)
    state = synth.start(tiny_real, 1, 0)
    sampler = state.extra["sampler"]
    dim = sampler.net[0].in_features
    g = torch.Generator().manual_seed(0)
    real_emb, syn_emb = torch.randn(20, dim, generator=g), torch.randn(3, dim, generator=g)
    return synth, state, sampler, real_emb, syn_emb, synth._noise(state, 0, dim, seed=0, it=0)


def test_learned_sampler_ascent_moves_psi_and_raises_the_discrepancy(tiny_real):
    """The official ascent step cancels to a zero gradient; ours must move psi upward."""
    synth, state, sampler, real_emb, syn_emb, noise = _sampler_case(tiny_real, sampler_lr=0.05)

    def discrepancy() -> float:
        with torch.no_grad():
            return cf_discrepancy(real_emb[None], syn_emb[None], sampler(noise)[None]).item()

    before_params = [p.detach().clone() for p in sampler.parameters()]
    before = discrepancy()
    for _ in range(5):
        synth.ascend(state, real_emb, syn_emb, 0, seed=0, it=0)
    moved = max((p.detach() - b).abs().max().item() for p, b in zip(sampler.parameters(), before_params))
    assert moved > 1e-3
    assert discrepancy() > before


def _effective_rank(rows: torch.Tensor) -> float:
    """exp of the entropy of the normalised squared singular values: the number of directions the rows span."""
    p = torch.linalg.svdvals(rows) ** 2
    p = p / p.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()))


def test_learned_sampler_ascent_concentrates_the_frequencies(tiny_real):
    """Why the paper's sampler loses to Gaussian frequencies (README, NCFM findings): the max player's objective
    is linear in the frequency distribution, so its best response is a point mass; at the code's sampler lr
    (1e-3 on a loss scaled x300) twenty ascent steps collapse psi's rows onto a few directions."""
    synth, state, sampler, real_emb, syn_emb, noise = _sampler_case(tiny_real, sampler_tile=1, sampler_lr=1e-3)
    with torch.no_grad():
        before = _effective_rank(sampler(noise))
    for step in range(20):
        synth.ascend(state, real_emb, syn_emb, 0, seed=0, it=step)
    with torch.no_grad():
        after = _effective_rank(sampler(noise))
    assert before > 0.4 * min(64, real_emb.shape[-1])  # 35 of 64 rows here: spread out at the start
    assert after < 0.2 * before               # 3.5 after 20 steps (a slow psi, lr 3e-6, stays at 35.3)


def test_learned_sampler_run_reports_the_ascent_and_resumes(tiny_real, tmp_path):
    full = ncfm(sampler="learned", num_freqs=32, sampler_tile=8).fit(tiny_real, 1, seed=0, budget=Budget(iterations=4))
    assert "ascent" not in full.extra["loss_curve"]  # the curve holds the image loss
    ckpt = tmp_path / "run.ckpt"
    ncfm(sampler="learned", num_freqs=32, sampler_tile=8).fit(tiny_real, 1, seed=0, budget=Budget(iterations=2),
                                                               checkpoint=ckpt)
    resumed = ncfm(sampler="learned", num_freqs=32, sampler_tile=8).fit(
        tiny_real, 1, seed=0, budget=Budget(iterations=4), checkpoint=ckpt, resume=True)
    assert resumed.payload_sha256() == full.payload_sha256()   # sampler, its momentum and the plateau state resume


def test_multiformation_decode_and_encode_layouts():
    tiles = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 6, 6)   # eight constant images
    stored = multiformation_encode(tiles, 2)
    assert stored.shape == (2, 1, 6, 6)
    assert stored[0, 0, :3, :3].eq(0).all() and stored[0, 0, :3, 3:].eq(1).all() and stored[1, 0, 3:, 3:].eq(7).all()
    decoded = multiformation_decode(stored, 2)
    assert torch.equal(decoded, tiles)   # constant tiles survive the bilinear upsampling exactly
    images, labels = decode(stored, torch.tensor([3, 5]), "multiformation-2")
    assert labels.tolist() == [3, 3, 3, 3, 5, 5, 5, 5] and images.shape == (8, 1, 6, 6)
    odd = multiformation_decode(torch.randn(1, 3, 7, 7), 2)
    assert odd.shape == (4, 3, 7, 7)
    assert decoder_factor("none") == 1 and decoder_factor("multiformation-3") == 9
    with pytest.raises(ConfigError, match="unknown decoder"):
        decoder_factor("multiformation-1")


def test_ncfm_stores_normalised_images_with_the_decoder_and_mix_init(tiny_real):
    synset = ncfm().fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    assert synset.decoder == "multiformation-2" and synset.ipc == 2 and len(synset.images) == 8
    pixels = tiny_real.to_pixels(synset.images)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5     # clamped to [0, 1] pixels
    init = ncfm().start(tiny_real, 2, seed=0).images.detach()
    # each stored image is four random real images of its class, halved and tiled
    real_pixels = tiny_real.to_pixels(tiny_real.train.images).clamp(0, 1)
    small = torch.nn.functional.interpolate(real_pixels, size=(14, 14))
    tile = init[0, :, :14, :14]
    assert min((tile - s).abs().max().item() for s in small[:12]) < 1e-6
    plain = ncfm(factor=1, init="real").fit(tiny_real, 2, seed=0, budget=Budget(iterations=1))
    assert plain.decoder == "none"


def test_the_evaluator_applies_the_decoder_and_counts_stored_images(tiny_real):
    synset = ncfm().fit(tiny_real, 1, seed=0, budget=Budget(iterations=1))
    quick = Protocol(name="t", version=1, description="", epochs=2, lr=0.01, momentum=0.9, weight_decay=0.0,
                     batch_size=8, augmentation="none", architecture="convnet", model_options=(("width", 8),),
                     seeds=(0,))
    report = evaluate(synset, quick, data=tiny_real)
    assert report.stored_images == 4
    assert any("trained as 16 images" in n for n in report.notes)


@pytest.mark.parametrize("bad, message", [
    ({"sampler": "uniform"}, "sampler must be one of"),
    ({"extractor": "trained"}, "extractor must be one of"),
    ({"alpha": 2.0}, "alpha"),
    ({"sampler": "learned", "num_freqs": 4}, "sampler_tile"),
    ({"calibrate": True}, "calibrate needs the trained pool"),
    ({"optimizer": "lbfgs"}, "adamw or sgd"),
])
def test_bad_options_are_one_line_errors(tiny_real, bad, message):
    with pytest.raises(ConfigError, match=message):
        ncfm(**bad).fit(tiny_real, 1, budget=Budget(iterations=1))


def test_pool_extractor_without_a_pool_names_the_command(tiny_real):
    with pytest.raises(ConfigError, match="dsdistill pool --dataset fashion-mnist"):
        create_synthesizer("ncfm", width=8).fit(tiny_real, 1, budget=Budget(iterations=1))


def _class_loss(synth, state, real, net, c, seed=0, it=0):
    """Class c's CF loss at the current images, from the method's pieces (its inputs, extractor, frequencies)."""
    real_batch, syn_batch = synth.class_inputs(state, real, c, it, seed)
    with torch.no_grad():
        real_emb = net.features_and_embed(real_batch)[1]
    syn_emb = net.features_and_embed(syn_batch)[1]
    freqs = synth.frequencies(state, c, real_emb.shape[-1], seed, it)
    return cf_discrepancy(real_emb[None], syn_emb[None], freqs[None], synth.config.alpha, synth.config.scale)


def test_per_class_image_steps_are_sequential_adamw_steps_by_hand(tiny_real):
    """image_step=per-class (the code): one AdamW step per class on the whole image tensor, each class's loss taken
    at the images the previous class's step left; written out by hand. The summed step moves pixels differently."""
    lr, wd, b1, b2, eps = 1e-2, 5e-4, 0.9, 0.999, 1e-8
    synth = ncfm(image_step="per-class", lr_img=lr, class_batching="per-class")
    state = synth.start(tiny_real, 1, 0)
    x0 = state.images.detach().clone()
    net, _ = synth.extractor(state, tiny_real, 0, 0)
    x, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    for t, c in enumerate(tiny_real.class_ids, start=1):
        leaf = x.clone().requires_grad_(True)
        hand = synth.start(tiny_real, 1, 0)
        hand.images = leaf
        (g,) = torch.autograd.grad(_class_loss(synth, hand, tiny_real, net, c), leaf)
        x = x * (1 - lr * wd)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        x = x - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
    synth.step(state, tiny_real, 0, 0)
    assert torch.allclose(state.images.detach(), x.clamp(0, 1), atol=1e-6)
    summed = ncfm(image_step="per-iteration", lr_img=lr, class_batching="per-class")
    other = summed.start(tiny_real, 1, 0)
    summed.step(other, tiny_real, 0, 0)
    travel = lambda s: (s.images.detach() - x0).abs().sum().item()
    assert not torch.allclose(state.images, other.images, atol=1e-3)
    assert travel(state) > 1.2 * travel(other)   # K Adam steps against one (1.5x here, the [0, 1] clamp caps it)


def test_per_class_image_steps_in_calibration_step_once_per_class(tiny_real, monkeypatch):
    synth = ncfm(image_step="per-class")
    state = synth.start(tiny_real, 1, 0)
    state.context["pool"] = type("Pool", (), {"trained_state": lambda self, i: state.context["net"].state_dict()})()
    steps = []
    monkeypatch.setattr(state.optimizer, "step", lambda *a, **k: steps.append(1))
    synth.calibrate(state, tiny_real, 0, 0, 0)
    assert len(steps) == tiny_real.num_classes


def test_per_class_image_steps_refuse_a_joint_pass_and_sharding(tiny_real):
    with pytest.raises(ConfigError, match="image_step=per-class"):
        ncfm(image_step="per-class", class_batching="joint").fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="image_step must be one of"):
        ncfm(image_step="sometimes").fit(tiny_real, 1, budget=Budget(iterations=1))
    assert "image_step=per-iteration" in ncfm(image_step="per-class").shard_problem(tiny_real)
    assert ncfm(image_step="per-iteration").shard_problem(tiny_real) is None
    assert ncfm().config.image_step == "per-class"   # the code's loop is the default (issue 19)
    assert create_synthesizer("ncfm.official").config.image_step == "per-class"
    assert create_synthesizer("ncfm.official-steps").config.image_step == "per-class"


def test_learned_sampler_is_one_algorithm_under_joint_and_per_class_batching(tiny_real):
    """Class k draws its frequencies after psi's ascents for classes 0..k in both batchings (joint used to run
    every ascent first): with instance norm the two are the same function, so the images agree to rounding.
    (A joint pass takes the summed image step; per-class steps match one class at a time in every batching.)"""
    sets = [ncfm(sampler="learned", num_freqs=32, sampler_tile=8, sampler_lr=0.05, norm="instance",
                 image_step="per-iteration", class_batching=mode).fit(tiny_real, 1, seed=0, budget=Budget(iterations=3))
            for mode in ("joint", "per-class")]
    assert torch.allclose(sets[0].images, sets[1].images, atol=1e-5)


def test_later_options_at_their_old_value_keep_the_recipe_keys():
    plain = asdict(create_synthesizer("ncfm", image_step="per-iteration").config)
    assert "image_step" not in recipe("d", "ncfm", plain, 1, 0, None)["config"]
    stepped = asdict(create_synthesizer("ncfm").config)   # the default since 2026-12-04: a key of its own
    assert recipe_key(recipe("d", "ncfm", stepped, 1, 0, None)) != recipe_key(recipe("d", "ncfm", plain, 1, 0, None))
