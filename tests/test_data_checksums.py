"""Checksums of the raw files: every file a spec knows carries one, the check names file and digests, fakes pass."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from dsdistill.data import DATASETS, load_dataset, write_fake
from dsdistill.data.checksums import FAKE_MARKER, Digest, RawFile, check_file, verify_files
from dsdistill.errors import DataNotFoundError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
UNCHECKED = {"tiny-imagenet": "Stanford publishes only the zip's digest, and the zip is never read"}
HEX = {"md5": 32, "sha256": 64}


@pytest.mark.parametrize("name", DATASETS.list())
def test_every_file_a_spec_needs_carries_a_digest(name: str) -> None:
    spec = DATASETS.get(name)
    if name in UNCHECKED:
        assert spec.checksums == (), UNCHECKED[name]
        return
    listed = {raw.name for raw in spec.checksums}
    for wanted in spec.reader.missing(Path("/nonexistent")):  # "x[.gz]": the reader takes either
        stem = wanted.removesuffix("[.gz]")
        forms = {stem, f"{stem}.gz"} if wanted.endswith("[.gz]") else {stem}
        assert forms <= listed, f"{name}: no digest for {sorted(forms - listed)}"
    for raw in spec.checksums:
        assert raw.digests
        for digest in raw.digests:
            assert re.fullmatch(f"[0-9a-f]{{{HEX[digest.algorithm]}}}", digest.hexdigest), (raw.name, digest)


def test_check_file_accepts_any_listed_digest_and_names_everything_when_none_matches(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"not the real batch")
    good_md5 = hashlib.md5(b"not the real batch").hexdigest()
    check_file(path, RawFile(path.name, (Digest("sha256", "0" * 64), Digest("md5", good_md5))))
    with pytest.raises(DataNotFoundError) as caught:
        check_file(path, RawFile(path.name, (Digest("md5", "1" * 32),)))
    message = str(caught.value)
    assert message.startswith(f"{path} is not the published file (expected md5 {'1' * 32}; found md5 {good_md5})")
    assert "delete it and download the dataset again" in message and "verify=False" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist", "cifar10", "svhn"])
def test_fakes_say_what_they_are_and_only_then_pass(tmp_path: Path, name: str) -> None:
    root = write_fake(name, tmp_path)
    load_dataset(name, root=root, download=False)  # random pixels under the official names: the marker lets them by
    markers = list(Path(root).rglob(FAKE_MARKER))
    assert len(markers) == 1 and "write_fake" in markers[0].read_text()
    markers[0].unlink()
    with pytest.raises(DataNotFoundError, match=r"is not the published file \(expected md5 [0-9a-f]{32}"):
        load_dataset(name, root=root, download=False)
    load_dataset(name, root=root, download=False, verify=False)


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Fashion-MNIST is not installed (dataset-fashion-mnist)")
def test_installed_fashion_mnist_matches_and_a_flipped_byte_does_not(tmp_path: Path) -> None:
    spec = DATASETS.get("fashion-mnist")
    verify_files(DEBIAN_FMNIST, spec.checksums)
    copy = tmp_path / "t10k-labels-idx1-ubyte.gz"
    shutil.copyfile(DEBIAN_FMNIST / copy.name, copy)
    data = bytearray(copy.read_bytes())
    data[-9] ^= 1  # inside the gzip trailer's CRC: still the right size, no longer the published bytes
    copy.write_bytes(bytes(data))
    with pytest.raises(DataNotFoundError, match=re.escape(f"{copy} is not the published file")):
        verify_files(tmp_path, spec.checksums)
