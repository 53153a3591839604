"""Native-format readers on tiny hand-written files: exact pixel layout, labels, and damaged files."""
from __future__ import annotations

import builtins
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dsdistill.data.fakes import write_fake, write_idx, write_image
from dsdistill.data.images import ImageFolderLayout, ImageFolderReader, TinyImageNetReader
from dsdistill.data.readers import CifarReader, IdxReader, read_cifar_pickle, read_idx, read_svhn_mat
from dsdistill.errors import DataNotFoundError


# ---------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.dtype(">i4"), np.dtype(">f4")])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype: np.dtype) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype)
    write_idx(tmp_path / f"x-idx3{suffix}", array)
    tensor = read_idx(tmp_path / f"x-idx3{suffix}")
    assert tensor.shape == (2, 3, 4)
    np.testing.assert_array_equal(tensor.numpy(), array.astype(np.dtype(dtype).newbyteorder("=")))


def test_idx_truncated_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataNotFoundError, match=f"{path}.*header promises"):
        read_idx(path)


def test_idx_truncated_gzip_and_bad_magic(tmp_path: Path) -> None:
    gz = tmp_path / "a.gz"
    payload = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    gz.write_bytes(gzip.compress(payload)[:2500])
    with pytest.raises(DataNotFoundError, match="a.gz.*gzip"):
        read_idx(gz)
    bad = tmp_path / "b"
    bad.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(DataNotFoundError, match="magic"):
        read_idx(bad)


def test_idx_reader_prefers_uncompressed_and_checks_counts(tmp_path: Path) -> None:
    write_fake("fashion-mnist", tmp_path)  # .gz files
    assert IdxReader().missing(tmp_path) == []
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))  # raw copy wins and disagrees
    with pytest.raises(DataNotFoundError, match="10 images but 3 labels"):
        IdxReader().read(tmp_path)


# -------------------------------------------------------------------------------------------- CIFAR
def test_cifar_rows_are_channel_planes(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps({b"data": data, b"labels": [3, 7]}, protocol=2))
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    reader = CifarReader(("data_batch_1",), ("test_batch",), "batches.meta", "labels", "label_names")
    native = reader.read(tmp_path)
    assert native.train_images.shape == (2, 3, 32, 32)
    assert torch.equal(native.train_images[1, 2].flatten(), torch.from_numpy(data[1, 2048:]))
    assert native.train_labels.tolist() == [3, 7] and native.class_names == ("a", "b")


def test_cifar_unpickler_refuses_code(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # what a tampered file would do; `print` keeps the test harmless
            return (builtins.print, ("this must not run",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(DataNotFoundError, match="refusing to load .*print"):
        read_cifar_pickle(path)


# --------------------------------------------------------------------------------------------- SVHN
def test_svhn_layout_and_label_ten_is_zero(tmp_path: Path) -> None:
    import scipy.io

    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "s.mat", {"X": x, "y": np.array([[10], [1], [9], [10]], np.uint8)})
    images, labels = read_svhn_mat(tmp_path / "s.mat")
    assert labels.tolist() == [0, 1, 9, 0]
    assert images.shape == (4, 3, 32, 32) and images[2, 1, 5, 7] == x[5, 7, 1, 2]
    (tmp_path / "bad.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataNotFoundError, match="bad.mat"):
        read_svhn_mat(tmp_path / "bad.mat")


# ------------------------------------------------------------------------------------------ folders
def test_tiny_imagenet_sorted_wnids_names_and_grayscale(tmp_path: Path) -> None:
    root = write_fake("tiny-imagenet", tmp_path, train_per_class=1, test_per_class=1) / "tiny-imagenet-200"
    native = TinyImageNetReader().read(root, classes=[0, 5])
    assert native.train_images.shape == (2, 3, 64, 64)           # only the kept classes are decoded
    assert native.train_labels.tolist() == [0, 5]
    assert sorted(native.test_labels.tolist()) == [0, 5]         # grayscale val images became RGB
    assert native.class_names[5] == "thing 5"                      # words.txt, first name, sorted wnid order


def _tree(root: Path, sizes: dict[str, tuple[int, int]], mode: str = "RGB") -> None:
    for rel, (w, h) in sizes.items():
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        write_image(root / rel, np.full(shape, 200, np.uint8))


def test_image_folder_requires_one_size(tmp_path: Path) -> None:
    _tree(tmp_path, {"train/a/0.png": (8, 8), "train/b/0.png": (8, 6), "test/a/0.png": (8, 8)})
    layout = ImageFolderLayout.survey(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"b/0.png is 8x6 .* 8x8"):
        ImageFolderReader(layout).read(tmp_path)


def test_image_folder_rejects_unknown_test_class_and_missing_test(tmp_path: Path) -> None:
    _tree(tmp_path, {"train/a/0.png": (4, 4), "val/zebra/0.png": (4, 4)})
    with pytest.raises(DataNotFoundError, match="zebra"):
        ImageFolderReader(ImageFolderLayout.survey(tmp_path)).read(tmp_path)
    with pytest.raises(DataNotFoundError, match="test/<class>"):
        ImageFolderLayout.survey(tmp_path / "train")


def test_image_folder_grayscale_channels(tmp_path: Path) -> None:
    _tree(tmp_path, {"train/a/0.png": (4, 4), "train/b/0.png": (4, 4), "test/b/0.png": (4, 4)}, mode="L")
    layout = ImageFolderLayout.survey(tmp_path)
    native = ImageFolderReader(layout).read(tmp_path)
    assert layout.class_names == ("a", "b") and native.train_images.shape == (2, 1, 4, 4)
    assert native.test_labels.tolist() == [1]
