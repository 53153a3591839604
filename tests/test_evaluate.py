"""Protocols, the two training paths, and evaluate()."""
import dataclasses
import json

import pytest
import torch

from dsdistill.errors import ConfigError
from dsdistill.evaluate import PROTOCOLS, evaluate, get_protocol
from dsdistill.synthesizers import create_synthesizer

TINY = dataclasses.replace(get_protocol("dc"), name="tiny", epochs=6, seeds=(0, 1), batch_size=16,
                           model_options=(("width", 8),))


def test_published_protocols_are_frozen_with_the_dc_settings():
    dc = get_protocol("dc")
    assert (dc.architecture, dc.lr, dc.momentum, dc.weight_decay, dc.batch_size, dc.epochs) == \
        ("convnet", 0.01, 0.9, 5e-4, 256, 1000)
    assert (dc.augmentation, dc.label_mode, dc.seeds, dc.decay_epoch()) == ("dsa", "hard", (0, 1, 2, 3, 4), 500)
    noaug, quick = get_protocol("dc-noaug"), get_protocol("dc-quick")
    assert (noaug.epochs, noaug.augmentation, noaug.num_models) == (300, "none", 5)
    assert (quick.epochs, quick.num_models) == (300, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dc.epochs = 1
    assert {"dc", "dc-noaug", "dc-quick", "mtt"} <= set(PROTOCOLS.list())


def test_protocol_hash_is_stable_and_tracks_every_scoring_field():
    dc = get_protocol("dc")
    assert dc.hash == dataclasses.replace(dc).hash
    assert dc.hash == dataclasses.replace(dc, description="other words").hash
    for change in ({"epochs": 999}, {"lr": 0.02}, {"seeds": (0, 1)}, {"augmentation": "none"}):
        assert dataclasses.replace(dc, **change).hash != dc.hash
    assert len({p.hash for p in map(get_protocol, PROTOCOLS.list())}) == len(PROTOCOLS.list())


@pytest.mark.parametrize("augmentation", ["dsa", "none"])
def test_vmap_and_loop_paths_agree(tiny_real, augmentation):
    synset = create_synthesizer("random").fit(tiny_real, 3, seed=0)
    proto = dataclasses.replace(TINY, augmentation=augmentation)
    loop = evaluate(synset, proto, data=tiny_real, device="cpu", path="loop").results[0]
    vmap = evaluate(synset, proto, data=tiny_real, device="cpu", path="vmap").results[0]
    assert (loop.path, vmap.path) == ("loop", "vmap")
    assert loop.accuracies == pytest.approx(vmap.accuracies, abs=1.5 / len(tiny_real.test.labels))


def test_evaluate_is_deterministic_and_learns(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 6, seed=0)
    proto = dataclasses.replace(TINY, epochs=15)
    a = evaluate(synset, proto, data=tiny_real, device="cpu")
    b = evaluate(synset, proto, data=tiny_real, device="cpu")
    assert a.results[0].accuracies == b.results[0].accuracies
    assert a.results[0].mean > 0.5  # 4 separable classes: chance is 0.25
    assert a.protocol_hash == proto.hash and a.set_sha256 == synset.payload_sha256()


def test_report_table_and_json(tiny_real, tmp_path):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    report = evaluate(synset, TINY, data=tiny_real, device="cpu", archs=["convnet", "mlp"])
    assert [r.arch for r in report.results] == ["convnet", "mlp"]
    text = report.table()
    assert "protocol tiny" in text and "mlp" in text and "hard labels" in text
    report.save_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["protocol_hash"] == TINY.hash and len(data["results"][0]["accuracies"]) == 2
    assert data["results"][0]["mean"] == pytest.approx(sum(data["results"][0]["accuracies"]) / 2)


def test_evaluate_rejects_mismatches(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    synset.dataset = "mnist"
    with pytest.raises(ConfigError, match="made from 'mnist'"):
        evaluate(synset, TINY, data=tiny_real, device="cpu")
    synset.dataset = tiny_real.name
    with pytest.raises(ConfigError, match="learned lr"):
        evaluate(synset, dataclasses.replace(TINY, lr_source="set"), data=tiny_real, device="cpu")
    with pytest.raises(ConfigError, match="batch norm"):
        evaluate(synset, TINY, data=tiny_real, device="cpu", archs=["convnet-bn"], path="vmap")


def test_set_lr_is_used_under_the_mtt_protocol(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    synset.lr = 1e-12  # a negligible step size leaves the random init: accuracies equal to no training
    proto = dataclasses.replace(TINY, lr_source="set")
    untrained = dataclasses.replace(TINY, epochs=0)
    a = evaluate(synset, proto, data=tiny_real, device="cpu").results[0].accuracies
    b = evaluate(synset, untrained, data=tiny_real, device="cpu").results[0].accuracies
    assert a == b


def test_soft_labels_under_a_hard_protocol_are_stated(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    synset.soft_labels = torch.full((len(synset.labels), tiny_real.num_classes), 0.25)
    report = evaluate(synset, TINY, data=tiny_real, device="cpu")
    assert any("soft labels" in n for n in report.notes)


def test_zca_set_is_scored_on_test_images_whitened_the_same_way(tiny_real):
    """A ZCA set carries its whitening: scoring against normalised data or against data loaded with the
    same ZCA must see identical test images (never whitened twice)."""
    from dsdistill.data import ZCA
    from dsdistill.evaluate import _test_images
    pixels = dataclasses.replace(tiny_real)
    zca = ZCA(eps=0.1).fit(tiny_real.to_pixels(tiny_real.train.images))
    whitened = dataclasses.replace(
        tiny_real, zca=zca,
        train=dataclasses.replace(tiny_real.train, images=zca.transform(tiny_real.to_pixels(tiny_real.train.images))),
        test=dataclasses.replace(tiny_real.test, images=zca.transform(tiny_real.to_pixels(tiny_real.test.images))))
    synset = create_synthesizer("random").fit(whitened, 2, seed=0)
    assert synset.image_space == "zca"
    a = _test_images(synset, pixels, torch.device("cpu"))
    b = _test_images(synset, whitened, torch.device("cpu"))
    assert torch.allclose(a, b, atol=1e-4)
    plain = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    with pytest.raises(ConfigError, match="loaded with ZCA"):
        _test_images(plain, whitened, torch.device("cpu"))


def test_report_splits_training_and_test_time(tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    r = evaluate(synset, TINY, data=tiny_real, device="cpu").results[0]
    assert r.train_seconds > 0 and r.test_seconds > 0
    assert r.train_seconds + r.test_seconds <= r.seconds + 1e-6
