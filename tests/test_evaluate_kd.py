"""The soft-label side of the evaluator: the kd protocol, its trainer, crops, label sources and reports."""
import dataclasses
import json
import math

import pytest
import torch

from dsdistill._seed import seeded_init
from dsdistill.augment.crops import crop_boxes, jitter, random_resized_crop, resized_crop
from dsdistill.errors import ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.evaluate.kd import StoredLabels, kd_step_loss
from dsdistill.train.recipe import smoothed_cosine
from dsdistill.models import create_model
from dsdistill.synthesizers import create_synthesizer

TINY_KD = dataclasses.replace(get_protocol("kd"), name="tiny-kd", epochs=4, seeds=(0, 1),
                              model_options=(("width", 8),))


def test_kd_protocol_is_the_cvdd_post_eval():
    kd = get_protocol("kd")
    assert (kd.label_mode, kd.optimizer, kd.lr, kd.weight_decay, kd.batch_size, kd.epochs) == \
        ("soft", "adamw", 1e-3, 0.01, 16, 300)
    assert (kd.extra("temperature"), kd.extra("accumulation"), kd.extra("eta"), kd.extra("teacher_bn"),
            kd.extra("prior_temperature"), tuple(kd.extra("rrc_scale"))) == (20.0, 2, 1.0, "train", 10.0, (0.08, 1.0))
    assert kd.seeds == (0, 1, 2, 3, 4) and get_protocol("kd-quick").hash != kd.hash
    assert dataclasses.replace(kd, extras=(("temperature", 4.0),)).hash != kd.hash


def test_smoothed_cosine_matches_the_edc_formula():
    assert smoothed_cosine(1.0, 0, 300, 1.0) == 1.0
    assert smoothed_cosine(1.0, 150, 300, 1.0) == pytest.approx(0.5)
    assert smoothed_cosine(1.0, 300, 300, 2.0) == pytest.approx(0.5)   # eta 2 ends at half of lr0
    assert smoothed_cosine(2.0, 100, 300, 2.0) == pytest.approx(1.0 + math.cos(math.pi / 6))


def test_kd_loss_is_batchmean_kl_without_t_squared():
    g = torch.Generator().manual_seed(0)
    student = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5, generator=g)
    target = torch.softmax(torch.randn(4, 3, generator=g), -1)
    t = 20.0
    log_q = torch.log_softmax(student(x) / t, -1)
    direct = (target * (target.log() - log_q)).sum(-1).mean()
    assert torch.allclose(kd_step_loss(student, x, target, t), direct, atol=1e-6)


def test_crops_are_per_sample_seeded_and_the_full_box_is_identity():
    x = torch.randn(6, 1, 28, 28)
    a = random_resized_crop(x, torch.Generator().manual_seed(0))
    b = random_resized_crop(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    boxes = crop_boxes(64, 28, 28, torch.Generator().manual_seed(1), scale=(0.08, 1.0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 28).all()
    assert len({tuple(r) for r in boxes.tolist()}) > 32  # one crop per image, not one per batch
    full = torch.tensor([[0.0, 0.0, 28.0, 28.0]]).repeat(6, 1)
    assert torch.allclose(resized_crop(x, full, torch.zeros(6, dtype=torch.bool)), x, atol=1e-5)
    assert torch.allclose(resized_crop(x, full, torch.ones(6, dtype=torch.bool)), x.flip(-1), atol=1e-5)
    no_flip = random_resized_crop(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(no_flip, x, atol=1e-5)
    rolled = jitter(x, torch.Generator().manual_seed(0), 3)
    assert rolled.shape == x.shape and not torch.equal(rolled, x)


def test_stored_labels_mix_targets_by_area():
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    src = StoredLabels(logits)
    t = src.targets(None, torch.tensor([0, 1]), torch.tensor([1, 0]), 0.75, 1.0)
    p = torch.softmax(logits, -1)
    assert torch.allclose(t[0], 0.75 * p[0] + 0.25 * p[1])


def test_kd_with_stored_soft_labels_learns_and_is_deterministic(tiny_real, trained_teacher):
    synset = create_synthesizer("random").fit(tiny_real, 3, seed=0)
    trained_teacher.eval()
    with torch.no_grad():
        synset.soft_labels = trained_teacher(synset.images).float()
    synset.extra["soft_labels"] = {"kind": "logits"}
    proto = dataclasses.replace(TINY_KD, epochs=60, extras=TINY_KD.extras + (("rrc_scale", (0.5, 1.0)),))
    a = evaluate(synset, proto, data=tiny_real, device="cpu")
    b = evaluate(synset, proto, data=tiny_real, device="cpu")
    assert a.results[0].accuracies == b.results[0].accuracies
    assert a.results[0].mean > 0.4  # 4 classes: chance 0.25
    assert (a.labels, a.label_source, a.label_bytes) == ("soft", "stored", 12 * 8 + 12 * 4 * 4)
    assert "soft labels (stored)" in a.table() and any("static" in n for n in a.notes)


def test_any_set_is_scored_under_kd_with_a_given_teacher(tiny_real, trained_teacher, tmp_path):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    with pytest.raises(ConfigError, match="--teacher"):
        evaluate(synset, TINY_KD, data=tiny_real, device="cpu")
    report = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher)
    assert (report.labels, report.label_source, report.label_bytes) == ("soft", "online", 8 * 8)
    assert "soft labels (online)" in report.table()
    report.save_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["labels"] == "soft" and data["label_source"] == "online" and data["protocol"] == "tiny-kd"
    with pytest.raises(ConfigError, match="soft-label protocols"):
        evaluate(synset, "dc", data=tiny_real, device="cpu", teacher=trained_teacher)
    with pytest.raises(ConfigError, match="loop"):
        evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher, path="vmap")


def test_online_teacher_changes_the_student(tiny_real, trained_teacher):
    """The targets really come from the teacher: a different teacher gives different students."""
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    other = seeded_init(create_model("convnet-bn", 1, 4, 28, width=8), 5, "other")
    a = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher).results[0].accuracies
    b = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=other).results[0].accuracies
    c = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher).results[0].accuracies
    assert a == c and a != b


