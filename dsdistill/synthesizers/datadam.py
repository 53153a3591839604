"""DataDAM: attention matching (Sajedi et al., ICCV 2023).

DM's mean-embedding term plus spatial-attention matching on every block but the last:
L = scale * (L_SAM + lambda * L_MMD). The paper and the official code disagree; each difference
is an option, the default is the paper, and the `official` preset gives the code:

| option        | paper (HP table) | official code (main_DataDAM.py)  |
|---------------|------------------|----------------------------------|
| power (p)     | 4                | 1                                |
| norm          | instance         | batch (get_network forces BN)    |
| loss_scale    | 1 (no scale)     | 100 on both terms                |
| iterations    | 8000             | 20000                            |
| batch_real    | 256              | 64                               |
The paper's real batch of 256 is what users reproducing the paper used (DataDAM issue #6); the
HP table read in reference/datadam_dm.md does not list it, so that default is the weakest-sourced.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .dm import DM, DMConfig, Features
from .losses import attention_loss, mean_embedding_loss
from .registry import register


@dataclass
class DataDAMConfig(DMConfig):
    power: float = 4.0             # paper HP table (official code: 1)
    task_balance: float = 0.01     # lambda: paper and code, low resolution (0.02 high resolution)
    loss_scale: float = 1.0        # paper (official code: x100 on both terms, which interacts with lr_img 1)


@register("datadam")
class DataDAM(DM):
    Config = DataDAMConfig
    fyi_sampler_under_flip = False  # FYI has no DataDAM code: the flip view alone (our extension)
    PRESETS = {
        "paper": {"iterations": 8000},
        "official": {"iterations": 20000, "power": 1.0, "norm": "batch", "loss_scale": 100.0, "batch_real": 64},
        # ours, for 2 CPU cores: the paper's p and norm with the code's x100 scale (unscaled, the
        # paper's loss barely moves the images at lr 1 within a CPU budget:
        # benchmarks/results/datadam-scale-probe.md) and 64 real images per class
        "fmnist-cpu": {"iterations": 400, "loss_scale": 100.0, "batch_real": 64},
    }

    def needs_maps(self) -> bool:
        return True

    def match(self, real: Features, syn: Features) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        sam = attention_loss(real.maps[:-1], syn.maps[:-1], cfg.power)
        mmd = mean_embedding_loss(real.embedding, syn.embedding)
        loss = cfg.loss_scale * (sam + cfg.task_balance * mmd)
        return loss, {"sam": sam.detach(), "mmd": mmd.detach()}
