"""Each matching loss against a direct formula."""
import torch

from dsdistill.synthesizers.losses import attention_loss, attention_map, mean_embedding_loss
from dsdistill.synthesizers.views import FlipConcat, Identity, view_for


def test_mean_embedding_loss_matches_direct_sum():
    g = torch.Generator().manual_seed(0)
    real, syn = torch.randn(3, 5, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    direct = sum(((real[k].mean(0) - syn[k].mean(0)) ** 2).sum() for k in range(3))
    assert torch.allclose(mean_embedding_loss(real, syn), direct)


def test_attention_map_is_normalised_channel_power_sum():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=g)
    a = attention_map(x, 4.0)
    direct = (x.abs() ** 4).sum(1).flatten(1)
    direct = direct / direct.norm(dim=1, keepdim=True)
    assert a.shape == (2, 16) and torch.allclose(a, direct)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))


def test_attention_loss_sums_layers_and_classes():
    g = torch.Generator().manual_seed(2)
    real = [torch.randn(2, 5, 3, 4, 4, generator=g), torch.randn(2, 5, 3, 2, 2, generator=g)]
    syn = [torch.randn(2, 1, 3, 4, 4, generator=g), torch.randn(2, 1, 3, 2, 2, generator=g)]
    direct = 0.0
    for r, s in zip(real, syn):
        for k in range(2):
            direct = direct + ((attention_map(r[k], 1.0).mean(0) - attention_map(s[k], 1.0).mean(0)) ** 2).sum()
    assert torch.allclose(attention_loss(real, syn, 1.0), direct)


def test_flip_view_concatenates_mirror_and_passes_gradients():
    x = torch.arange(8.0).view(1, 1, 2, 4).requires_grad_(True)
    out = FlipConcat()(x)
    assert out.shape == (2, 1, 2, 4) and torch.equal(out[1], x[0].flip(-1))
    out.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    assert isinstance(view_for(False), Identity) and view_for(False)(x) is x
