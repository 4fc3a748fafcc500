"""Entropy-SGD (Chaudhari, Choromanska, Soatto, LeCun, Baldassi, Borgs, Chayes, Sagun & Zecchina,
"Entropy-SGD: Biasing Gradient Descent into Wide Valleys", ICLR 2017, arXiv 1611.01838, Algorithm 1)
on an MLP or convnet objective, as the authors' code updates (ucla-vision/entropy-sgd, python/optim.py).

Entropy-SGD descends the negative local entropy -F(x; gamma) = -log int exp(-f(x') - gamma/2
||x - x'||^2) dx', whose gradient gamma (x - <x'>) needs the mean of x' under the Gibbs measure
around x; L steps of stochastic-gradient Langevin dynamics (SGLD) estimate it. One outer step from
the current point x, per replica, with f the model's minibatch objective h (bench.models.mlp, its
weight cost included) and gamma_t = gamma0 (1 + gamma1)^t (scoping; t = outer steps taken before):

    x' <- x,  mu <- x,  u <- 0                                   (inner state reset at every step)
    for l = 1..L, on the l-th sub-batch:
        d   = momentum direction of grad f(x') with buffer u      (Nesterov: u <- m u + grad, d = grad + m u)
        x'  <- x' - eta' (d - gamma_t (x - x')) + sqrt(2 eta') eps N(0, I)
        mu  <- beta1 mu + (1 - beta1) x'                          (exponential average, beta1 = `ema`)
    x   <- x - eta D,  D = momentum direction of g = x - mu with a buffer kept across steps

with eta = ``lr``, eta' = ``inner_lr``, L = ``inner_steps``, eps = ``noise``, m = ``momentum`` (one
value for both loops, as in the code; ``nesterov`` False gives heavy-ball directions d = u). The outer
step uses g = x - mu without the factor gamma (the code absorbs it in eta). The noise scale is the
code's eps / sqrt(0.5 eta') * eta' = sqrt(2 eta') eps (Algorithm 1 writes sqrt(eta') eps: a factor
sqrt(2), immaterial at the papers' eps = 1e-4). The noise is drawn through bench.nn.noise, one
N(0, I) tensor per inner step and parameter, in model.parameters() order, replica r's slice from
its own generator, so a seed's update does not depend on the seeds beside it.

Effective epochs. `step` receives one minibatch of L * B examples per replica (a claim sets
batch_size = L * B) and splits it, in order, into L sub-batches of B for the L inner steps: every
example's gradient is evaluated exactly once per harness epoch, so a harness epoch is one effective
epoch and equal epochs are equal gradient evaluations. Convention: L gradients per outer step. The
gradient at the outer point is the first inner step's (x' = x there); the code's extra gradient at x
on a further minibatch, which its outer step discards when L > 0, is not evaluated (under the code's
L + 1 convention the same updates would count (L + 1) / L times the epochs). The returned
`batch_objective` is h at the outer point on the first sub-batch.

Choices where the two official codes differ: the outer Nesterov momentum is the Python port's (the
Lua code used for the paper steps x <- x - eta g without momentum); scoping counts outer steps as
the Lua code does (the port never advances its counter); the outer momentum buffer starts at zero
(the port starts it at the first minibatch gradient).

Defaults: the code's (python/train.py: lr 0.1, Nesterov momentum 0.9; optim.py: inner lr 0.1,
beta1 0.75) and its README's MNIST command (L = 20, gamma0 = 1e-4, scoping gamma1 = 1e-3, eps = 1e-4).
`tunable`: the outer ``lr`` only, as for SGD. Raises ConfigError when inner_steps is not a positive
integer, and when a minibatch's size is not a multiple of L.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.mlp import Network
from bench.nn import noise
from bench.workloads.method import Method, register


def momentum_direction(grad: Tensor, buffer: Tensor, momentum: float, nesterov: bool) -> Tensor:
    """torch.optim.SGD's direction with dampening 0: buffer <- momentum buffer + grad (in place),
    then grad + momentum buffer (Nesterov) or buffer (heavy ball). With a zero buffer and momentum 0
    it is grad itself."""
    buffer.mul_(momentum).add_(grad)
    return torch.add(grad, buffer, alpha=momentum) if nesterov else buffer.clone()


@register("entropy_sgd", family=("mlp", "convnet"),
          defaults={"lr": 0.1, "momentum": 0.9, "nesterov": True, "inner_steps": 20, "inner_lr": 0.1,
                    "gamma0": 1e-4, "gamma1": 1e-3, "noise": 1e-4, "ema": 0.75})
class EntropySGD(Method):
    model: Network

    def __init__(self, model: Network, **hparams: Any):
        super().__init__(model, **hparams)
        if not isinstance(self.inner_steps, int) or self.inner_steps < 1:
            raise ConfigError(f"entropy_sgd: inner_steps (L, the SGLD steps per outer step) must be an integer >= 1; "
                              f"got {self.inner_steps!r}")
        self.params = list(model.parameters())
        self.velocity = [torch.zeros_like(p) for p in self.params]  # the outer momentum buffer
        self.outer_steps = 0

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One outer step on x (R, L * B, D) (labels y (R, L * B)): L SGLD steps on consecutive
        sub-batches of B, then the outer step. Returns h at the outer point on the first sub-batch, (R,)."""
        n, steps = x.shape[1], self.inner_steps
        if n % steps:
            raise ConfigError(f"entropy_sgd splits each minibatch into inner_steps = {steps} sub-batches, but got "
                              f"{n} examples, not a multiple of {steps}: set the claim's batch_size to "
                              f"{steps} x the sub-batch size (e.g. {steps} x 128 = {steps * 128})")
        b = n // steps
        anchor = [p.detach().clone() for p in self.params]
        mean = [p.clone() for p in anchor]
        inner_velocity = [torch.zeros_like(p) for p in self.params]
        gamma = self.gamma0 * (1.0 + self.gamma1) ** self.outer_steps
        scale = math.sqrt(2.0 * self.inner_lr) * self.noise
        objective = None
        for i in range(steps):
            h = self.model.objective(x[:, i * b:(i + 1) * b], None if y is None else y[:, i * b:(i + 1) * b])
            grads = torch.autograd.grad(h.sum(), self.params)  # replicas have disjoint parameters
            objective = h.detach() if objective is None else objective
            with torch.no_grad():
                for p, g, u, a, m in zip(self.params, grads, inner_velocity, anchor, mean):
                    d = momentum_direction(g, u, self.momentum, self.nesterov).add_(p - a, alpha=gamma)
                    p.add_(d, alpha=-self.inner_lr).add_(noise.randn(p.shape, p), alpha=scale)
                    m.mul_(self.ema).add_(p, alpha=1.0 - self.ema)
        with torch.no_grad():
            for p, a, m, v in zip(self.params, anchor, mean, self.velocity):
                p.copy_(a).add_(momentum_direction(a - m, v, self.momentum, self.nesterov), alpha=-self.lr)
        self.outer_steps += 1
        return {"batch_objective": objective}
