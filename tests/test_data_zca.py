"""ZCA: agrees with kornia's module, whitens, inverts exactly, round-trips its state, and
load_dataset(zca=True) fits it on the train split of [0, 1] pixels (MTT)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from kornia.enhance import ZCAWhitening

from dsdistill.data import ZCA, load_dataset, write_fake
from dsdistill.errors import SetFileError


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 1, 1, generator=gen)  # correlated pixels, like images
    return (base + 0.3 * torch.rand(n, 2, 3, 3, generator=gen)).float()


def test_matches_kornia_module() -> None:
    x = _images()
    ours = ZCA(eps=0.1).fit(x)
    theirs = ZCAWhitening(eps=0.1, compute_inv=True).fit(x)
    torch.testing.assert_close(ours.transform(x), theirs(x))
    torch.testing.assert_close(ours.inverse(ours.transform(x)), theirs.inverse_transform(theirs(x)))


def test_whitens_and_inverts() -> None:
    x = _images(n=400)
    zca = ZCA(eps=1e-6).fit(x)
    y = zca.transform(x).flatten(1)
    torch.testing.assert_close(torch.cov(y.T), torch.eye(18), atol=2e-3, rtol=0)
    torch.testing.assert_close(zca.inverse(zca.transform(x)), x, atol=1e-4, rtol=0)


def test_state_round_trip_and_errors() -> None:
    x = _images()
    zca = ZCA().fit(x)
    state = zca.state_dict()
    assert set(state) == {"eps", "mean", "matrix", "inverse_matrix"} and float(state["eps"]) == 0.1
    torch.testing.assert_close(ZCA.from_state_dict(state).transform(x), zca.transform(x))
    with pytest.raises(SetFileError, match="lacks matrix"):
        ZCA.from_state_dict({k: v for k, v in state.items() if k != "matrix"})
    with pytest.raises(RuntimeError, match="not fitted"):
        ZCA().transform(x)


def test_load_dataset_with_zca(tmp_path: Path) -> None:
    root = write_fake("imagefolder", tmp_path, train_per_class=3, test_per_class=1)  # 8x8 RGB: a fast fit
    plain = load_dataset(f"imagefolder:{root}")
    data = load_dataset(f"imagefolder:{root}", zca=True)
    assert data.image_space == "zca" and data.zca is not None and data.zca.eps == 0.1
    pixels = plain.to_pixels(plain.train.images)                      # the [0, 1] pixels
    torch.testing.assert_close(data.zca.mean, pixels.flatten(1).mean(0, keepdim=True))  # fit on train only
    torch.testing.assert_close(data.to_pixels(data.train.images), pixels, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.to_pixels(data.test.images), plain.to_pixels(plain.test.images),
                               atol=1e-4, rtol=0)
    assert data.to("cpu").zca is not None
