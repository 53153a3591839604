"""CV-DD specifics: documented defaults, voter schedule, BN loss, per-index optimisation, medium init, relabel, errors,
the single-model baseline and the command line. (The registry-wide tests in test_synthesizers.py cover valid sets,
FYI flip, same seed same bytes and stop/resume.)"""
import dataclasses
import itertools
import json

import pytest
import torch
from torch import nn

from dsdistill.cli import main
from dsdistill.teachers.committee import load_committee
from dsdistill.errors import CheckpointError, ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.synthesizers import Budget, create_synthesizer, resolve_method
from dsdistill.synthesizers.cvdd import (CVDD, bn_loss_from_moments, index_bounds, voter_logits_and_bn,
                                         voter_pass, voter_schedule)
from dsdistill.synthesizers.losses import bn_statistics_loss
from dsdistill.teachers.ensemble import prior_weights

from conftest import tiny_committee_dir, tiny_paper_committee_dir, tiny_paper_real

TINY_KD = dataclasses.replace(get_protocol("kd"), name="tiny-kd", epochs=2, seeds=(0,), model_options=(("width", 8),))


def cvdd(**kw):
    return create_synthesizer("cvdd", committee=tiny_committee_dir(), **kw)


def test_defaults_are_the_official_recover_and_relabel():
    c = create_synthesizer("cvdd").config
    assert (c.lr, tuple(c.betas), c.r_bn, c.first_bn_multiplier, c.weight_temperature) == (0.25, (0.5, 0.9), 0.01, 10.0, 5.0)
    assert (c.voters, c.schedule, c.iterations_per_ipc, c.relabel_temperature, c.jitter) == (2, "auto", 4000, 10.0, 4)
    assert (tuple(c.rrc_scale), c.init, c.candidates, c.relabel, c.relabel_teachers) == \
        ((0.08, 1.0), "medium", 300, "online", "committee")
    assert CVDD.needs_teacher and CVDD.class_separable and CVDD.supports_view and CVDD.soft_labels
    single = create_synthesizer("cvdd.single").config
    assert (single.voters, single.schedule, single.relabel_teachers) == (1, "top", "voters")
    assert resolve_method("cvdd.fmnist-cpu")[1] == {"iterations_per_ipc": 500}


def test_paper_presets_vote_with_the_paper_committee(tiny_real):
    """cvdd.paper names CV-DD's five (refusing another committee) in its order, so IPC 10 walks its pairs;
    cvdd.single-paper is SRe2L++ with ResNet-18 alone (reference A3)."""
    paper = create_synthesizer("cvdd.paper").config
    assert paper.members == ("tv-resnet18", "tv-resnet50", "tv-shufflenetv2-0.5", "tv-mobilenetv2", "tv-densenet121")
    assert paper.iterations_per_ipc == 4000
    single = create_synthesizer("cvdd.single-paper").config
    assert (single.members, single.voters, single.relabel_teachers, single.iterations_per_ipc) == \
        (("tv-resnet18",), 1, "voters", 4000)
    with pytest.raises(ConfigError, match="has no member 'tv-resnet18'"):
        create_synthesizer("cvdd.paper", committee=tiny_committee_dir()).fit(tiny_real, 1, budget=Budget(iterations=1))


def test_cvdd_runs_on_the_paper_committee():
    """Two IPC indices, one iteration each, voted by CV-DD's first two pairs and labelled by all five."""
    real = tiny_paper_real()
    synset = create_synthesizer("cvdd.paper", committee=tiny_paper_committee_dir(), init="real",
                                relabel="stored").fit(real, 2, seed=0, budget=Budget(iterations=2))
    assert synset.extra["voters"] == [["tv-resnet18", "tv-resnet50"], ["tv-resnet18", "tv-shufflenetv2-0.5"]]
    assert len(synset.extra["teacher"]["members"]) == 5 and synset.soft_labels.shape == (8, 4)
    assert torch.isfinite(synset.images).all() and torch.isfinite(synset.soft_labels).all()


