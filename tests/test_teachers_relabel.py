"""Relabelling any set by a teacher: stored soft labels or online, the original untouched."""
import dataclasses

import pytest
import torch

from dsdistill.errors import ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.synthesizers import create_synthesizer
from dsdistill.teachers.committee import load_teacher
from dsdistill.teachers.relabel import relabel

TINY_KD = dataclasses.replace(get_protocol("kd"), name="tiny-kd", epochs=2, seeds=(0,), model_options=(("width", 8),))


def test_relabel_any_set_stored_or_online(committee_dir, tiny_real, tmp_path, capsys):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    teacher = load_teacher(committee_dir, tiny_real, bn_mode="eval")
    stored = relabel(synset, teacher, "stored", 10.0)
    assert stored.soft_labels.shape == (8, 4) and torch.allclose(stored.soft_labels, teacher(synset.images))
    assert stored.extra["teacher"]["mode"] == "stored" and stored.label_bytes == 8 * 8 + 8 * 4 * 4
    assert synset.soft_labels is None  # a copy: the original set is untouched
    with pytest.raises(ConfigError, match="eval-mode BN"):
        relabel(synset, load_teacher(committee_dir, tiny_real, bn_mode="train"), "stored")
    online = relabel(synset, load_teacher(committee_dir, tiny_real), "online")
    assert online.soft_labels is None and online.extra["teacher"]["mode"] == "online"
    report = evaluate(online, TINY_KD, data=tiny_real, device="cpu")  # no --teacher: the set names it
    assert report.label_source == "online" and report.teacher_bytes == teacher.checkpoint_bytes
    report = evaluate(stored, TINY_KD, data=tiny_real, device="cpu")
    assert report.label_source == "stored"
