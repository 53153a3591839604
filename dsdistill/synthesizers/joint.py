"""Joint passes bounded by a memory budget: the classes of one joint pass go through the network in chunks.

`class_batching=joint` (and `auto` on CUDA) sends every class's batch through one forward. At Tiny-ImageNet
(200 classes x 256 real images x 64 px, ConvNet-4 of width 128) the first activation alone is 200 x 256 x 128 x
64 x 64 x 4 bytes, about 107 GB. Without train-mode batch norm an image's output does not depend on the rest of the
batch, so the pass is the same function in chunks of classes: the per-chunk losses and gradients add up to the
one-pass ones up to float rounding. With train-mode batch norm the batch statistics span every class of the pass,
so a pass over the budget is refused (with what to do) rather than quietly made another objective.
DM, DataDAM and NCFM (`DM.groups`) and CV-DD (`CVDD._voter`) all chunk through `joint_chunks`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

# ours: the activations one joint pass may hold. 8 GB leaves room for the model, the real and synthetic images
# and the optimiser state on a 16 GB GPU, and keeps the pass large enough (CIFAR-100 at 256 real images per class
# through ConvNet-3 is about 3 chunks) that chunking costs little on an 80 GB one; raise it there if you like.
JOINT_MEMORY_GB = 8.0

_PER_IMAGE: dict[tuple, int] = {}


def coupled_by_batch_norm(net: nn.Module) -> bool:
    """Whether the network normalises by the batch's statistics now (train-mode batch norm)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in net.modules())


def activation_bytes(net: nn.Module, image: Tensor) -> int:
    """Bytes of every leaf module's output for ONE image of `image`'s shape: about what a forward keeps for the
    backward pass (an upper bound for a no-grad pass). Measured once per architecture and shape on a one-image
    probe in eval mode without gradient (so no running statistics move and no random numbers are drawn); the
    modes are restored."""
    key = (type(net).__name__, tuple(image.shape[1:]), image.dtype,
           tuple(tuple(p.shape) for p in net.parameters()))
    if key not in _PER_IMAGE:
        total = [0]

        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, Tensor):
                total[0] += output.numel() * output.element_size()

        leaves = [m for m in net.modules() if not any(True for _ in m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        modes = [m.training for m in net.modules()]
        try:
            net.eval()
            with torch.no_grad():
                net(image[:1].detach())   # a view of a leaf taken under no_grad trips torch's module tracker (FlopCounterMode)
        finally:
            for h in handles:
                h.remove()
            for m, mode in zip(net.modules(), modes):
                m.training = mode
        _PER_IMAGE[key] = total[0]
    return _PER_IMAGE[key]


def class_chunks(sizes: Sequence[int], bytes_per_image: int, budget_gb: float) -> list[list[int]]:
    """Consecutive positions (classes kept in order) whose images fit `budget_gb` together; at least one each."""
    budget = budget_gb * 1e9
    chunks: list[list[int]] = [[]]
    held = 0.0
    for i, n in enumerate(sizes):
        need = n * bytes_per_image
        if chunks[-1] and held + need > budget:
            chunks.append([])
            held = 0.0
        chunks[-1].append(i)
        held += need
    return chunks if chunks[0] else []


def joint_chunks(net: nn.Module, batches: Sequence[Sequence[Tensor]], budget_gb: float, who: str) -> list[list[int]]:
    """Positions into `batches` (one tuple of tensors per class: real and synthetic, say) in chunks that each fit
    the memory budget. One chunk when all fit; a ConfigError when they do not and batch norm couples them."""
    if budget_gb <= 0:
        raise ConfigError(f"{who}: joint_memory_gb must be positive, got {budget_gb}")
    if not batches:
        return []
    per_image = activation_bytes(net, batches[0][0])
    sizes = [sum(len(t) for t in batch) for batch in batches]
    chunks = class_chunks(sizes, per_image, budget_gb)
    if len(chunks) > 1 and coupled_by_batch_norm(net):
        need = sum(sizes) * per_image / 1e9
        raise ConfigError(f"{who}: the joint pass over {len(batches)} classes needs about {need:.1f} GB of "
                          f"activations, over joint_memory_gb={budget_gb:g}, and train-mode batch norm normalises "
                          f"all its classes together, so it cannot be split without changing the objective: raise "
                          f"--set joint_memory_gb (if the GPU holds it), or use class_batching=per-class or "
                          f"norm=instance")
    return chunks
