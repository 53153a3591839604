"""Selection baselines: random, herding, k-center, whole."""
import pytest
import torch

from dsdistill.errors import ConfigError
from dsdistill.synthesizers import SYNTHESIZERS, create_synthesizer
from dsdistill.synthesizers.select import Herding, KCenter


@pytest.mark.parametrize("name", ["random", "herding", "k-center"])
def test_selection_picks_real_images_per_class(tiny_real, name):
    kwargs = {} if name == "random" else {"features": "random"}
    synset = create_synthesizer(name, **kwargs).fit(tiny_real, 3, seed=0)
    assert synset.images.shape == (4 * 3, 1, 28, 28) and synset.ipc == 3
    assert synset.labels.tolist() == [c for c in range(4) for _ in range(3)]
    idx = torch.tensor(synset.extra["train_indices"])
    assert torch.equal(synset.images, tiny_real.train.images[idx])
    assert torch.equal(tiny_real.train.labels[idx], synset.labels)
    assert len(set(idx.tolist())) == len(idx)
    assert synset.method == name
    synset.validate()


def test_random_selection_is_seeded():
    from conftest import make_tiny_real
    real = make_tiny_real()
    a = create_synthesizer("random").fit(real, 3, seed=0)
    b = create_synthesizer("random").fit(real, 3, seed=0)
    c = create_synthesizer("random").fit(real, 3, seed=1)
    assert a.payload_sha256() == b.payload_sha256() != c.payload_sha256()


def test_herding_brings_running_mean_closest_to_class_mean():
    f = torch.tensor([[0.0], [10.0], [4.0], [6.0], [5.2]], dtype=torch.float64)  # mean 5.04
    assert Herding.pick(f, 1).tolist() == [4]          # 5.2 is nearest the mean
    assert Herding.pick(f, 3).tolist() == [4, 2, 3]    # (5.2+4)/2 = 4.6 beats 5.6; then 6 makes 5.07


def test_k_center_starts_at_mean_and_adds_farthest_points():
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.5, 0.1]], dtype=torch.float64)  # mean (2.875, 0.025)
    assert KCenter.pick(f, 3).tolist() == [1, 2, 0]


def test_trained_features_path_runs(tiny_real):
    synset = create_synthesizer("herding", features="trained", feature_epochs=1, batch_size=16).fit(tiny_real, 2)
    assert synset.images.shape[0] == 8 and synset.method_config["features"] == "trained"


def test_ipc_larger_than_a_class_is_a_clear_error(tiny_real):
    with pytest.raises(ConfigError, match="larger than class 0"):
        create_synthesizer("random").fit(tiny_real, 13)
    with pytest.raises(ConfigError, match="at least 1"):
        create_synthesizer("random").fit(tiny_real, 0)
    with pytest.raises(ConfigError, match="features must be"):
        create_synthesizer("herding", features="bogus").fit(tiny_real, 2)


def test_whole_is_the_full_training_set(tiny_real):
    synset = create_synthesizer("whole").fit(tiny_real)
    assert len(synset.images) == len(tiny_real.train.labels)
    assert sorted(synset.labels.tolist()) == sorted(tiny_real.train.labels.tolist())
    assert SYNTHESIZERS.get("whole").kind == "whole"   # its records' family; no IPC, no seed, no options
