"""Sets to and from other tools (issue 22): SyntheticSet.from_tensors, as_dataset, `dsdistill export` (an image
folder torchvision reads, an npz), `dsdistill import --lr/--zca/--dataset`, and `info`'s classes and loss curve."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dsdistill.cli import main
from dsdistill.errors import ConfigError, DsdistillError
from dsdistill.synset import SyntheticSet
from dsdistill.synset.export import class_folder, export_set, load_npz
from dsdistill.synset.tools import describe, loss_summary
from dsdistill.synthesizers import Budget, create_synthesizer

FMNIST_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tensors(n_per_class: int = 2, channels: int = 1, size: int = 28, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(classes * n_per_class, channels, size, size, generator=g)


# ---------------------------------------------------------------- from_tensors
def test_from_tensors_takes_the_registry_facts_without_data():
    s = SyntheticSet.from_tensors(tensors(), dataset="fashion-mnist")
    assert s.class_names == FMNIST_NAMES and s.mean == (0.2860,) and s.std == (0.3530,)
    assert s.labels.tolist() == [c for c in range(10) for _ in range(2)] and s.ipc == 2 and s.method == "imported"
    given = SyntheticSet.from_tensors(tensors(), torch.arange(20) % 10, dataset="fashion-mnist", method="mine",
                                      mean=(0.5,), std=(0.5,))
    assert given.labels.tolist()[:3] == [0, 1, 2] and given.mean == (0.5,) and given.method == "mine"
    assert SyntheticSet.from_tensors(tensors(channels=3, size=32), dataset="cifar10").class_names[0] == "0"


@pytest.mark.parametrize("images,labels,dataset,message", [
    (tensors(channels=3, size=32), None, "fashion-mnist", "3 channels but fashion-mnist has 1: pass the dataset"),
    (tensors(size=32), None, "fashion-mnist", "32x32px but fashion-mnist is 28x28px"),
    (tensors()[:7], None, "fashion-mnist", "7 images are not class-major for 10 classes"),
    (tensors(), torch.arange(20), "fashion-mnist", r"labels must lie in \[0, 10\)"),
    (tensors(), torch.zeros(20, 10), "fashion-mnist", "soft labels go in soft_labels="),
    (tensors().to(torch.uint8), None, "fashion-mnist", "normalised floats"),
    (tensors(), None, "fashion-mnistt", "did you mean 'fashion-mnist'"),
])
def test_from_tensors_refuses_in_one_line(images, labels, dataset, message):
    with pytest.raises(DsdistillError, match=message):
        SyntheticSet.from_tensors(images, labels, dataset=dataset)


# ---------------------------------------------------------------- as_dataset
def test_as_dataset_yields_hard_or_soft_labels_for_a_dataloader():
    soft = torch.softmax(torch.randn(20, 10), dim=1)
    s = SyntheticSet.from_tensors(tensors(), dataset="fashion-mnist", soft_labels=soft)
    hard = s.as_dataset()
    assert len(hard) == 20 and hard.classes == FMNIST_NAMES
    image, label = hard[5]
    assert torch.equal(image, s.images[5]) and label.dtype == torch.int64 and int(label) == 2
    x, y = next(iter(DataLoader(s.as_dataset(soft=True), batch_size=8)))
    assert x.shape == (8, 1, 28, 28) and y.shape == (8, 10) and torch.equal(y, soft[:8])
    with pytest.raises(ConfigError, match="stores no soft labels"):
        SyntheticSet.from_tensors(tensors(), dataset="fashion-mnist").as_dataset(soft=True)


def test_as_dataset_decodes_multiformation_as_the_evaluator_does():
    s = SyntheticSet.from_tensors(tensors(), dataset="fashion-mnist", decoder="multiformation-2")
    decoded, stored = s.as_dataset(), s.as_dataset(decoded=False)
    assert len(decoded) == 80 and len(stored) == 20
    assert [int(decoded[i][1]) for i in (0, 3, 4, 8)] == [0, 0, 0, 1]  # each stored image -> 4 images, label kept


# ---------------------------------------------------------------- export
@pytest.fixture
def made_set(tmp_path):
    s = SyntheticSet.from_tensors(tensors(n_per_class=3).clamp(-0.8, 2.0), dataset="fashion-mnist",
                                  soft_labels=torch.randn(30, 10))
    s.extra["command"] = "test"
    path = tmp_path / "s.h5"
    s.save(path)
    return s, path


def test_export_imagefolder_reads_back_with_torchvision(made_set, tmp_path, capsys):
    from torchvision.datasets import ImageFolder
    s, path = made_set
    out = tmp_path / "folder"
    code, stdout, _ = run(capsys, "export", str(path), "--format", "imagefolder", "--out", str(out))
    assert code == 0 and "30 images of 10 classes" in stdout
    folder = ImageFolder(str(out))
    assert len(folder.classes) == 10 and len(folder) == 30
    assert folder.classes[0] == "0-T-shirt_top" and folder.classes == [class_folder(k, n, 10)
                                                                        for k, n in enumerate(FMNIST_NAMES)]
    assert [t for _, t in folder.samples] == s.labels.tolist()  # ImageFolder's class index is the set's label
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["payload_sha256"] == s.payload_sha256() and manifest["mean"] == [0.286]
    assert "x * std + mean" in manifest["denormalisation"] and manifest["images"] == 30
    # the pixels are the de-normalised images, 8-bit
    pixel = np.asarray(folder.loader(folder.samples[0][0]))[..., 0].astype(np.float64) / 255
    expected = (s.images[0, 0] * 0.353 + 0.286).clamp(0, 1).numpy()
    assert np.abs(pixel - expected).max() <= 0.5 / 255 + 1e-6
    code, _, err = run(capsys, "export", str(path), "--format", "imagefolder", "--out", str(out))
    assert code == 2 and "exists" in err and err.count("\n") == 1


def test_export_npz_round_trips(made_set, tmp_path, capsys):
    s, path = made_set
    out = tmp_path / "s.npz"
    assert run(capsys, "export", str(path), "--format", "npz", "--out", str(out))[0] == 0
    with np.load(out) as npz:
        assert set(npz.files) == {"images", "labels", "soft_labels", "metadata"}
        assert npz["images"].dtype == np.float32 and json.loads(str(npz["metadata"]))["class_names"] == FMNIST_NAMES
    assert load_npz(out).payload_sha256() == s.payload_sha256()


def test_export_checks_the_output_place_before_work(made_set, tmp_path):
    s, path = made_set
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export_set(path, "imagefolder", tmp_path / "file")
    with pytest.raises(ConfigError, match="is a folder"):
        export_set(path, "npz", tmp_path)
    with pytest.raises(ConfigError, match="unknown export format"):
        export_set(path, "tar", tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s.h5"]  # nothing left behind


# ---------------------------------------------------------------- import
def test_import_records_lr_and_zca(fake_fmnist_root, tmp_path, capsys):
    pt = tmp_path / "mtt.pt"
    torch.save({"images": tensors(n_per_class=1), "labels": torch.arange(10)}, pt)
    torch.save(torch.tensor(0.0123), tmp_path / "lr_best.pt")
    out = tmp_path / "imported.h5"
    code, stdout, _ = run(capsys, "import", str(pt), "--lr", str(tmp_path / "lr_best.pt"), "--zca", "--data-root",
                          fake_fmnist_root, "--out", str(out))
    assert code == 0 and "learned lr 0.0123" in stdout and "ZCA" in stdout
    s = SyntheticSet.load(out)
    assert s.lr == pytest.approx(0.0123) and s.image_space == "zca" and set(s.zca) >= {"mean", "matrix"}
    assert s.class_names == FMNIST_NAMES and s.extra["source"]["lr_sha256"]
    out2 = tmp_path / "number.h5"
    assert run(capsys, "import", str(pt), "--lr", "0.01", "--out", str(out2))[0] == 0
    assert SyntheticSet.load(out2).lr == 0.01 and SyntheticSet.load(out2).image_space == "normalized"


def test_import_needs_the_dataset_when_the_channels_say_so(tmp_path, capsys):
    pt = tmp_path / "cifar.pt"
    torch.save((tensors(n_per_class=1, channels=3, size=32), torch.arange(10)), pt)
    code, _, err = run(capsys, "import", str(pt), "--out", str(tmp_path / "x.h5"))
    assert code == 2 and err.count("\n") == 1 and "3 channels but fashion-mnist has 1" in err and "--dataset" in err
    assert not (tmp_path / "x.h5").exists()
    assert run(capsys, "import", str(pt), "--dataset", "cifar10", "--out", str(tmp_path / "x.h5"))[0] == 0


# ---------------------------------------------------------------- info
def test_info_shows_class_names_and_the_loss_curve(tiny_real, tmp_path, capsys):
    s = create_synthesizer("dm", width=8, batch_real=4).fit(tiny_real, 1, seed=0, budget=Budget(iterations=3))
    path = tmp_path / "dm.h5"
    s.save(path)
    rows = describe(path)
    assert rows["classes"] == "4: c0, c1, c2, c3"
    losses = s.extra["loss_curve"]["loss"]
    assert rows["loss curve"].startswith(f"first {losses[0]:.4g} (it 0), last {losses[-1]:.4g} (it 2), min ")
    assert rows["loss curve"].endswith("3 points over 3 iterations") and rows["distillation"].startswith("3 iterations")
    code, out, _ = run(capsys, "info", str(path))
    assert code == 0 and "loss curve" in out and "c0, c1" in out
    assert loss_summary({"iteration": [0], "loss": [2.0]}) == \
        "first 2 (it 0), last 2 (it 0), min 2 (it 0), 1 point over 1 iteration"
    assert loss_summary(None) == "" and loss_summary({"iteration": [], "loss": []}) == ""
