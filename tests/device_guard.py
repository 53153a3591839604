"""Device mismatches caught without a GPU: run a code path with the model on `meta` and watch every op.

`DeviceGuard(device)` is a dispatch mode. Inside it, each op must take its tensors from one device (0-dim CPU
scalars aside, which torch accepts beside any device) and an op on `device` tensors must answer there; each
exception is recorded in `strays` as (op, devices). Tensors made from nothing elsewhere (a draw on a CPU
generator) are listed in `created_elsewhere`: legitimate for seeds, a cost for bulk draws. A meta tensor has no data, so the two ways out of it are
answered with placeholders: `.cpu()` gives an empty CPU tensor of the shape, `.item()` gives 0. The CUDA relabel
crash (CPU weights beside CUDA members) shows up here as a stray on a CPU-only machine.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten


def _devices(tensors: list[torch.Tensor]) -> set[torch.device]:
    return {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}


class DeviceGuard(TorchDispatchMode):
    def __init__(self, device: str | torch.device = "meta") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.strays: list[tuple[str, set]] = []            # mixed inputs, or the device's inputs leaving it
        self.created_elsewhere: list[tuple[str, set]] = []  # tensors made from nothing off the device (randn...)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func is aten._local_scalar_dense.default and inputs[0].device.type == "meta":
            return 0
        leaving = func in (aten._to_copy.default, aten.copy_.default) and inputs and inputs[0].device.type == "meta"
        if func is aten._to_copy.default and leaving and torch.device(kwargs.get("device") or "meta").type == "cpu":
            return torch.empty(inputs[0].shape, dtype=kwargs.get("dtype") or inputs[0].dtype)  # the way out: .cpu()
        moving = func in (aten._to_copy.default, aten.copy_.default)
        if not moving and len(_devices(inputs)) > 1:
            self.strays.append((str(func), _devices(inputs)))
        out = func(*args, **kwargs)
        made = {t.device for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        if not moving and made - {self.device} and (not inputs or self.device in _devices(inputs)):
            (self.strays if inputs else self.created_elsewhere).append((str(func), made))
        return out
