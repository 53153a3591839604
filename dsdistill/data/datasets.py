"""The registered datasets, as data only. Adding one is one DATASETS.register(...) call here
(plus a reader in readers.py/images.py if its format is new).

Normalisation statistics: DESIGN.md "Data", which follows the DC/DSA/DM code (utils.get_dataset
in VICO-UoE/DatasetCondensation) and MTT for Tiny-ImageNet.
"""
from __future__ import annotations

from pathlib import Path

from . import checksums
from .images import ImageFolderLayout, ImageFolderReader, TinyImageNetReader
from .readers import CifarReader, IdxReader, SvhnReader
from .spec import DATASET_FAMILIES, DATASETS, IMAGENET_MEAN, IMAGENET_STD, DatasetSpec, TorchvisionDownload

DIGIT_NAMES = tuple(str(d) for d in range(10))  # DC's class names for MNIST and SVHN
TRAIN_AND_TEST = ({"train": True}, {"train": False})

DATASETS.register("fashion-mnist")(DatasetSpec(
    name="fashion-mnist", channels=1, image_size=28, num_classes=10,
    # DESIGN.md; DC's code writes 0.2861, the train set's mean is 0.2860
    mean=(0.2860,), std=(0.3530,), digits=False, reader=IdxReader(),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",   # torchvision's FashionMNIST.classes
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    layouts=("FashionMNIST/raw",), download=TorchvisionDownload("FashionMNIST", TRAIN_AND_TEST),
    hint=", or install the Debian package dataset-fashion-mnist", checksums=checksums.FASHION_MNIST))

DATASETS.register("mnist")(DatasetSpec(
    name="mnist", channels=1, image_size=28, num_classes=10,
    mean=(0.1307,), std=(0.3081,),  # DC utils.get_dataset (the classic PyTorch MNIST example values)
    digits=True, reader=IdxReader(), class_names=DIGIT_NAMES,
    layouts=("MNIST/raw",), download=TorchvisionDownload("MNIST", TRAIN_AND_TEST), checksums=checksums.MNIST))

DATASETS.register("cifar10")(DatasetSpec(
    name="cifar10", channels=3, image_size=32, num_classes=10,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),  # DC utils.get_dataset, MTT utils.py
    digits=False,
    reader=CifarReader(train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
                       meta_file="batches.meta", label_key="labels", names_key="label_names"),
    layouts=("cifar-10-batches-py",), download=TorchvisionDownload("CIFAR10", TRAIN_AND_TEST),
    checksums=checksums.CIFAR10))

DATASETS.register("cifar100")(DatasetSpec(
    name="cifar100", channels=3, image_size=32, num_classes=100,
    mean=(0.5071, 0.4866, 0.4409), std=(0.2673, 0.2564, 0.2762),  # DC utils.get_dataset (MTT reuses CIFAR-10's)
    digits=False,
    reader=CifarReader(train_files=("train",), test_files=("test",), meta_file="meta",
                       label_key="fine_labels", names_key="fine_label_names"),
    layouts=("cifar-100-python",), download=TorchvisionDownload("CIFAR100", TRAIN_AND_TEST),
    checksums=checksums.CIFAR100))

DATASETS.register("svhn")(DatasetSpec(
    name="svhn", channels=3, image_size=32, num_classes=10,
    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),  # DC utils.get_dataset
    digits=True, reader=SvhnReader(), class_names=DIGIT_NAMES,
    download=TorchvisionDownload("SVHN", ({"split": "train"}, {"split": "test"})), checksums=checksums.SVHN))

DATASETS.register("tiny-imagenet")(DatasetSpec(
    name="tiny-imagenet", channels=3, image_size=64, num_classes=200,
    mean=IMAGENET_MEAN, std=IMAGENET_STD,  # MTT utils.py and DM's Tiny loader use the ImageNet statistics
    digits=False, reader=TinyImageNetReader(), layouts=("tiny-imagenet-200",),
    hint=" (unpack tiny-imagenet-200.zip from the Stanford CS231n site; torchvision cannot download it)"))


@DATASET_FAMILIES.register("imagefolder")
def image_folder(path: str) -> DatasetSpec:
    """Your class-per-folder images: PATH/train/<class>/* and PATH/test/<class>/* (or val/).

    Size and channels come from the first training image (all must match it). RGB folders use
    the ImageNet statistics, as Tiny-ImageNet does; grayscale folders have no standard
    statistics, so theirs are computed from the train split (empty mean/std below).
    """
    root = Path(path).expanduser()
    layout = ImageFolderLayout.survey(root)
    rgb = layout.shape.channels == 3
    return DatasetSpec(
        name=f"imagefolder:{path}", channels=layout.shape.channels, image_size=layout.shape.width,
        num_classes=len(layout.class_names), mean=IMAGENET_MEAN if rgb else (), std=IMAGENET_STD if rgb else (),
        digits=False, reader=ImageFolderReader(layout), class_names=layout.class_names, folder=root)
