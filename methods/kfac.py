"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse, ICML 2015, arXiv 1503.05671),
block-diagonal variant, with the setup of the authors' Matlab release (KFAC_demo_2.m,
nnet_train_2.m; the research notes P1).

Each step, on a minibatch of B cases:

1. Statistics: on the first ``stats_fraction`` x B cases (the code's ratio_sample = 1/8; the batch
   is a random draw, so these are too), targets t ~ p(t | x) are drawn from the model (the true
   Fisher, not the empirical one) and A_l = E[a~ a~^T], G_l = E[g g^T] enter running averages
   with weight min(1 - 1/t, ``decay``) on the old value at update t (maxfade_stats = 0.95).
2. Inverses, refreshed at updates 1-3 and every ``inverse_every`` updates (T3 = 20), with factored
   Tikhonov damping (Sec. 6.3): (A + pi gamma I)^-1 and (G + gamma/pi I)^-1, pi the trace-norm
   ratio the code uses (bench.curvature.pi_correction).
3. Proposal Delta = -G^-1 V A^-1 per layer, V = dh/d[W, b], h the minibatch objective with the
   weight cost eta = l2.

``adaptive: true`` is the paper's method (Sec. 6-7, the code's defaults):

* the update is delta = alpha Delta + mu delta_prev, with (alpha, mu) minimising the quadratic
  model M(d) = 1/2 d^T (F + (lambda + eta) I) d + grad h^T d in that 2-D subspace, F the exact
  Fisher (= GGN) of the whole minibatch (ratio_BV = 1), by Jacobian-vector products;
* lambda (initial ``damping``, 150 for autoencoders) follows the Levenberg-Marquardt rule every
  T1 = 5 steps: rho = (h(theta) - h(theta + delta)) / -M(delta) on the same minibatch; lambda is
  multiplied by (19/20)^5 when rho > 3/4, by (20/19)^5 when rho < 1/4 (or h went up, or NaN);
