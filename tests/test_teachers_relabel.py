"""Relabelling any set by a teacher: stored soft labels or online, the original untouched."""
import dataclasses

import pytest
import torch

from dsdistill.data import load_dataset
from dsdistill.errors import ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.synset import SyntheticSet
from dsdistill.synthesizers import create_synthesizer
from dsdistill.teachers.committee import load_teacher
from dsdistill.teachers.relabel import BN_MODES, relabel, relabel_file

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


@pytest.mark.parametrize("mode,bn", [("stored", "eval"), ("online", "train")])
def test_relabel_file_loads_the_teacher_in_the_bn_mode_its_labels_need(mode, bn, fmnist_committee, fake_fmnist_root,
                                                                        tmp_path):
    """`dsdistill relabel`'s one call: stored labels come from eval-mode BN (one per image), online ones are made
    per crop as the kd protocol's teacher makes them (train-mode BN); the command is recorded in the saved set."""
    assert BN_MODES == {"online": "train", "stored": "eval"}
    real = load_dataset("fashion-mnist", fake_fmnist_root)
    create_synthesizer("random").fit(real, 1, seed=0).save(tmp_path / "a.h5")
    labelled, teacher = relabel_file(tmp_path / "a.h5", fmnist_committee, mode, tmp_path / "b.h5",
                                     data_root=fake_fmnist_root, command="dsdistill relabel ...")
    assert teacher.bn_mode == bn and teacher.weights.tolist() == load_teacher(fmnist_committee, real).weights.tolist()
    saved = SyntheticSet.load(tmp_path / "b.h5")
    assert saved.extra["command"] == "dsdistill relabel ..." and saved.extra["teacher"]["mode"] == mode
    assert (saved.soft_labels is not None) == (mode == "stored")
    with pytest.raises(ConfigError, match="one of online, stored"):
        relabel_file(tmp_path / "a.h5", fmnist_committee, "both", tmp_path / "c.h5", data_root=fake_fmnist_root)
