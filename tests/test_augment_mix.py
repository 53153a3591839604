"""CutMix (dsdistill.augment.mix): parameters sampled from a generator, then applied."""
import math

import torch

from dsdistill.augment.mix import CutMixParams, apply_cutmix, sample_cutmix


def old_cutmix(x, generator):
    """train/real.py's cutmix before it moved here (NCFM/IDC rand_bbox), kept to pin the draws."""
    batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    lam = float(torch.rand(1, generator=generator))
    perm = torch.randperm(batch, generator=generator)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = x.clone()
    mixed[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    return mixed, perm, 1.0 - (y2 - y1) * (x2 - x1) / (height * width)


def test_cutmix_targets_are_mixed_by_the_pasted_area():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 10, 10).contiguous()
    for it in range(20):
        params = sample_cutmix(x.shape, torch.Generator().manual_seed(it))
        mixed, perm, kept = apply_cutmix(x, params), params.perm, params.kept
        moved = perm != torch.arange(6)
        unchanged = (mixed == x).float().mean(dim=(1, 2, 3))
        assert torch.allclose(unchanged[moved], torch.full_like(unchanged[moved], kept))
        assert 0.0 <= kept <= 1.0 and torch.equal(x, torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 10, 10))


def test_the_draws_are_those_of_the_old_cutmix_and_leave_the_generator_where_it_left_it():
    x = torch.randn(5, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    for it in range(30):
        new, old = torch.Generator().manual_seed(it), torch.Generator().manual_seed(it)
        params = sample_cutmix(x.shape, new)
        mixed, perm, kept = old_cutmix(x, old)
        assert torch.equal(apply_cutmix(x, params), mixed) and torch.equal(params.perm, perm) and params.kept == kept
        assert torch.equal(new.get_state(), old.get_state())  # the next draw from the generator is the same too


def test_sampling_is_apart_from_applying():
    """One draw replays on another batch of the same shape; sampling never looks at the pixels."""
    params = sample_cutmix((4, 1, 8, 8), torch.Generator().manual_seed(3))
    assert isinstance(params, CutMixParams) and sorted(params.perm.tolist()) == [0, 1, 2, 3]
    a, b = torch.zeros(4, 1, 8, 8), torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 8, 8)
    assert torch.equal(apply_cutmix(a, params), a)  # equal images: nothing visible changes
    y1, y2, x1, x2 = params.box
    mixed = apply_cutmix(b, params)
    assert torch.equal(mixed[:, 0, y1:y2, x1:x2], b[params.perm, 0, y1:y2, x1:x2])
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[y1:y2, x1:x2] = False
    assert torch.equal(mixed[:, 0][:, outside], b[:, 0][:, outside])
