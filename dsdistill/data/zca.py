"""ZCA whitening of whole images, fit on the train split only.

Built on kornia's functional pieces (`zca_mean`, `linear_transform`), which are exactly what
`kornia.enhance.ZCAWhitening` runs; holding the three tensors ourselves makes the state a plain
dict for set files and keeps it independent of kornia's module-state format across versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from kornia.enhance import linear_transform, zca_mean

from ..errors import SetFileError

# MTT and DataDAM: kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True), unbiased covariance
# (kornia's default); see reference/trajectory.md and reference/datadam_dm.md.
DEFAULT_EPS = 0.1
_STATE_KEYS = ("eps", "mean", "matrix", "inverse_matrix")


@dataclass
class ZCA:
    """x -> (x - mean) @ W with W = U (S + eps)^-1/2 U^T over flattened images, and its exact inverse."""

    eps: float = DEFAULT_EPS
    mean: torch.Tensor | None = field(default=None, repr=False)            # [1, D]
    matrix: torch.Tensor | None = field(default=None, repr=False)          # [D, D]
    inverse_matrix: torch.Tensor | None = field(default=None, repr=False)  # [D, D]

    @property
    def fitted(self) -> bool:
        return self.matrix is not None

    def fit(self, x: torch.Tensor) -> "ZCA":
        """Fit on a batch [N, ...] (the train split); returns self."""
        matrix, mean, inverse = zca_mean(x.detach().float(), dim=0, unbiased=True, eps=float(self.eps),
                                         return_inverse=True)
        self.mean, self.matrix, self.inverse_matrix = mean, matrix, inverse
        return self

    def _fitted_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.mean is None or self.matrix is None or self.inverse_matrix is None:
            raise RuntimeError("ZCA is not fitted: call fit(train_images) first")
        return tuple(t.to(device=like.device, dtype=like.dtype)  # type: ignore[return-value]
                     for t in (self.mean, self.matrix, self.inverse_matrix))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten a batch [N, C, H, W]; differentiable in x."""
        mean, matrix, _ = self._fitted_tensors(x)
        return linear_transform(x, matrix, mean, dim=0)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Undo `transform` (kornia's inverse_transform: (y + mean @ W) @ W^-1)."""
        mean, matrix, inverse = self._fitted_tensors(x)
        return linear_transform(x, inverse, -mean @ matrix, dim=0)

    def to(self, device: torch.device | str) -> "ZCA":
        if not self.fitted:
            return ZCA(self.eps)
        assert self.mean is not None and self.matrix is not None and self.inverse_matrix is not None
        return ZCA(self.eps, self.mean.to(device), self.matrix.to(device), self.inverse_matrix.to(device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild the transform (what a set file's `zca` group stores)."""
        if self.mean is None or self.matrix is None or self.inverse_matrix is None:
            raise RuntimeError("ZCA is not fitted: nothing to save")
        return {"eps": torch.tensor(float(self.eps), dtype=torch.float64), "mean": self.mean.detach().cpu(),
                "matrix": self.matrix.detach().cpu(), "inverse_matrix": self.inverse_matrix.detach().cpu()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "ZCA":
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise SetFileError(f"ZCA state lacks {', '.join(missing)}; the file was not written by dsdistill "
                               f"or is damaged")
        mean, matrix, inverse = (torch.as_tensor(state[k]).float() for k in _STATE_KEYS[1:])
        d = mean.numel()
        if mean.shape != (1, d) or matrix.shape != (d, d) or inverse.shape != (d, d):
            raise SetFileError(f"ZCA state has inconsistent shapes mean {list(mean.shape)}, matrix "
                               f"{list(matrix.shape)}, inverse {list(inverse.shape)}; the file is damaged")
        return cls(float(torch.as_tensor(state["eps"])), mean, matrix, inverse)