def test_voter_schedule_follows_the_reference():
    priors = [63.0, 65.3, 68.5, 67.6, 67.4]  # CV-DD's CIFAR-10 priors
    assert voter_schedule(priors, 1, 2, "auto", 0) == [[2, 3]]          # IPC 1: the top-2 by prior
    ten = voter_schedule(priors, 10, 2, "auto", 0)                       # IPC 10: every pair once, in order
    assert ten == [list(p) for p in itertools.combinations(range(5), 2)]
    fifty = voter_schedule(priors, 50, 2, "auto", 0)                     # IPC 50: a seeded random pair per index
    assert fifty == voter_schedule(priors, 50, 2, "auto", 0) != voter_schedule(priors, 50, 2, "auto", 1)
    assert all(len(set(p)) == 2 for p in fifty) and len({tuple(p) for p in fifty}) > 3
    assert voter_schedule([1.0, 2.0, 3.0], 4, 2, "cycle", 0) == [[0, 1], [0, 2], [1, 2], [0, 1]]  # wraps
    assert voter_schedule(priors, 3, 1, "top", 0) == [[2]] * 3
    with pytest.raises(ConfigError, match="voters"):
        voter_schedule(priors, 1, 6, "auto", 0)
    with pytest.raises(ConfigError, match="schedule"):
        voter_schedule(priors, 1, 2, "best", 0)


def test_prior_weights_match_the_reference_example():
    w = prior_weights([64.0, 60.6], 5.0)  # CIFAR-100 (R18, R50) -> (0.664, 0.336) in reference A2
    assert w.tolist() == pytest.approx([0.664, 0.336], abs=1e-3)


def test_bn_loss_formula_and_hook():
    g = torch.Generator().manual_seed(0)
    mus = [torch.randn(3, generator=g), torch.randn(4, generator=g)]
    vs = [torch.rand(3, generator=g), torch.rand(4, generator=g)]
    rm = [torch.randn(3, generator=g), torch.randn(4, generator=g)]
    rv = [torch.rand(3, generator=g), torch.rand(4, generator=g)]
    direct = 10 * ((mus[0] - rm[0]).norm() + (vs[0] - rv[0]).norm()) + (mus[1] - rm[1]).norm() + (vs[1] - rv[1]).norm()
    assert torch.allclose(bn_statistics_loss(mus, vs, rm, rv, 10.0), direct)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(6, 1, 8, 8, generator=g)
    model(x)
    model.eval()
    with torch.no_grad():
        h = model[0](x)
        model[1].running_mean.copy_(h.mean((0, 2, 3)))
        model[1].running_var.copy_(h.var((0, 2, 3), unbiased=False))
    _, bn = voter_logits_and_bn(model, x, 10.0)
    assert bn.item() == pytest.approx(0.0, abs=1e-5)
    _, bn = voter_logits_and_bn(model, x + 1.0, 10.0)
    assert bn.item() > 0.1 and not model[1]._forward_hooks  # hooks are removed after each call


