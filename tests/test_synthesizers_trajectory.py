"""The trajectory-matching gradient modes: unroll (the reference), the exact constant-memory adjoint, TESLA's first
order. Everything in float64 on a tiny ConvNet so the comparisons can be tight."""
import pytest
import torch
import torch.nn.functional as F

from dsdistill.errors import ConfigError
from dsdistill.models import create_model
from dsdistill.synthesizers.trajectory import FlatParams, parameter_distance, trajectory_gradient

STEPS = 6


@pytest.fixture
def case():
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model("convnet", 1, 4, 12, width=4, depth=2).double()
    flat = FlatParams(net)
    theta0 = flat.flatten().detach()
    target = theta0 + 0.05 * torch.randn(theta0.shape, generator=g, dtype=torch.float64)
    images = torch.randn(8, 1, 12, 12, generator=g, dtype=torch.float64).requires_grad_(True)
    labels = torch.arange(4).repeat_interleave(2)

    def step_loss(i, theta, x):
        idx = torch.tensor([(3 * i) % 8, (3 * i + 1) % 8, (3 * i + 5) % 8])  # a different minibatch per step
        return F.cross_entropy(flat(theta, x[idx] * (1 + 0.1 * i)), labels[idx])

    return flat, theta0, target, images, step_loss


def run(case, mode, lr=0.3, reads=(), segment=0, weight=0.5):
    flat, theta0, target, images, step_loss = case
    lr_t = torch.tensor(lr, dtype=torch.float64, requires_grad=True)

    def outer(it):
        loss = parameter_distance(it[STEPS], theta0, target)
        return loss + sum(weight * parameter_distance(it[r], theta0, target) for r in reads)

    return trajectory_gradient(mode, theta0, images, lr_t, STEPS, step_loss, outer, reads=reads, segment=segment)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("segment,reads", [(0, ()), (0, (3,)), (1, (2, 5)), (2, (3,)), (4, (2, 5))])
def test_exact_constant_memory_equals_unroll(case, reads, segment):
    ref = run(case, "unroll", reads=reads)
    got = run(case, "exact-constant-memory", reads=reads, segment=segment)
    assert float(ref.grad_images.norm()) > 1e-6 and abs(float(ref.grad_lr)) > 1e-6  # a non-trivial case
    assert rel(got.grad_images, ref.grad_images) < 1e-10
    assert rel(got.grad_lr, ref.grad_lr) < 1e-10
    assert torch.allclose(got.loss, ref.loss, rtol=1e-12) and torch.allclose(got.final, ref.final, rtol=1e-12)


def test_unroll_matches_finite_differences(case):
    """An independent check of the reference itself: central differences in lr and along one image direction."""
    flat, theta0, target, images, step_loss = case
    ref = run(case, "unroll", reads=(3,))
    eps = 1e-6

    def loss_at(lr, x):
        theta = theta0.clone()
        thetas = {0: theta}
        for i in range(STEPS):
            t = theta.detach().requires_grad_(True)
            g = torch.autograd.grad(step_loss(i, t, x), t)[0]
            theta = (t - lr * g).detach()
            thetas[i + 1] = theta
        return float(parameter_distance(thetas[STEPS], theta0, target) + 0.5 * parameter_distance(thetas[3], theta0, target))

    x = images.detach()
    fd_lr = (loss_at(0.3 + eps, x) - loss_at(0.3 - eps, x)) / (2 * eps)
    assert abs(fd_lr - float(ref.grad_lr)) < 1e-6 * max(1.0, abs(fd_lr))
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fd_x = (loss_at(0.3, x + eps * d) - loss_at(0.3, x - eps * d)) / (2 * eps)
    assert abs(fd_x - float((ref.grad_images * d).sum())) < 1e-6 * max(1.0, abs(fd_x))


def test_first_order_is_teslas_closed_form_and_not_exact(case):
    flat, theta0, target, images, step_loss = case
    exact = run(case, "exact-constant-memory")
    first = run(case, "first-order")
    # TESLA's closed form: dL/dlr = -<dL/dtheta_N, G> with G the sum of the step gradients (theta_N = theta0 - lr G)
    lam = 2 * (first.final - target) / ((theta0 - target) ** 2).sum()
    big_g = (theta0 - first.final) / 0.3
    assert torch.allclose(first.grad_lr, -(lam * big_g).sum(), rtol=1e-9)
    assert rel(first.grad_images, exact.grad_images) > 1e-3  # the dropped Hessian terms matter here
    assert torch.allclose(first.loss, exact.loss)


def test_flat_params_forward_is_the_module_forward(case):
    flat, theta0, _, images, _ = case
    x = images.detach()
    assert torch.allclose(flat(theta0, x), flat.module(x))
    assert flat.size == sum(p.numel() for p in flat.module.parameters())
    assert torch.equal(flat.flatten(flat.unflatten(theta0)), theta0)
    with pytest.raises(ConfigError, match="does not fit"):
        flat.unflatten(theta0[:-1])


def test_bad_mode_and_reads(case):
    with pytest.raises(ConfigError, match="unknown gradient mode"):
        run(case, "bptt")
    with pytest.raises(ConfigError, match="iterates 0..6"):
        run(case, "unroll", reads=(9,))


def test_student_momentum_is_the_heavy_ball_unroll_by_hand(case):
    """AST's inner loop, two steps written out: b0 = g0, theta1 = theta0 - lr*b0, b1 = mu*b0 + g1,
    theta2 = theta1 - lr*b1; the final iterate and the image gradient follow it, and mu = 0 is plain SGD."""
    flat, theta0, target, images, step_loss = case
    lr, mu = 0.3, 0.9
    lr_t = torch.tensor(lr, dtype=torch.float64, requires_grad=True)
    outer = lambda it: parameter_distance(it[2], theta0, target)
    got = trajectory_gradient("unroll", theta0, images, lr_t, 2, step_loss, outer, momentum=mu)
    t0 = theta0.clone().requires_grad_(True)
    g0 = torch.autograd.grad(step_loss(0, t0, images), t0, create_graph=True)[0]
    t1 = t0 - lr * g0
    g1 = torch.autograd.grad(step_loss(1, t1, images), t1, create_graph=True)[0]
    t2 = t1 - lr * (mu * g0 + g1)
    hand = parameter_distance(t2, theta0, target)
    assert torch.allclose(got.final, t2.detach(), rtol=0, atol=1e-12)
    assert torch.allclose(got.grad_images, torch.autograd.grad(hand, images)[0], rtol=1e-10, atol=1e-12)
    plain = trajectory_gradient("unroll", theta0, images, lr_t, 2, step_loss, outer)
    assert not torch.allclose(plain.final, got.final)
    assert torch.equal(plain.final, trajectory_gradient("unroll", theta0, images, lr_t, 2, step_loss, outer,
                                                        momentum=0.0).final)
    with pytest.raises(ConfigError, match="gradient=unroll"):
        trajectory_gradient("exact-constant-memory", theta0, images, lr_t, 2, step_loss, outer, momentum=mu)
