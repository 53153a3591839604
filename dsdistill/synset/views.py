"""A set as a `torch.utils.data.Dataset`, for any PyTorch training loop (SyntheticSet.as_dataset)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class SetDataset(Dataset):
    """(image [C, H, W] float32, label) pairs: label an int64 scalar (hard) or a float32 [K] vector (soft).

    Images are in the set's space (normalised with its mean/std, or ZCA-whitened for a ZCA set): what the
    evaluator trains on, so a model trained on them is tested on the real test set normalised the same way."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, class_names: list[str]) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images, self.targets = images, targets
        self.classes = list(class_names)  # as torchvision datasets name them

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]


__all__ = ["SetDataset"]
