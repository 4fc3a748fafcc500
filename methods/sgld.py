"""Stochastic gradient Langevin dynamics (Welling & Teh, "Bayesian Learning via Stochastic Gradient
Langevin Dynamics", ICML 2011, eq. 4) on an MLP's posterior.

One step per minibatch x (R, B, D): the gradient of U(theta) = -(N / B) sum_n log p(t_n | x_n,
theta) + ||theta||^2 / (2 prior_std^2) at the current parameters, then the Langevin update of
bench.nn.langevin (step size ``lr``, temperature, noise-free ``deterministic_steps`` first, the
ring of thinned samples, burn-in; its docstring gives the equations). N is the run's number of
training examples (Method.prepare). The model's own weight cost must be 0
(the prior replaces it; ConfigError otherwise).

Metrics: the Bayesian model average of the posterior samples, its calibration and spread, and the
chain's integrated autocorrelation times (bench.workloads.posterior: ``bma_error``, ``bma_nll``,
``bma_ece``, ``bma_ece_10``, ``mutual_information``, ``iac_ll``, ``iac_prob``, ...). Defaults
(bench.nn.langevin.DEFAULTS): the structured SG-MCMC authors' prior N(0, 0.3^2) and 100 samples.
`tunable`: ``lr``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.models.mlp import MLP
from bench.nn.langevin import DEFAULTS, LangevinChain
from bench.workloads.method import Method, Sampler, register
from bench.workloads.posterior import chain_samplers, posterior_metrics


@register("sgld", family="mlp", defaults=DEFAULTS)
class SGLD(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        self.chain = LangevinChain(self.name, list(model.parameters()), self.hparams, weight_cost=model.l2)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Langevin step on x (R, B, D) (labels y (R, B)); returns the minibatch's mean
        -log p(t | x) at the point stepped from, (R,)."""
        nll = self.model.nll(self.model(x), self.model.target(x, y)).mean(-1)
        grads = torch.autograd.grad((self.training_examples() * nll + self.chain.prior_energy()).sum(), self.chain.params)
        self.chain.advance(grads)
        return {"batch_objective": nll.detach()}

    def predictive_samplers(self, k: int) -> list[Sampler] | None:
        """The chain's kept samples (k unused); None during burn-in."""
        return chain_samplers(self.model, self.chain) or None

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        return posterior_metrics(self.model, self.chain, x, y)
