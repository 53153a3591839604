"""Seeding: derived generators and seeded initialisation that leaves the global RNG alone."""
import torch

from dsdistill._seed import derive_seed, make_generator, seeded_init


def test_derived_generators_are_deterministic_and_distinct():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2) != derive_seed(1, "a", 1)
    a = torch.rand(4, generator=make_generator(3, "x"))
    b = torch.rand(4, generator=make_generator(3, "x"))
    assert torch.equal(a, b)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    m1, m2, m3 = (torch.nn.Linear(4, 3) for _ in range(3))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    seeded_init(m1, 0, "net", 5), seeded_init(m2, 0, "net", 5), seeded_init(m3, 0, "net", 6)
    assert torch.equal(m1.weight, m2.weight) and not torch.equal(m1.weight, m3.weight)
    assert torch.equal(before, torch.get_rng_state())
