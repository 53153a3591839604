"""Digests of the raw files each dataset spec knows, and the check that runs on load (torchvision's resources idea).

A file is checked when it lies in the dataset's folder under a name the spec lists; it passes when it matches any of
its digests (the same content may be packaged more than once: Debian re-compressed Fashion-MNIST's .gz files, so
those carry both the publisher's md5 and Debian's sha256). Digests are (algorithm, hexdigest) pairs, md5 where the
publisher or torchvision gives only md5. A damaged or foreign file is one DataNotFoundError naming the file, the
expected and the found digest and what to do.

Cost: every listed file present is hashed on every load, with no cache: sha256 of Fashion-MNIST's 26 MB train
images .gz takes 0.03 s here and the 47 MB uncompressed copy 0.1 s (md5 0.2 s), against about 1 s to gunzip and
parse it; SVHN's 182 MB train file is md5'd in under a second, beside scipy's much slower parse.

Fakes (`dsdistill.data.write_fake`, for tests and demos) hold random pixels under the official names; each fake
folder carries a FAKE_MARKER file saying so, and a folder with that marker is not checked. Anything else is: a
faithful copy packaged differently (re-saved CIFAR pickles, say) can be loaded with ``load_dataset(verify=False)``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .._io import atomic_path
from ..errors import DataNotFoundError

FAKE_MARKER = ".dsdistill-fake"
FAKE_NOTE = ("Written by dsdistill.data.write_fake: random pixels under the official file names, so the checksums of "
             "dsdistill.data.checksums are not checked in this folder.\n")


@dataclass(frozen=True)
class Digest:
    algorithm: str   # a hashlib name: "md5" or "sha256"
    hexdigest: str


@dataclass(frozen=True)
class RawFile:
    """One file as it lies in the dataset's folder, and the digests any of which it may match."""

    name: str
    digests: tuple[Digest, ...]


def md5(*files: tuple[str, str]) -> tuple[RawFile, ...]:
    return tuple(RawFile(name, (Digest("md5", hexdigest),)) for name, hexdigest in files)


def sha256(*files: tuple[str, str]) -> tuple[RawFile, ...]:
    return tuple(RawFile(name, (Digest("sha256", hexdigest),)) for name, hexdigest in files)


# ------------------------------------------------------------------------------------------ Fashion-MNIST
_FMNIST = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# .gz: md5 as Zalando publishes them (github.com/zalandoresearch/fashion-mnist README; torchvision's mnist.py
# FashionMNIST.resources), and sha256 of the .gz files Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
# installs in /usr/share/datasets/fashion-mnist, computed here: Debian re-compressed them (other .gz bytes, same
# content: gunzipped, their md5s are the ones other loaders list for the upstream uncompressed files,
# f4a8712d..., 9018921c..., 8181f547..., 15d48437...).
_FMNIST_GZ_MD5 = ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                  "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")
_FMNIST_GZ_DEBIAN_SHA256 = ("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")
# uncompressed (torchvision extracts them beside the .gz): sha256 computed here by gunzipping Debian's files
_FMNIST_RAW_SHA256 = ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                      "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                      "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                      "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")
FASHION_MNIST = tuple(RawFile(f"{name}.gz", (Digest("md5", gz_md5), Digest("sha256", gz_sha256)))
                      for name, gz_md5, gz_sha256 in zip(_FMNIST, _FMNIST_GZ_MD5, _FMNIST_GZ_DEBIAN_SHA256)) \
    + sha256(*zip(_FMNIST, _FMNIST_RAW_SHA256))

# ------------------------------------------------------------------------------------------------- MNIST
# .gz: torchvision's mnist.py MNIST.resources (LeCun's files, mirrored on ossci-datasets). Uncompressed: LeCun publishes
# no digest; these md5s are the ones other loaders list for the uncompressed files (e.g. the 47040016-byte
# train-images-idx3-ubyte), not a publisher's, so a mismatch there says "not the usual file", not certainly damage.
MNIST = md5(("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
            ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
            ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
            ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
            ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"))

# ----------------------------------------------------------------------------------------------- CIFAR
# torchvision's cifar.py (train_list, test_list, meta): md5 of each file of the "python version" archives that
# www.cs.toronto.edu/~kriz publishes (the archives themselves: c58f30108f718f92721af3b95e74349a and
# eb9058c3a382ffc7106e4002c42a8d85; we read the extracted files, not the archives).
CIFAR10 = md5(("data_batch_1", "c99cafc152244af753f735de768cd75f"),
              ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
              ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
              ("data_batch_4", "634d18415352ddfa80567beed471001a"),
              ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
              ("test_batch", "40351d587109b95175f43aff81a1287e"),
              ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"))
CIFAR100 = md5(("train", "16019d7e3df5f24257cddd939b257f8d"), ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
               ("meta", "7973b15100ade9c7d40fb424638fde48"))

# ------------------------------------------------------------------------------------------------ SVHN
# torchvision's svhn.py split_list (ufldl.stanford.edu/housenumbers format 2 files)
SVHN = md5(("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
           ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"))

# Tiny-ImageNet: none. Stanford publishes only the zip (tiny-imagenet-200.zip), which we never read, and torchvision
# has no Tiny-ImageNet class; its images are checked by decoding only (images.py).


# ------------------------------------------------------------------------------------------------ check

def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file's bytes, read in chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_file(path: Path, raw: RawFile) -> None:
    """Pass when the file matches one of its digests (sha256 tried first: the faster here, and the one a local
    copy was measured with); else one DataNotFoundError that says what to do."""
    found: dict[str, str] = {}
    for algorithm in sorted({d.algorithm for d in raw.digests}, key=lambda a: a != "sha256"):
        found[algorithm] = file_digest(path, algorithm)
        if any(d.algorithm == algorithm and d.hexdigest == found[algorithm] for d in raw.digests):
            return
    expected = " or ".join(f"{d.algorithm} {d.hexdigest}" for d in raw.digests)
    got = ", ".join(f"{name} {value}" for name, value in found.items())
    raise DataNotFoundError(
        f"{path} is not the published file (expected {expected}; found {got}): it is damaged or another "
        f"version; delete it and download the dataset again (a faithful copy packaged differently loads with "
        f"load_dataset(..., verify=False))")


def verify_files(folder: Path, files: Iterable[RawFile]) -> None:
    """Check every listed file that lies in `folder` (none in a folder of fakes: see FAKE_MARKER)."""
    if (folder / FAKE_MARKER).is_file():
        return
    for raw in files:
        if (folder / raw.name).is_file():
            check_file(folder / raw.name, raw)


def mark_fake(folder: Path) -> None:
    """Say in `folder` that its files are fakes (fakes.py; nothing else should write this)."""
    with atomic_path(folder / FAKE_MARKER) as tmp:
        tmp.write_text(FAKE_NOTE)
