"""The set-file tools behind info, show and import: describe, draw, import_for_dataset."""
from __future__ import annotations

import pytest
import torch

from dsdistill.data import ZCA, load_dataset
from dsdistill.errors import ConfigError
from dsdistill.synset import SyntheticSet, save_grid
from dsdistill.synset.tools import describe, draw, import_for_dataset
from dsdistill.synthesizers import create_synthesizer


def test_describe_lists_what_info_prints(two_sets):
    path = two_sets[1][0]
    synset = SyntheticSet.load(path)
    rows = describe(path)
    assert list(rows)[:4] == ["file", "dataset", "method", "ipc"] and rows["file"] == path
    assert rows["payload sha256"] == synset.payload_sha256() and rows["labels"] == "10 hard"
    assert "command" not in rows and "soft labels" not in rows


def test_draw_unwhitens_a_zca_set(fake_fmnist_root, tmp_path):
    real = load_dataset("fashion-mnist", fake_fmnist_root, zca=True)
    path = tmp_path / "zca.h5"
    create_synthesizer("random").fit(real, 1, seed=0).save(path)
    draw(path, tmp_path / "drawn.png", max_per_class=1)
    synset = SyntheticSet.load(path)
    save_grid(synset, tmp_path / "expected.png", to_pixels=ZCA.from_state_dict(synset.zca).inverse, max_per_class=1)
    assert (tmp_path / "drawn.png").read_bytes() == (tmp_path / "expected.png").read_bytes()
    with pytest.raises(ConfigError, match="cannot draw a 'zca' set by un-normalising it"):
        save_grid(synset, tmp_path / "raw.png")  # what draw() saves the caller from


def test_import_for_dataset_fills_in_the_dataset_and_records_the_command(tmp_path):
    images, labels = torch.randn(20, 1, 28, 28), torch.arange(10).repeat(2)
    torch.save((images, labels), tmp_path / "pair.pt")
    synset = import_for_dataset(tmp_path / "pair.pt", tmp_path / "out.h5", dataset="fashion-mnist", method="dm",
                                command="dsdistill import pair.pt")
    loaded = SyntheticSet.load(tmp_path / "out.h5")
    assert loaded.payload_sha256() == synset.payload_sha256() and loaded.num_classes == 10 and loaded.ipc == 2
    assert loaded.mean == pytest.approx((0.2860,)) and loaded.method == "dm"
    assert loaded.extra["command"] == "dsdistill import pair.pt" and torch.equal(loaded.images, images)
