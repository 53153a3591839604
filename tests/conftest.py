"""Shared fixtures: tiny in-memory datasets (no files, no network) and fake raw files."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from dsdistill._seed import seeded_init
from dsdistill.data import RealData, Split, load_dataset, write_fake
from dsdistill.models import create_model
from dsdistill.synthesizers import SYNTHESIZERS, create_synthesizer
from dsdistill.teachers.committee import CommitteeRequest, build_committee, parse_members
from dsdistill.teachers.experts import ExpertConfig, build_experts
from dsdistill.train.real import RealTrainConfig, train_on_real


def make_tiny_real(num_classes: int = 4, per_class: int = 12, test_per_class: int = 5, size: int = 28,
                   channels: int = 1, seed: int = 0, name: str = "fashion-mnist") -> RealData:
    """Each class is a noisy copy of its own random template, so a model can learn it."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, channels, size, size, generator=g)

    def split(n: int) -> Split:
        labels = torch.arange(num_classes).repeat_interleave(n)
        images = templates[labels] + 0.5 * torch.randn(len(labels), channels, size, size, generator=g)
        return Split.from_tensors(images, labels, num_classes)

    return RealData(name=name, train=split(per_class), test=split(test_per_class),
                    class_names=[f"c{i}" for i in range(num_classes)], mean=(0.5,) * channels,
                    std=(0.25,) * channels, digits=False)


@pytest.fixture
def tiny_real() -> RealData:
    return make_tiny_real()


@pytest.fixture(scope="session")
def fake_fmnist_root(tmp_path_factory) -> str:
    """Fashion-MNIST in its native IDX format, 6 train and 2 test images per class (written once per session:
    nothing writes into it, a test that needs other files writes its own)."""
    folder = tmp_path_factory.mktemp("fmnist")
    return str(write_fake("fashion-mnist", folder, train_per_class=6, test_per_class=2))


TINY_EXPERTS = {"experts": 2, "epochs": 4, "model_options": {"width": 8}}  # what tiny_experts holds


@functools.lru_cache(maxsize=None)
def tiny_experts_dir() -> str:
    """MTT expert trajectories for make_tiny_real(): 2 experts x 4 epochs of a width-8 ConvNet (built once per test
    session)."""
    folder = Path(tempfile.mkdtemp(prefix="dsdistill-experts-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    build_experts(make_tiny_real(), folder, config=ExpertConfig(batch_size=16), **TINY_EXPERTS)
    return str(folder)


TINY_COMMITTEE = {"members": "convnet-bn:width=8,convnet-bn:width=8:depth=2", "epochs": 8, "holdout": 2}
"""What tiny_committee_dir holds (its training: tiny_committee_config())."""


def tiny_committee_config() -> RealTrainConfig:
    return RealTrainConfig(batch_size=16, dsa=False, cutmix_prob=0.0, lr=0.05)


@pytest.fixture(scope="session")
def tiny_experts() -> str:
    return tiny_experts_dir()


@functools.lru_cache(maxsize=None)
def tiny_committee_dir() -> str:
    """A committee of two narrow BN ConvNets trained on make_tiny_real() (built once per test session; a test that
    changes it works on a copy)."""
    folder = Path(tempfile.mkdtemp(prefix="dsdistill-committee-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    build_tiny_committee(make_tiny_real(), folder)
    return str(folder)


def build_tiny_committee(real: RealData, folder, members: str = TINY_COMMITTEE["members"],
                         epochs: int = TINY_COMMITTEE["epochs"], holdout: int = TINY_COMMITTEE["holdout"],
                         **kw) -> Path:
    """The tests' one committee builder: TINY_COMMITTEE's members (or others) trained with tiny_committee_config()."""
    return build_committee(real, folder, parse_members(members, epochs), holdout=holdout,
                           config=tiny_committee_config(), **kw)


def tiny_paper_real() -> RealData:
    """make_tiny_real at 8 px with 4 training images per class: CV-DD's five nets train and vote on it in seconds."""
    return make_tiny_real(per_class=4, test_per_class=1, size=8)


@functools.lru_cache(maxsize=None)
def tiny_paper_committee_dir() -> str:
    """CV-DD's committee as `dsdistill committee --preset paper --epochs 1 --holdout 1` builds it (its five members,
    its training: 3 images per class are one batch of 512) on tiny_paper_real() (built once per test session)."""
    folder = Path(tempfile.mkdtemp(prefix="dsdistill-paper-committee-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    CommitteeRequest(out=str(folder), preset="paper", epochs=1, holdout=1).build(tiny_paper_real())
    return str(folder)


@pytest.fixture
def committee_dir(tmp_path) -> Path:
    """A copy of the one committee the session builds, for tests that damage or extend it."""
    return Path(shutil.copytree(tiny_committee_dir(), tmp_path / "committee"))


@pytest.fixture(scope="session")
def fmnist_committee(fake_fmnist_root, tmp_path_factory) -> str:
    """A committee for the fake Fashion-MNIST (10 classes; tiny_committee_dir has make_tiny_real's 4): one epoch."""
    folder = tmp_path_factory.mktemp("fmnist-committee")
    build_tiny_committee(load_dataset("fashion-mnist", fake_fmnist_root), folder, epochs=1, holdout=1)
    return str(folder)


@pytest.fixture
def trained_teacher(tiny_real):
    """A narrow BN ConvNet trained briefly on the tiny real data (a teacher that knows the classes; per test:
    tests switch its mode)."""
    model = seeded_init(create_model("convnet-bn", 1, 4, 28, width=8), 0, "teacher")
    train_on_real(model, tiny_real.train, tiny_committee_config(), 0, 15)
    return model


@pytest.fixture
def two_sets(fake_fmnist_root, tmp_path):
    """Two one-image-per-class sets of the fake Fashion-MNIST (random, k-center) saved as files."""
    real = load_dataset("fashion-mnist", fake_fmnist_root)
    paths = []
    for method in ("random", "k-center"):
        options = {"features": "random"} if method == "k-center" else {}
        path = tmp_path / f"{method}.h5"
        create_synthesizer(method, **options).fit(real, 1, seed=0).save(path)
        paths.append(str(path))
    return real, paths


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Commands cache whole-set scores and resume logs under $DSDISTILL_CACHE: never the user's own."""
    monkeypatch.setenv("DSDISTILL_CACHE", str(tmp_path_factory.mktemp("cache")))


TINY_FOLDERS = {"experts": tiny_experts_dir, "committee": tiny_committee_dir}  # one tiny folder per teacher kind


def tiny_method(name: str, **overrides):
    """A registered method sized for make_tiny_real(): its own TINY options and, when it reads a folder of models
    trained on the real data (teacher_folder), the tiny folder of that kind. No per-method table."""
    cls = SYNTHESIZERS.get(name)
    folder = {cls.teacher_folder: TINY_FOLDERS[cls.teacher_folder]()} if cls.teacher_folder else {}
    return create_synthesizer(name, **{**cls.TINY, **folder, **overrides})
