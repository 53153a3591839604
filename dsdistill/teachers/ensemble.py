"""Teachers for soft labels: a prior-weighted ensemble of models trained on the real data.

CV-DD's relabel (reference/cvdd_fyi.md A3) sums the members' LOGITS with weights softmax(prior / 10), and runs
the teachers with BatchNorm in TRAIN mode ("BSSL", batch-specific soft labelling: each micro-batch is normalised
by its own statistics). Here train-mode BN never changes the running statistics (momentum 0), so a teacher gives
the same labels however often it is used; any other layer (dropout) stays in eval mode (ours: torchvision's
MobileNetV2 in the official IN-1K committee has active dropout, which makes its labels random).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models import has_batch_norm

BN_MODES = ("train", "eval")
RELABEL_TEMPERATURE = 10.0  # CV-DD official relabel: weights softmax(prior / 10) (recover uses 5)


def prior_weights(priors: Sequence[float], temperature: float) -> Tensor:
    """softmax(prior / T); priors are accuracies in percent, as CV-DD's hard-coded values."""
    if temperature <= 0:
        raise ConfigError(f"the prior temperature must be positive, got {temperature}")
    return torch.softmax(torch.tensor([float(p) for p in priors], dtype=torch.float64) / temperature, 0).float()


def _device_of(members: Sequence[nn.Module]) -> torch.device:
    """Where the members' weights live: the weight buffer is made there, so a teacher built from members already
    on a GPU works without a further .to() (the CUDA relabel crash: CPU weights beside CUDA members)."""
    for member in members:
        for tensor in (*member.parameters(), *member.buffers()):
            return tensor.device
    return torch.device("cpu")


class Teacher(nn.Module):
    """sum_m w_m * f_m(x): logits of a weighted ensemble, without gradient."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | Tensor, bn_mode: str = "train",
                 names: Sequence[str] = (), sha256: Sequence[str] = (), checkpoint_bytes: int = 0,
                 source: str = "") -> None:
        super().__init__()
        if bn_mode not in BN_MODES:
            raise ConfigError(f"teacher BN mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
        weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1).to(_device_of(members))
        if len(members) == 0 or len(weights) != len(members):
            raise ConfigError(f"a teacher needs one weight per member; got {len(members)} members, "
                              f"{len(weights)} weights")
        if bn_mode == "train" and not all(has_batch_norm(m) for m in members):
            raise ConfigError("teacher BN mode 'train' (BSSL) needs BatchNorm in every member; use bn_mode='eval'")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", weights)
        self.bn_mode = bn_mode
        self.names = list(names) or [f"member{i}" for i in range(len(members))]
        self.sha256 = list(sha256)
        self.checkpoint_bytes = checkpoint_bytes
        self.source = source
        for p in self.parameters():
            p.requires_grad_(False)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0  # train-mode BN then normalises by the batch but never moves the running stats
        self.train(False)

    @property
    def device(self) -> torch.device:
        """The members' device (where inputs must go), not the weight buffer's."""
        return _device_of(self.members)

    def train(self, mode: bool = True) -> "Teacher":
        """Always eval, except BN layers under bn_mode 'train' (BSSL)."""
        super().train(False)
        if self.bn_mode == "train":
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train(True)
        return self

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        out = None
        for w, member in zip(self.weights, self.members):
            logits = w * member(x)
            out = logits if out is None else out + logits
        return out

    def describe(self) -> str:
        parts = ", ".join(f"{n} {float(w):.3f}" for n, w in zip(self.names, self.weights))
        where = f" from {self.source}" if self.source else ""
        return f"teacher{where}: {parts}; BN {self.bn_mode} mode"