def test_soft_set_under_a_hard_protocol_is_stated(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    synset.soft_labels = torch.zeros(len(synset.labels), tiny_real.num_classes)
    hard = dataclasses.replace(get_protocol("dc"), epochs=1, seeds=(0,), model_options=(("width", 8),))
    report = evaluate(synset, hard, data=tiny_real, device="cpu")
    assert report.labels == "hard" and any("hard labels only" in n for n in report.notes)
    assert "hard labels" in report.table() and report.label_bytes == 8 * 8 + 8 * 4 * 4


def test_interrupted_kd_evaluation_resumes_only_with_the_same_teacher(tiny_real, trained_teacher, tmp_path,
                                                                      monkeypatch):
    from dsdistill.evaluate import trainer
    from dsdistill.evaluate.finished import FinishedModels
    synset, log = create_synthesizer("random").fit(tiny_real, 2, seed=0), tmp_path / "kd.partial.json"
    fresh = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher).results[0].accuracies
    original_add, built = FinishedModels.add, []

    def add_then_stop(self, arch, seed, model):
        original_add(self, arch, seed, model)
        raise KeyboardInterrupt

    monkeypatch.setattr(FinishedModels, "add", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher, resume=log)
    monkeypatch.undo()
    original_make = trainer.make_models
    monkeypatch.setattr(trainer, "make_models", lambda f, seeds, d: built.extend(seeds) or original_make(f, seeds, d))
    other = seeded_init(create_model("convnet-bn", 1, 4, 28, width=8), 5, "other")
    evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=other, resume=log)  # another teacher: no resume
    assert built == [0, 1] and not log.exists()
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(FinishedModels, "add", add_then_stop)
        evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher, resume=log)
    monkeypatch.setattr(FinishedModels, "add", original_add)
    built.clear()
    resumed = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher, resume=log)
    assert built == [1] and resumed.results[0].accuracies == fresh


def test_a_kd_student_interrupted_mid_training_continues_from_its_epoch(tiny_real, trained_teacher, tmp_path,
                                                                       monkeypatch):
    from dsdistill.evaluate import finished
    from dsdistill.evaluate.finished import FinishedModels
    synset, log = create_synthesizer("random").fit(tiny_real, 2, seed=0), tmp_path / "kd.partial.json"
    fresh = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher).results[0].accuracies
    monkeypatch.setattr(finished, "SAVE_EVERY_SECONDS", 0.0)
    original = FinishedModels.save_point

    def save_then_stop(self, arch, seed, point):
        original(self, arch, seed, point)
        if seed == 0 and point().epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(FinishedModels, "save_point", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher, resume=log)
    monkeypatch.setattr(FinishedModels, "save_point", original)
    from dsdistill.train import recipe
    epochs, schedule = [], recipe.smoothed_cosine
    monkeypatch.setattr(recipe, "smoothed_cosine", lambda lr, epoch, *a: epochs.append(epoch) or schedule(lr, epoch, *a))
    resumed = evaluate(synset, TINY_KD, data=tiny_real, device="cpu", teacher=trained_teacher, resume=log)
    assert epochs == [2, 3, 0, 1, 2, 3]  # (once per epoch) seed 0 from its saved epoch, then seed 1
    assert resumed.results[0].accuracies == fresh  # AdamW's moments and step count came back with the weights