* gamma starts at sqrt(lambda + eta) and every T2 = 20 steps picks, per replica, the one of
  {gamma (19/20)^10, gamma, gamma (20/19)^10} (clamped to [sqrt(eta), 1], the code's bounds)
  whose update has the lowest M(delta).

``adaptive: false`` is K-FAC as Benzing (2022) runs it: a constant learning rate ``lr``, constant
damping lambda = ``damping`` with gamma = sqrt(lambda + eta), no momentum (his script's default).

Not implemented (the research notes P1): the block-tridiagonal inverse (the code's default; the paper's
C1.2 ablation says it helps "somewhat"), iterate averaging, and the exponentially growing
minibatch (the harness trains at a fixed batch size). Per replica: lambda, gamma, alpha, mu and
every statistic; nothing is shared between seeds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bench.curvature import mlp as C
from bench.models.mlp import MLP
from bench.workloads.method import Method, register

LAMBDA_EVERY, GAMMA_EVERY = 5, 20  # T1, T2 of nnet_train_2.m
DROP = 19 / 20  # lambda drop; its inverse is the boost (the code's drop/boost)
FIRST_REFRESHES = 3  # the code also refreshes the inverses at iterations 1-3
GAMMA_MAX = 1.0  # the code's gamma_max ("completely arbitrary ... use with caution")


@register("kfac", family="mlp", defaults={
    "adaptive": True, "lr": 1.0, "damping": 150.0, "decay": 0.95, "inverse_every": 20, "stats_fraction": 0.125,
}, tunable=("lr", "damping"))
class KFAC(Method):
    model: MLP

    @classmethod
    def tuned_knobs(cls, hparams: dict[str, Any]) -> tuple[str, ...]:
        """The adaptive method sets its own step (alpha, mu) and adapts lambda from its start, so
        only the initial damping is searched; the fixed variant searches lr and damping."""
        return ("damping",) if hparams["adaptive"] else cls.tunable

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        self.lam = torch.full((model.replicas,), float(self.damping),
                              dtype=model.weights[0].dtype, device=model.weights[0].device)
        self.gamma = (self.lam + model.l2).sqrt()
        self.factors = C.RunningAverage(self.decay)
        self.inverses: list[tuple[Tensor, Tensor]] = []
        self.previous: list[Tensor] | None = None
        self.updates = 0  # updates made so far: the t that T1, T2 and T3 count

    def _inverses(self, factors: list[Tensor], gamma: Tensor) -> list[tuple[Tensor, Tensor]]:
        n = len(factors) // 2
        return [C.kfac_inverses(a, g, gamma) for a, g in zip(factors[:n], factors[n:])]

    def _quadratic_step(self, x: Tensor, grad: list[Tensor], proposal: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """delta = alpha Delta + mu delta_prev minimising M in span{Delta, delta_prev}; returns
        (delta, M(delta)) per replica."""
        dirs = [proposal] if self.previous is None else [proposal, self.previous]
        n = len(dirs)
        gram = torch.stack([torch.stack([C.inner(u, v) for v in dirs], -1) for u in dirs], -2)
        curv = (C.ggn_gram(self.model, x, dirs) + (self.lam + self.model.l2).view(-1, 1, 1) * gram).double()
        b = torch.stack([C.inner(grad, d) for d in dirs], -1).double()
        ridge = 1e-10 * curv.diagonal(dim1=-2, dim2=-1).mean(-1).view(-1, 1, 1) * torch.eye(n, dtype=curv.dtype, device=curv.device)
        coef = -torch.linalg.solve_ex(curv + ridge, b)[0]  # ridge: Delta may be parallel to delta_prev
        dtype = proposal[0].dtype
        value = (0.5 * (coef * b).sum(-1)).to(dtype)  # M at its minimiser: 1/2 coef . b
        coef = coef.to(dtype)
        delta = [sum(coef[:, i].view(-1, 1, 1) * dirs[i][l] for i in range(n)) for l in range(len(proposal))]
        return delta, value

    def _gamma_candidates(self) -> list[Tensor]:
        if self.updates % GAMMA_EVERY:
            return [self.gamma]
        step = math.sqrt(DROP) ** GAMMA_EVERY
        low = (self.gamma * step).clamp_min(math.sqrt(self.model.l2))
        return [low, self.gamma, (self.gamma / step).clamp_max(GAMMA_MAX)]

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        self.updates += 1
        m = max(1, round(self.stats_fraction * x.shape[1]))
        stats = C.sampled_statistics(self.model, x[:, :m])
        factors = self.factors.update([C.second_moment(a) for a in stats.inputs] + [C.second_moment(g) for g in stats.grads])
        h, grad, _ = C.objective_gradient(self.model, x, y)
        refresh = self.updates <= FIRST_REFRESHES or self.updates % self.inverse_every == 0

        if not self.adaptive:
            if refresh:
                self.inverses = self._inverses(factors, self.gamma)
            delta = [-self.lr * C.precondition(v, ai, gi) for v, (ai, gi) in zip(grad, self.inverses)]
            C.apply_update(self.model, delta)
            return {"batch_objective": h}

        trials = []  # per candidate gamma: (gamma, inverses, delta, M(delta))
        for gamma in self._gamma_candidates() if refresh else [self.gamma]:
            inverses = self._inverses(factors, gamma) if refresh else self.inverses
            proposal = [-C.precondition(v, ai, gi) for v, (ai, gi) in zip(grad, inverses)]
            trials.append((gamma, inverses, *self._quadratic_step(x, grad, proposal)))
        # per replica, the candidate with the lowest model value
        best = torch.stack([t[3] for t in trials]).nan_to_num(nan=torch.inf).argmin(0)
        rows = torch.arange(len(best), device=best.device)

        def choose(tensors: list[Tensor]) -> Tensor:
            return torch.stack(tensors)[best, rows]

        self.gamma = choose([t[0] for t in trials])
        self.inverses = [(choose([t[1][l][0] for t in trials]), choose([t[1][l][1] for t in trials]))
                         for l in range(len(grad))]
        delta = [choose([t[2][l] for t in trials]) for l in range(len(grad))]
        value = choose([t[3] for t in trials])
        C.apply_update(self.model, delta)
        self.previous = delta
        if self.updates % LAMBDA_EVERY == 0:
            with torch.no_grad():
                h_new = self.model.objective(x, y)
            rho = torch.where(h_new > h, -torch.inf, (h - h_new) / -value)
            boost = (rho < 0.25) | rho.isnan()
            self.lam = torch.where(boost, self.lam / DROP**LAMBDA_EVERY,
                                   torch.where(rho > 0.75, self.lam * DROP**LAMBDA_EVERY, self.lam))
        return {"batch_objective": h, "lambda": self.lam.clone(), "gamma": self.gamma.clone()}
