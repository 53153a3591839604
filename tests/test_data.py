"""load_dataset end to end on fake native files: every registered dataset, the search order,
downloads (faked), class subsets, per-class sampling, statistics, and the real Fashion-MNIST."""
from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import pytest
import torch

import dsdistill.data.locate as locate_module
from dsdistill._seed import make_generator
from dsdistill.data import (DATASETS, FAKES, RealData, Split, dataset_status, load_dataset, resolve_dataset,
                            write_fake)
from dsdistill.data.fakes import write_idx
from dsdistill.errors import ConfigError, DataNotFoundError, UnknownNameError

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the machine's data, cache or network."""
    monkeypatch.delenv("DSDISTILL_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate_module, "SYSTEM_DATASETS", tmp_path / "system")

    def no_network(spec, target):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(locate_module, "_torchvision_fetch", no_network)
    return tmp_path


def _load_fake(name: str, folder: Path, **kwargs) -> RealData:
    path = write_fake(name, folder, train_per_class=2, test_per_class=1)
    return load_dataset(f"imagefolder:{path}" if name == "imagefolder" else name, root=path, **kwargs)


def test_every_registered_dataset_has_a_consistent_spec_and_a_fake() -> None:
    for name, spec in DATASETS.items():
        assert spec.name == name and len(spec.mean) == len(spec.std) == spec.channels
        assert name in FAKES, f"add a fake writer for {name} in dsdistill/data/fakes.py"
    assert DATASETS.get("mnist").digits and DATASETS.get("svhn").digits and not DATASETS.get("cifar10").digits


@pytest.mark.parametrize("name", FAKES.list())
def test_load_fake(tmp_path: Path, name: str) -> None:
    data = _load_fake(name, tmp_path / "data")
    k = data.num_classes
    assert len(data.train) == 2 * k and len(data.test) == k
    assert data.train.images.dtype == torch.float32 and data.train.labels.dtype == torch.int64
    assert data.train.images.shape[1:] == (data.channels, data.image_size, data.image_size)
    for split in (data.train, data.test):
        assert torch.equal(torch.cat(split.class_index).sort().values, torch.arange(len(split)))
        assert all(bool((split.labels[idx] == c).all()) for c, idx in enumerate(split.class_index))
    pixels = data.to_pixels(data.train.images)
    assert pixels.min() >= -1e-4 and pixels.max() <= 1 + 1e-4
    assert data.source.startswith(str(tmp_path / "data")) and data.zca is None and data.image_space == "normalized"


def test_spec_checks_reject_files_of_another_dataset(tmp_path: Path) -> None:
    write_fake("fashion-mnist", tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", torch.zeros(20, 32, 32, dtype=torch.uint8).numpy())
    with pytest.raises(DataNotFoundError, match=r"images are \[1, 32, 32\], expected \[1, 28, 28\]"):
        load_dataset("fashion-mnist", root=tmp_path)


# ------------------------------------------------------------------------------------ search order
def test_search_order_root_env_system_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for where in ("root", "env", "system/mnist", "cache/dsdistill/mnist"):
        write_fake("mnist", tmp_path / where)
    monkeypatch.setenv("DSDISTILL_DATA", str(tmp_path / "env"))
    assert load_dataset("mnist", root=tmp_path / "root").source == str(tmp_path / "root/MNIST/raw")
    assert load_dataset("mnist").source == str(tmp_path / "env/MNIST/raw")
    monkeypatch.delenv("DSDISTILL_DATA")
    (tmp_path / "nothing-here").mkdir()  # a root without the files: the search goes on
    assert load_dataset("mnist", root=tmp_path / "nothing-here").source == str(tmp_path / "system/mnist/MNIST/raw")
    (tmp_path / "system/mnist/MNIST/raw/t10k-images-idx3-ubyte").unlink()  # incomplete: skipped
    assert load_dataset("mnist").source == str(tmp_path / "cache/dsdistill/mnist/MNIST/raw")


def test_dataset_named_subfolder_of_root(tmp_path: Path) -> None:
    write_fake("fashion-mnist", tmp_path / "fashion-mnist")
    assert load_dataset(root=tmp_path).source == str(tmp_path / "fashion-mnist")


def test_a_data_root_that_does_not_exist_is_an_error_not_a_reason_to_look_elsewhere(tmp_path: Path) -> None:
    write_fake("fashion-mnist", tmp_path / "fashion-mnist")
    with pytest.raises(DataNotFoundError, match=r"--data-root .*typo: no such folder"):
        load_dataset("fashion-mnist", root=tmp_path / "typo")
    assert load_dataset("fashion-mnist", root=tmp_path).source == str(tmp_path / "fashion-mnist")


def test_not_found_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("fashion-mnist", root=tmp_path / "empty", download=False)
    message = str(info.value)
    assert "--data-root" in message and "dataset-fashion-mnist" in message and "\n" not in message


def test_download_goes_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeTorchvisionFashionMNIST:  # writes what torchvision would, where it would
        def __init__(self, root: str, download: bool, train: bool) -> None:
            write_fake("fashion-mnist", Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(locate_module, "_torchvision_fetch", _real_fetch)
    monkeypatch.setattr("torchvision.datasets.FashionMNIST", FakeTorchvisionFashionMNIST)
    data = load_dataset("fashion-mnist")
    folder = tmp_path / "cache/dsdistill/fashion-mnist/FashionMNIST/raw"
    assert data.source == f"torchvision download into {folder}"
    assert [p.name for p in (tmp_path / "cache/dsdistill/fashion-mnist").iterdir()] == ["FashionMNIST"]


def test_download_failure_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(locate_module, "_torchvision_fetch", _real_fetch)
    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(DataNotFoundError, match="downloading cifar10 with torchvision failed.*--data-root"):
        load_dataset("cifar10")


_real_fetch = locate_module._torchvision_fetch


def test_dataset_status_lists_everything_and_never_downloads(tmp_path: Path) -> None:
    write_fake("svhn", tmp_path / "system" / "svhn")
    rows = {name: (available, where) for name, available, where in dataset_status()}
    assert set(rows) == set(DATASETS.list()) | {"imagefolder:PATH"}
    assert rows["svhn"] == (True, str(tmp_path / "system" / "svhn"))
    assert rows["cifar10"][0] is False and "tiny-imagenet" in rows and rows["imagefolder:PATH"][0]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="cifar10.*imagefolder:PATH"):
        resolve_dataset("cifar11")


# ------------------------------------------------------------------------------- classes, sampling
def test_classes_argument_keeps_labels(tmp_path: Path) -> None:
    data = _load_fake("cifar10", tmp_path, classes=[7, 2])
    assert data.classes == (2, 7) and data.num_classes == 10
    assert set(data.train.labels.tolist()) == {2, 7} and data.train.class_size(2) == 2
    assert data.train.class_size(0) == 0 and len(data.train.class_index) == 10
    with pytest.raises(ConfigError, match="0..9"):
        load_dataset("cifar10", root=tmp_path, classes=[10])


def test_tiny_imagenet_classes_skip_decoding_others(tmp_path: Path) -> None:
    data = _load_fake("tiny-imagenet", tmp_path, classes=[3])
    assert data.train.labels.tolist() == [3, 3] and data.class_names[3] == "thing 3"


def _toy_split() -> Split:
    labels = torch.tensor([2, 0, 1, 2, 2, 0, 1, 2])
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2) * 10 + torch.arange(8.0).view(-1, 1, 1, 1)
    return Split.from_tensors(images, labels, num_classes=4)


def test_class_index_and_sampling() -> None:
    split = _toy_split()
    assert [i.tolist() for i in split.class_index] == [[1, 5], [2, 6], [0, 3, 4, 7], []]
    a = split.sample_class(2, 3, make_generator(0, "test", 2))
    b = split.sample_class(2, 3, make_generator(0, "test", 2))
    assert torch.equal(a, b) and a[:, 0, 0, 0].unique().numel() == 3           # same seed, no repeats
    assert set((a[:, 0, 0, 0] - 20).tolist()) <= {0.0, 3.0, 4.0, 7.0}            # all from class 2
    assert torch.equal(split.class_images(1)[:, 0, 0, 0], torch.tensor([12.0, 16.0]))
    with pytest.raises(ConfigError, match="has 2 in this split"):
        split.sample_class(0, 3, make_generator(0, "test"))


def test_subset_and_to() -> None:
    sub = _toy_split().subset([0, 1]).to("cpu")
    assert sub.labels.tolist() == [0, 1, 0, 1] and sub.class_size(2) == 0 and sub.num_classes == 4


# ---------------------------------------------------------------------------------------- statistics
def test_computed_statistics_normalise_to_zero_mean_unit_std(tmp_path: Path) -> None:
    data = _load_fake("cifar10", tmp_path, stats="computed")
    assert data.mean != DATASETS.get("cifar10").mean
    flat = data.train.images.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.std(1, correction=0), torch.ones(3), atol=1e-4, rtol=0)
    with pytest.raises(UnknownNameError, match="computed, standard"):
        load_dataset("cifar10", root=tmp_path, stats="median")


