"""Reweighted wake-sleep (Bornschein & Bengio, ICLR 2015, arXiv 1406.2751).

For each example x, K samples h_k ~ q(h | x) give self-normalised importance weights
w~_k = softmax_k(log p(x, h_k) - log q(h_k | x)) (constants for the gradient). Then

* wake-p:  sum_k w~_k grad log p(x, h_k)            (a consistent estimate of grad log p(x)),
* wake-q:  sum_k (w~_k - c) grad log q(h_k | x)     (c = 1/K with `q_baseline`, else 0, as in the paper),
* sleep-q: grad log q(h | x) on dreams (x, h) ~ p, every `sleep_every` steps with
           `sleep_every` x B dreams (the code's `sleep_interleave`), sharing the optimizer state.

`sleep_every = 0` selects the phase scheme of the NRWS authors' code instead (rist-ro/argo,
ReweightedWakeSleepOptimizer): every step draws K x B dreams and makes ONE update of
wake-p + 1/2 wake-q + 1/2 sleep-q (mean over the dreams), from that single draw.

Scale convention: the official code (jbornschein/reweighted-ws, learning/models/rws.py and
learning/training.py) *sums* the gradients over the minibatch (and over the dreams) and uses
lr = 1e-3 with the momentum rule m <- 0.95 m + 0.05 lr g. We divide those sums by the batch size
B, so our default lr = 0.1 is the paper's 1e-3 at its B = 100. `q_updates` selects the q phases
("wake+sleep" is the paper's default; "sleep" with K = 1 is classic wake-sleep, see ws.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.models.helmholtz import HelmholtzMachine
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register

Q_UPDATES = ("wake+sleep", "wake", "sleep")


@register(
    "rws",
    family="helmholtz",
    defaults={
        "k": 10,
        "lr": 0.1,
        "optimizer": "momentum_ema",
        "q_updates": "wake+sleep",
        "sleep_every": 2,
        "q_baseline": False,
    },
)
class RWS(Method):
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        if self.q_updates not in Q_UPDATES:
            raise ValueError(f"q_updates={self.q_updates!r}; use one of {Q_UPDATES}")
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)
        self.updates = 0

    def importance_weights(self, log_w: Tensor) -> Tensor:
        """Normalised weights over the K samples (axis 1). BiHM overrides this (sqrt(p/q))."""
        return torch.softmax(log_w, dim=1)

    def apply(self, objective: Tensor, state: list[Tensor]) -> None:
        """One ascent step on a per-replica objective (R,); replicas have disjoint parameters.
        `state` is this step's wake sample, which natural-gradient subclasses estimate Fishers on."""
        self.opt.zero_grad(set_to_none=True)
        (-objective.sum()).backward()
        self.precondition(state)
        self.opt.step()

    def precondition(self, state: list[Tensor]) -> None:
        """Transform the gradients in place before the optimizer step (identity here)."""

    def step(self, x: Tensor) -> dict[str, Tensor]:
        r, b, _ = x.shape
        state, _ = self.model.sample_q(x, self.k)
        log_p = self.model.log_p(state).view(r, self.k, b)
        log_q = self.model.log_q(state).view(r, self.k, b)
        log_w = (log_p - log_q).detach()
        w = self.importance_weights(log_w)
        objective = (w * log_p).sum(1).mean(1)
        q_terms = []
        if "wake" in self.q_updates:
            c = 1.0 / self.k if self.q_baseline else 0.0
            q_terms.append(((w - c) * log_q).sum(1).mean(1))
        joint = self.sleep_every == 0
        if joint and "sleep" in self.q_updates:
            q_terms.append(self.model.log_q(self.model.sample_p(self.k * b)).mean(1))
        objective = objective + sum(q_terms) / len(q_terms) if q_terms else objective
        self.apply(objective, state)
        self.updates += 1
        if not joint and "sleep" in self.q_updates and self.updates % self.sleep_every == 0:
            dreams = self.model.sample_p(self.sleep_every * b)
            self.apply(self.model.log_q(dreams).sum(1) / b, state)
        train_ll = torch.logsumexp(log_w, dim=1).mean(1) - math.log(self.k)
        return {"ll_k": train_ll}
