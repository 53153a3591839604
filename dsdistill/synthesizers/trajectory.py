"""Differentiable unrolled SGD for trajectory matching, with three ways to get the outer gradient.

A student starts at a flat parameter vector theta_0 and takes N plain SGD steps on synthetic batches,

    theta_{i+1} = theta_i - lr * g_i,    g_i = d loss_i(theta_i, X) / d theta_i,

where loss_i is step i's inner loss (its batch, augmentation and scale are fixed by i, so it can be
replayed) and X is the learnable image tensor. The outer loss L depends on theta_N and optionally on
some intermediate iterates (AST's intermediate matching). We want dL/dX and dL/dlr.

Modes (reference/trajectory.md, sections 2.2 and 4):
- "unroll": plain autograd through all N steps (MTT's reference). Memory holds N steps of activations
  and double-backward intermediates, so it grows linearly in N.
- "exact-constant-memory": the forward pass keeps no graph, only the N+1 parameter snapshots; the reverse
  pass recomputes one step's graph at a time and runs the exact adjoint recursion
      lambda_N = dL/dtheta_N
      for i = N-1..0:  dX += -lr * (dg_i/dX)^T lambda_{i+1};  dlr += -<lambda_{i+1}, g_i>;
                       lambda_i = lambda_{i+1} - lr * H_i lambda_{i+1} (+ dL/dtheta_i when L reads theta_i)
  with one double-backward per step giving H_i lambda and the image vector-Jacobian product together.
  The same gradient as "unroll" up to rounding (tests/test_synthesizers_trajectory.py checks it in float64).
  What still grows with N: the snapshots, N+1 vectors of P floats (1.2 MiB each for a CIFAR ConvNet-3),
  small next to one step's activations (tens to hundreds of MiB). With `segment` = k only every k-th
  snapshot is kept and each segment is recomputed (no graph) before its reverse sweep: about N/k + k
  snapshots for one extra forward pass.
- "first-order": TESLA's two-pass scheme (Cui et al., ICML 2023). The reverse recursion with every
  Hessian H_i set to 0, so the final adjoint is pushed through each step's g_i unchanged. NOT the exact
  gradient; the error grows with lr * N * curvature (reference/trajectory.md 4.2). Same memory as above.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import ConfigError

GRADIENT_MODES = ("unroll", "exact-constant-memory", "first-order")

# step i's inner loss at parameters theta, as a function of the learnable images (replayable: same i, same loss)
StepLoss = Callable[[int, Tensor, Tensor], Tensor]
# the outer loss from the iterates it reads: {step index: theta at that step} -> scalar
OuterLoss = Callable[[Mapping[int, Tensor]], Tensor]


class FlatParams:
    """A module's parameters as one flat vector: the update and the distance are single vector operations,
    and the forward is torch.func.functional_call on views of that vector (no module surgery)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.numels = [p.numel() for _, p in module.named_parameters()]
        self.buffers = dict(module.named_buffers())

    @property
    def size(self) -> int:
        return sum(self.numels)

    def flatten(self, params: Mapping[str, Tensor] | None = None) -> Tensor:
        source = dict(self.module.named_parameters()) if params is None else params
        return torch.cat([source[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        if flat.numel() != self.size:
            raise ConfigError(f"a flat parameter vector of {flat.numel()} values does not fit this network "
                              f"({self.size} parameters)")
        return {n: v.view(s) for n, v, s in zip(self.names, flat.split(self.numels), self.shapes)}

    def __call__(self, flat: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.module, {**self.unflatten(flat), **self.buffers}, (x,))


@dataclass
class Trajectory:
    """What a mode returns: the outer loss, its gradients, and the student's final parameters."""
    loss: Tensor          # detached scalar
    grad_images: Tensor   # dL/dX, shaped like X
    grad_lr: Tensor       # dL/dlr, a scalar
    final: Tensor         # theta_N, detached


def _check(mode: str, steps: int, segment: int) -> None:
    if mode not in GRADIENT_MODES:
        raise ConfigError(f"unknown gradient mode {mode!r}; valid: {', '.join(GRADIENT_MODES)}")
    if steps < 1 or segment < 0:
        raise ConfigError(f"need at least one inner step and segment >= 0, got steps={steps}, segment={segment}")


def _grad(step_loss: StepLoss, i: int, theta: Tensor, images: Tensor, create_graph: bool) -> Tensor:
    return torch.autograd.grad(step_loss(i, theta, images), theta, create_graph=create_graph)[0]


def unroll(theta0: Tensor, images: Tensor, lr: Tensor, steps: int, step_loss: StepLoss, outer: OuterLoss,
           reads: tuple[int, ...], momentum: float = 0.0) -> Trajectory:
    """Plain autograd through all `steps` SGD steps (the MTT reference). With `momentum` mu, AST's heavy ball
    without dampening: b_0 = g_0, b_i = mu * b_{i-1} + g_i, theta_{i+1} = theta_i - lr * b_i."""
    theta = theta0.detach().requires_grad_(True)
    iterates: dict[int, Tensor] = {0: theta} if 0 in reads else {}
    velocity: Tensor | None = None
    for i in range(steps):
        g = _grad(step_loss, i, theta, images, create_graph=True)
        velocity = g if velocity is None or not momentum else momentum * velocity + g
        theta = theta - lr * velocity
        if i + 1 in reads:
            iterates[i + 1] = theta
    loss = outer(iterates)
    grad_images, grad_lr = torch.autograd.grad(loss, (images, lr))
    return Trajectory(loss.detach(), grad_images, grad_lr, theta.detach())


def _forward_into(buffer: Tensor, images: Tensor, lr: float, start: int, step_loss: StepLoss) -> Tensor:
    """Fill buffer[1:] with the iterates after buffer[0] (= theta_start), keeping no graph. The snapshots live in
    one preallocated [n, P] tensor: scattered long-lived vectors between each step's large, short-lived
    activations fragment the allocator's heap, which showed up as memory growing with N."""
    for j in range(len(buffer) - 1):
        theta = buffer[j].clone().requires_grad_(True)
        g = _grad(step_loss, start + j, theta, images, create_graph=False)
        torch.sub(buffer[j], g, alpha=lr, out=buffer[j + 1])
    return buffer


def adjoint(theta0: Tensor, images: Tensor, lr: Tensor, steps: int, step_loss: StepLoss, outer: OuterLoss,
            reads: tuple[int, ...], exact: bool = True, segment: int = 0) -> Trajectory:
    """Constant-memory outer gradient: store snapshots, recompute one step's graph at a time going back.

    exact=True is the exact adjoint recursion; exact=False drops the Hessian term (TESLA's first order).
    segment=k > 0 keeps only every k-th snapshot and recomputes each segment's snapshots before its sweep.
    """
    alpha = float(lr.detach())
    k = segment if 0 < segment < steps else steps
    starts = list(range(0, steps, k))
    width = theta0.numel()
    anchors = theta0.new_empty((len(starts), width))   # theta at each segment start
    work = theta0.new_empty((k + 1, width))             # one segment's snapshots, reused
    iterates: dict[int, Tensor] = {}
    work[0] = theta0.detach()
    for n, s in enumerate(starts):
        anchors[n] = work[0]
        stop = min(s + k, steps)
        _forward_into(work[:stop - s + 1], images, alpha, s, step_loss)
        iterates.update({s + j: work[j].clone() for j in range(stop - s + 1) if s + j in reads})
        if k < steps:  # the next segment starts where this one ended
            work[0] = work[stop - s]
    final = iterates[steps]
    live = {i: t.requires_grad_(True) for i, t in iterates.items()}
    loss = outer(live)
    direct = {i: g.detach() for i, g in zip(live, torch.autograd.grad(loss, list(live.values()), allow_unused=True))
              if g is not None}
    lam = direct.pop(steps, torch.zeros_like(final)).clone()
    grad_images = torch.zeros_like(images)
    grad_lr = torch.zeros((), dtype=final.dtype, device=final.device)
    for n in reversed(range(len(starts))):
        s = starts[n]
        stop = min(s + k, steps)
        if k < steps:  # recompute this segment's snapshots (no graph); without segments they are all in `work`
            work[0] = anchors[n]
            _forward_into(work[:stop - s], images, alpha, s, step_loss)
        for i in range(stop - 1, s - 1, -1):
            th = work[i - s].clone().requires_grad_(True)
            g = _grad(step_loss, i, th, images, create_graph=True)
            grad_lr -= (lam * g.detach()).sum()
            if exact:
                hvp, vjp = torch.autograd.grad(g, (th, images), grad_outputs=lam, allow_unused=True)
            else:
                hvp, vjp = None, torch.autograd.grad(g, images, grad_outputs=lam, allow_unused=True)[0]
            del g, th
            if hvp is not None:
                lam.add_(hvp, alpha=-alpha)
            if vjp is not None:
                grad_images.add_(vjp, alpha=-alpha)
            if i in direct:
                lam.add_(direct.pop(i))
    return Trajectory(loss.detach(), grad_images, grad_lr.reshape(lr.shape).to(lr.dtype), final.detach())


def trajectory_gradient(mode: str, theta0: Tensor, images: Tensor, lr: Tensor, steps: int, step_loss: StepLoss,
                        outer: OuterLoss, reads: tuple[int, ...] = (), segment: int = 0,
                        momentum: float = 0.0) -> Trajectory:
    """Run `steps` student steps from theta0 and return L with dL/dimages and dL/dlr by `mode`.

    `reads` lists the iterates the outer loss looks at besides theta_N (always read), e.g. (10,) for an
    intermediate match after 10 steps. `images` and `lr` must require grad; theta0 must not. `momentum`: the
    student's inner-loop momentum (AST), unroll only: the adjoint modes would need a velocity adjoint.
    """
    _check(mode, steps, segment)
    if momentum and mode != "unroll":
        raise ConfigError(f"student momentum needs gradient=unroll: the {mode} recursion has no velocity adjoint yet")
    reads = tuple(sorted({*reads, steps}))
    if any(not 0 <= r <= steps for r in reads):
        raise ConfigError(f"the outer loss can read iterates 0..{steps}, got {reads}")
    if mode == "unroll":
        return unroll(theta0, images, lr, steps, step_loss, outer, reads, momentum)
    return adjoint(theta0, images, lr, steps, step_loss, outer, reads, exact=mode == "exact-constant-memory",
                   segment=segment)


def parameter_distance(theta: Tensor, start: Tensor, target: Tensor) -> Tensor:
    """MTT's normalised parameter distance ||theta - target||^2 / ||start - target||^2 (sums of squares)."""
    return ((theta - target) ** 2).sum() / ((start - target) ** 2).sum()