def test_class_moments_add_up_to_the_batch_statistics(tiny_real):
    """CV-DD's BN term is computed from per-class moments (so a torchrun rank can hold only its classes' images):
    the same loss as the batch's own mean and variance, and joint or per-class passes are the same function."""
    model = load_committee(tiny_committee_dir(), tiny_real).members[0].model
    x = tiny_real.train.images[::6][:8]  # 4 classes x 2 images, class-major
    inputs = []
    handles = [m.register_forward_hook(lambda mod, i, o: inputs.append((i[0], mod))) for m in model.modules()
               if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    direct = bn_statistics_loss([i.mean((0, 2, 3)) for i, _ in inputs], [i.var((0, 2, 3), unbiased=False) for i, _ in inputs],
                                [m.running_mean for _, m in inputs], [m.running_var for _, m in inputs], 10.0)
    blocks = voter_pass(model, x, groups=4)
    assert blocks.moments.shape[0] == 4 and blocks.moments.dtype == torch.float64
    assert bn_loss_from_moments(blocks.moments.sum(0), 4, blocks, 10.0).item() == pytest.approx(direct.item(), rel=1e-5)
    assert voter_logits_and_bn(model, x, 10.0)[1].item() == pytest.approx(direct.item(), rel=1e-5)
    joint = cvdd(init="real", flip=True).fit(tiny_real, 2, seed=1, budget=Budget(iterations=4))
    per_class = cvdd(init="real", flip=True, class_batching="per-class").fit(tiny_real, 2, seed=1,
                                                                            budget=Budget(iterations=4))
    assert torch.allclose(joint.images, per_class.images, atol=1e-4)
    assert not torch.equal(joint.images, cvdd(init="real", flip=True).start(tiny_real, 2, 1).images)


def test_each_ipc_index_is_optimised_in_its_own_iterations(tiny_real, monkeypatch):
    assert index_bounds(7, 2) == [0, 3, 7] and index_bounds(4000, 1) == [0, 4000]
    snapshots = []
    original = CVDD.step

    def step(self, state, real, it, seed):
        figures = original(self, state, real, it, seed)
        snapshots.append(state.images.detach().clone())
        return figures

    monkeypatch.setattr(CVDD, "step", step)
    synth = cvdd(init="real")
    synth.fit(tiny_real, 2, seed=0, budget=Budget(iterations=4))
    index0, index1 = torch.arange(4) * 2, torch.arange(4) * 2 + 1
    assert torch.equal(snapshots[0][index1], snapshots[1][index1])  # iterations 0-1 move only index 0
    assert not torch.equal(snapshots[0][index0], snapshots[1][index0])
    assert torch.equal(snapshots[2][index0], snapshots[3][index0])  # iterations 2-3 move only index 1
    assert not torch.equal(snapshots[2][index1], snapshots[3][index1])
    low = (0 - tiny_real.mean[0]) / tiny_real.std[0]
    high = (1 - tiny_real.mean[0]) / tiny_real.std[0]
    assert snapshots[-1].min() >= low - 1e-6 and snapshots[-1].max() <= high + 1e-6  # clamped to valid pixels


def test_medium_init_takes_the_images_around_the_median(tiny_real):
    synth = cvdd(candidates=12)
    state = synth.start(tiny_real, 2, 0)
    images = state.images.detach()
    teacher = synth.relabel_teacher(state, "eval")
    for c in range(4):
        probs = torch.softmax(teacher(tiny_real.train.class_images(c)), -1)[:, c].sort().values
        picked = torch.softmax(teacher(images[2 * c:2 * c + 2]), -1)[:, c].sort().values
        assert torch.allclose(picked, probs[5:7], atol=1e-6)  # 12 candidates: ranks 5 and 6 of 0..11


def test_the_voter_plan_is_run_state_in_the_checkpoint(tiny_real, tmp_path):
    """The priors, the voter schedule and the relabel members were kept on the method; they are State now, in the
    checkpoint, and a fresh object's plan is the same."""
    ckpt = tmp_path / "run.ckpt"
    cvdd(init="real").fit(tiny_real, 2, seed=0, budget=Budget(iterations=2), checkpoint=ckpt)
    saved = torch.load(ckpt, weights_only=True)["extra"]
    plan = cvdd(init="real").start(tiny_real, 2, 0).extra
    assert {k: saved[k] for k in ("priors", "schedule", "teacher_members")} == \
        {k: plan[k] for k in ("priors", "schedule", "teacher_members")}
    assert len(saved["schedule"]) == 2 and saved["teacher_members"] == [0, 1]


def test_stored_relabel_is_the_weighted_committee_and_names_its_teachers(tiny_real):
    synset = cvdd(init="real", relabel="stored").fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    committee = load_committee(tiny_committee_dir(), tiny_real)
    record = synset.extra["teacher"]
    assert record["mode"] == "stored" and [m["sha256"] for m in record["members"]] == \
        [m.sha256 for m in committee.members]
    weights = prior_weights([m.prior for m in committee.members], 10.0)
    assert record["weights"] == pytest.approx(weights.tolist())
    expected = sum(w * m.model(synset.images) for w, m in zip(weights, committee.members))
    assert torch.allclose(synset.soft_labels, expected, atol=1e-4)
    assert synset.label_bytes == 8 * 8 + 8 * 4 * 4 and synset.extra["soft_labels"]["kind"] == "logits"
    report = evaluate(synset, TINY_KD, data=tiny_real, device="cpu")
    assert report.label_source == "stored" and "soft labels (stored), 192 label bytes" in report.table()
    hard = dataclasses.replace(get_protocol("smoke"), model_options=(("width", 8),))
    assert any("hard labels only" in n for n in evaluate(synset, hard, data=tiny_real, device="cpu").notes)


def test_online_relabel_and_the_single_model_baseline(tiny_real):
    online = cvdd(init="real").fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    assert online.soft_labels is None and online.extra["teacher"]["mode"] == "online"
    report = evaluate(online, TINY_KD, data=tiny_real, device="cpu")
    assert report.label_source == "online" and report.teacher_bytes > 0 and report.label_bytes == 8 * 8
    single = create_synthesizer("cvdd.single", committee=tiny_committee_dir(), init="real")
    synset = single.fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    committee = load_committee(tiny_committee_dir(), tiny_real)
    best = max(committee.members, key=lambda m: m.prior).name
    assert synset.extra["voters"] == [[best], [best]]
    assert [m["name"] for m in synset.extra["teacher"]["members"]] == [best]
    chosen = create_synthesizer("cvdd.single", committee=tiny_committee_dir(), init="real",
                                members=(committee.names[1],)).fit(tiny_real, 1, budget=Budget(iterations=1))
    assert chosen.extra["voters"] == [[committee.names[1]]]


def test_bad_input_is_clear(tiny_real, tmp_path):
    with pytest.raises(ConfigError, match="dsdistill committee"):
        create_synthesizer("cvdd").fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(CheckpointError, match="no committee folder"):
        create_synthesizer("cvdd", committee=str(tmp_path / "none")).fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="has no member 'resnet18-bn'"):
        cvdd(members=("resnet18-bn",)).fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="priors: 1 values for 2 members"):
        cvdd(priors=(50.0,)).fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="relabel"):
        cvdd(relabel="files").fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="class_batching must be one of joint, per-class"):
        cvdd(class_batching="each").fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.warns(UserWarning, match="later IPC indices"):
        cvdd(init="real", iterations_per_ipc=1).fit(tiny_real, 1, budget=Budget(minutes=1))


def test_cli_committee_distill_info(fake_fmnist_root, tmp_path, capsys):
    committee = tmp_path / "committee"
    common = ["--data-root", fake_fmnist_root, "--device", "cpu"]
    assert main(["committee", "--members", "convnet-bn:width=8,convnet-bn:width=8:depth=2", "--holdout", "1",
                 "--out", str(committee), *common]) == 0
    out = tmp_path / "cvdd.h5"
    code = main(["distill", "--method", "cvdd.fmnist-cpu", "--ipc", "1", "--set", f"committee={committee}",
                 "--set", "init=real", "--set", "iterations_per_ipc=2", "--set", "relabel=stored", "--out", str(out),
                 *common])
    text = capsys.readouterr()
    assert code == 0 and "2 iterations" in text.out and "soft labels: stored in the file (400 bytes)" in text.out
    assert "method's own schedule" in text.err
    assert main(["info", str(out)]) == 0
    assert "soft labels" in capsys.readouterr().out
    report = tmp_path / "r.json"
    assert main(["evaluate", str(out), "--protocol", "smoke", "--json", str(report), *common]) == 0
    data = json.loads(report.read_text())
    assert data["labels"] == "hard" and any("hard labels only" in n for n in data["notes"])