def test_grayscale_image_folder_computes_its_statistics(tmp_path: Path) -> None:
    from dsdistill.data.fakes import write_image

    for i, rel in enumerate(["train/x/0.png", "train/y/0.png", "test/x/0.png"]):
        write_image(tmp_path / rel, torch.full((6, 6), 40 * (i + 1), dtype=torch.uint8).numpy())
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.channels == 1 and data.image_size == 6 and data.class_names == ["x", "y"]
    assert data.mean == pytest.approx((60 / 255,)) and data.std == pytest.approx((20 / 255,))


# ----------------------------------------------------------------------------------- real data
@pytest.mark.skipif(not (REAL_FASHION_MNIST / "train-labels-idx1-ubyte.gz").is_file(),
                    reason="real Fashion-MNIST not installed (apt install dataset-fashion-mnist)")
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locate_module, "SYSTEM_DATASETS", REAL_FASHION_MNIST.parent)
    start = time.perf_counter()
    data = load_dataset("fashion-mnist", download=False)
    seconds = time.perf_counter() - start
    assert data.train.images.shape == (60000, 1, 28, 28) and data.test.images.shape == (10000, 1, 28, 28)
    assert data.train.labels.unique().tolist() == list(range(10))
    assert [data.train.class_size(c) for c in range(10)] == [6000] * 10
    assert abs(data.train.images.mean().item()) < 0.01 and abs(data.train.images.std().item() - 1) < 0.01
    assert seconds < 6, f"loading took {seconds:.1f} s (target < 3 s on an idle machine)"
