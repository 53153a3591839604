"""The synthetic-set file: round trips, reproducibility, atomic writes, and every load check."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from dsdistill.errors import ConfigError, SetFileError
from dsdistill.synset import FORMAT, FORMAT_VERSION, SyntheticSet, save_grid
from dsdistill.synset import h5 as synset_h5
from dsdistill.synset.decode import is_known_decoder
from dsdistill.synset import set as synset_set

K, IPC, C, H, W = 3, 2, 1, 4, 4


def make_set(**overrides) -> SyntheticSet:
    gen = torch.Generator().manual_seed(0)
    fields = dict(
        images=torch.randn(K * IPC, C, H, W, generator=gen),
        labels=torch.arange(K).repeat_interleave(IPC),
        dataset="toy", num_classes=K, class_names=["a", "b", "c"], mean=(0.5,), std=(0.25,),
        method="dm", method_config={"lr_img": 1.0, "iterations": 3}, seed=7,
        distill_seconds=1.5, distill_iterations=3, extra={"loss": [2.0, 1.0]},
    )
    fields.update(overrides)
    return SyntheticSet(**fields)


def make_full_set() -> SyntheticSet:
    """Every optional part present: soft labels, a learned lr and a ZCA state."""
    gen = torch.Generator().manual_seed(1)
    return make_set(soft_labels=torch.rand(K * IPC, K, generator=gen), lr=0.01,
                    image_space="zca", zca={"mean": torch.randn(C * H * W, generator=gen),
                                            "transform": torch.randn(16, 16, dtype=torch.float64,
                                                                     generator=gen)})


def assert_same(a: SyntheticSet, b: SyntheticSet) -> None:
    for name in ("dataset", "num_classes", "class_names", "mean", "std", "image_space", "lr",
                 "decoder", "method", "method_config", "seed", "distill_seconds",
                 "distill_iterations", "extra"):
        assert getattr(a, name) == getattr(b, name), name
    assert torch.equal(a.images, b.images) and a.images.dtype == torch.float32
    assert torch.equal(a.labels, b.labels) and a.labels.dtype == torch.int64
    assert (a.soft_labels is None) == (b.soft_labels is None)
    if a.soft_labels is not None:
        assert torch.equal(a.soft_labels, b.soft_labels)
    assert (a.zca or {}).keys() == (b.zca or {}).keys()
    for key in a.zca or {}:
        assert torch.equal(a.zca[key], b.zca[key]) and a.zca[key].dtype == b.zca[key].dtype
    assert a.payload_sha256() == b.payload_sha256()


# ---------------------------------------------------------------------- round trips


def test_round_trip_minimal(tmp_path: Path) -> None:
    synset = make_set(seed=None, method_config={}, extra={})
    synset.save(tmp_path / "set.h5")
    loaded = SyntheticSet.load(tmp_path / "set.h5")
    assert_same(synset, loaded)
    assert loaded.seed is None and loaded.soft_labels is None and loaded.lr is None
    assert loaded.zca is None and loaded.ipc == IPC
    assert set(loaded.file_info) == {"created_utc", "dsdistill_version", "torch_version"}
    with h5py.File(tmp_path / "set.h5") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["seed"] == -1 and f.attrs["ipc"] == IPC
        assert set(synset_set.REQUIRED_ATTRS) <= set(f.attrs)


def test_round_trip_with_soft_labels_lr_and_zca(tmp_path: Path) -> None:
    synset = make_full_set()
    synset.save(tmp_path / "set.h5")
    loaded = SyntheticSet.load(tmp_path / "set.h5")
    assert_same(synset, loaded)
    assert loaded.lr == 0.01  # stored as float32, read back as its shortest repr
    assert loaded.label_bytes == K * IPC * 8 + K * IPC * K * 4


def test_two_saves_are_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    make_full_set().save(tmp_path / "a.h5")
    # HDF5 object timestamps have one-second resolution: cross a second boundary so that any
    # timestamp left in the file (datasets or the zca group) would show up as a byte difference.
    time.sleep(1.01 - time.time() % 1)
    make_full_set().save(tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["created_utc"] == "1970-01-02T00:00:00Z"


def test_payload_hash_ignores_metadata_but_not_payload() -> None:
    base = make_full_set()
    assert make_full_set().payload_sha256() == base.payload_sha256()
    renamed = make_full_set()
    renamed.method, renamed.distill_seconds = "other", 99.0
    assert renamed.payload_sha256() == base.payload_sha256()
    for change in ("images", "lr", "zca"):
        other = make_full_set()
        if change == "images":
            other.images[0, 0, 0, 0] += 1
        elif change == "lr":
            other.lr = 0.02
        else:
            other.zca["mean"][0] += 1
        assert other.payload_sha256() != base.payload_sha256(), change


def test_ipc_and_label_bytes() -> None:
    assert make_set().ipc == IPC and make_set().label_bytes == K * IPC * 8
    uneven = make_set(images=torch.zeros(4, C, H, W), labels=torch.tensor([0, 0, 0, 2]))
    assert uneven.ipc == 3


def test_to_moves_every_tensor() -> None:
    moved = make_full_set().to("meta")
    assert moved.images.is_meta and moved.labels.is_meta and moved.soft_labels.is_meta
    assert all(t.is_meta for t in moved.zca.values())


# ---------------------------------------------------------------------- atomic save


def test_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    target = tmp_path / "set.h5"
    monkeypatch.setattr(synset_h5, "_write_attrs", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_set().save(target)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "set.h5"
    make_set().save(target)
    before = target.read_bytes()
    monkeypatch.setattr(synset_h5, "_write_datasets", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        make_full_set().save(target)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]


def test_invalid_set_is_not_saved(tmp_path: Path) -> None:
    with pytest.raises(SetFileError, match="contain NaN or inf"):
        make_set(images=torch.full((K * IPC, C, H, W), float("nan"))).save(tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- validate


@pytest.mark.parametrize("overrides, message", [
    (dict(image_space="pixels"), "unknown image_space 'pixels'"),
    (dict(decoder="jpeg"), "unknown decoder 'jpeg'"),
    (dict(decoder="multiformation-1"), "unknown decoder"),
    (dict(class_names=["a"]), "class_names must be 3 strings"),
    (dict(mean=(0.1, 0.2, 0.3)), "mean must hold 1 finite numbers"),
    (dict(std=(0.0,)), "std must be positive"),
    (dict(images=torch.zeros(K * IPC, C, H, W, dtype=torch.float64)), "images must be a float32"),
    (dict(labels=torch.tensor([0, 1, 2, 0, 1, 3])), r"labels must lie in \[0, 3\), found 3"),
    (dict(soft_labels=torch.rand(K * IPC, K + 1)), r"soft_labels must have shape \[N, K\]"),
    (dict(lr=-1.0), "lr must be a finite positive number"),
    (dict(extra={"when": object()}), "extra must be a JSON-serialisable dict"),
    (dict(seed=-3), "seed must be a non-negative integer"),
])
def test_validate_rejects(overrides: dict, message: str) -> None:
    with pytest.raises(SetFileError, match=message):
        make_set(**overrides).validate(source="my-set")


@pytest.mark.parametrize("decoder", ["none", "multiformation-2", "multiformation-3"])
def test_validate_accepts_known_decoder(tmp_path: Path, decoder: str) -> None:
    assert is_known_decoder(decoder)
    synset = make_set(decoder=decoder)
    assert synset.validate(source="my-set") is None  # raises SetFileError on a problem
    synset.save(tmp_path / "set.h5")
    assert SyntheticSet.load(tmp_path / "set.h5").decoder == decoder


@pytest.mark.parametrize("decoder", ["multiformation-1", "multiformation-x", "Multiformation-2", "none "])
def test_is_known_decoder_rejects(decoder: str) -> None:
    assert not is_known_decoder(decoder)


# ---------------------------------------------------------------------- load checks


def _flip_image_byte(f: h5py.File) -> None:
    f["images"][0, 0, 0, 0] = f["images"][0, 0, 0, 0] + 1.0


def _replace(name: str, data: np.ndarray) -> Callable[[h5py.File], None]:
    def replace(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data)
    return replace


def _set_attr(name: str, value) -> Callable[[h5py.File], None]:
    def set_attr(f: h5py.File) -> None:
        f.attrs[name] = value
    return set_attr


def _set_value(name: str, index, value) -> Callable[[h5py.File], None]:
    def set_value(f: h5py.File) -> None:
        f[name][index] = value
    return set_value


def _delete(name: str) -> Callable[[h5py.File], None]:
    def delete(f: h5py.File) -> None:
        if name in f:
            del f[name]
        else:
            del f.attrs[name]
    return delete


N = K * IPC
BREAKAGES = {
    "flipped image": (_flip_image_byte, "payload does not match its sha256: the file was "
                                        "modified or damaged"),
    "tampered lr": (_set_value("lr", (), np.float32(0.5)), "payload does not match its sha256"),
    "tampered zca": (_set_value("zca/mean", 0, 9.0), "payload does not match its sha256"),
    "nan": (_set_value("images", (0, 0, 0, 0), np.nan), "images contain NaN or inf"),
    "future version": (_set_attr("format_version", 2),
                       "written by a newer dsdistill .*; upgrade dsdistill"),
    "wrong format": (_set_attr("format", "something-else"),
                     "not a dsdistill synthetic-set file"),
    "missing labels": (_delete("labels"), "missing dataset 'labels'"),
    "missing attribute": (_delete("num_classes"), "missing attribute 'num_classes'"),
    "images 3-D": (_replace("images", np.zeros((N, H, W), np.float32)),
                   r"images must have shape \[N, C, H, W\]"),
    "labels too short": (_replace("labels", np.zeros(N - 1, np.int64)),
                         r"labels must have shape \[N\] = \[6\]"),
    "labels int32": (_replace("labels", np.zeros(N, np.int32)),
                     "dataset 'labels' has dtype int32, expected int64"),
    "soft labels shape": (_replace("soft_labels", np.zeros((N, K + 1), np.float32)),
                          r"soft_labels must have shape \[N, K\] = \[6, 3\]"),
    "label out of range": (_set_value("labels", 0, K), r"labels must lie in \[0, 3\), found 3"),
    "bad json": (_set_attr("method_config", "{oops"), "attribute 'method_config' is not valid JSON"),
    "ipc lies": (_set_attr("ipc", 5), "attribute ipc is 5 but the payload gives 2"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_load_rejects_broken_file(tmp_path: Path, breakage: str) -> None:
    break_file, message = BREAKAGES[breakage]
    path = tmp_path / "set.h5"
    make_full_set().save(path)
    with h5py.File(path, "r+") as f:
        break_file(f)
    with pytest.raises(SetFileError, match=message) as caught:
        SyntheticSet.load(path)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SetFileError, match="no such file"):
        SyntheticSet.load(tmp_path / "absent.h5")


def test_load_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "set.h5"
    path.write_text("images, labels\n")
    with pytest.raises(SetFileError, match="not an HDF5 file"):
        SyntheticSet.load(path)


def test_load_truncated(tmp_path: Path) -> None:
    path = tmp_path / "set.h5"
    make_set().save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SetFileError, match="truncated or damaged") as caught:
        SyntheticSet.load(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


# ---------------------------------------------------------------------- grid


def test_save_grid_writes_png_with_one_column_per_class(tmp_path: Path) -> None:
    """The grid used to be one row per class with no names: now one column per class under its name, a title,
    and the images of a class down its column (torchvision's 2-pixel gaps and border in the mosaic)."""
    from PIL import Image

    from dsdistill.synset.grid import grid_cells, grid_title, mosaic, to_unit_pixels

    path = tmp_path / "grid.png"
    synset = make_set()
    save_grid(synset, path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]   # classes across, images down
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    cells = grid_cells(synset, to_unit_pixels(synset), max_per_class=10)
    assert cells.shape == (IPC, K, C, H, W)
    for c in range(K):   # column c holds class c's images, in order
        assert torch.equal(cells[:, c], to_unit_pixels(synset)[synset.labels == c])
    pad = 2
    assert mosaic(cells.clamp(0, 1)).shape == (IPC * (H + pad) + pad, K * (W + pad) + pad)
    one = grid_cells(synset, to_unit_pixels(synset), max_per_class=1)
    assert one.shape == (1, K, C, H, W)   # IPC 1 (or one per class): one row, one column per class
    assert grid_title(synset) == "dm · toy · IPC 2"


def test_display_range_holds_the_sets_own_pixels() -> None:
    """A DM set leaves [0, 1]: clamping blew its pixels out; the range now comes from its quantiles."""
    from dsdistill.synset.grid import display_range, range_note

    assert display_range(torch.rand(1000)) == (0.0, 1.0)            # real images: shown as they are
    wide = torch.linspace(-2.0, 3.0, 2001)
    low, high = display_range(wide)
    assert low == pytest.approx(-2.0 + 5 * 0.005, abs=1e-3) and high == pytest.approx(3.0 - 5 * 0.005, abs=1e-3)
    assert display_range(torch.linspace(0.2, 0.4, 100)) == (0.0, 1.0)   # never stretched beyond [0, 1]
    assert range_note(low, high).startswith(f"display range [{low:.2f}, {high:.2f}]: the set's 0.5-99.5%")


def test_save_grid_writes_jpeg_or_refuses_the_suffix(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("grid.jpg", "grid.JPEG"):
        save_grid(make_set(), tmp_path / name)
        with Image.open(tmp_path / name) as image:
            assert image.format == "JPEG"
    for name in ("grid.gif", "grid"):
        with pytest.raises(ConfigError, match="name the output .png, .jpg or .jpeg") as err:
            save_grid(make_set(), tmp_path / name)
        assert "\n" not in str(err.value) and not (tmp_path / name).exists()


def test_save_grid_zca_needs_to_pixels(tmp_path: Path) -> None:
    synset = make_full_set()
    with pytest.raises(ConfigError, match="pass to_pixels"):
        save_grid(synset, tmp_path / "grid.png")
    save_grid(synset, tmp_path / "grid.png", to_pixels=torch.sigmoid)
    assert (tmp_path / "grid.png").stat().st_size > 0
