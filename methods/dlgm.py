"""Stochastic backpropagation for deep latent Gaussian models (Rezende, Mohamed & Wierstra, ICML 2014).

The model is bench/models/dlgm.py (noise xi_l ~ N(0, I) per layer, rank-one-plus-diagonal Gaussian
recognition model). The step descends the paper's free energy (eq. 12), summed over the minibatch:
per example

    F(x) = -E_q[log p(x | h(xi))] + KL(q(xi | x) || N(0, I)),

with the KL in closed form and the expectation from ``k`` reparameterised samples ("stochastic
backpropagation", Sec. 3), plus the Gaussian prior (kappa / 2) ||theta_g||^2 on the generative
parameters theta_g; ``weight_decay`` = kappa / N per example (bench.nn.optim.ascent_step). The
update is the VAE's with analytic KL (methods/vae.py), on the dlgm family; ``kl: sampled`` (the mean
log-weight instead) is allowed too. The defaults differ: Adagrad, the paper's "Adagrad-style"
optimiser (its step size is not stated; we use 0.02, the middle of AEVB's grid), and a weight decay
for kappa = 1.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bench.estimators.amortization import amortization_gap_metrics
from bench.models.vae import GaussianLatentModel
from bench.nn.optim import OPTIMIZERS, SCHEDULES, ascent_step, check_schedule, make_optimizer
from bench.workloads.method import Method, register

KL_ESTIMATORS = ("analytic", "sampled")


@register("dlgm", family="dlgm", defaults={
    "optimizer": "adagrad", "lr": 0.02, "beta1": 0.9, "eps": 1e-10, "weight_decay": 2e-5, "schedule": "constant",
    "epoch_size": 0, "gap_examples": 0, "gap_steps": 0, "k": 1, "kl": "analytic",
}, choices={"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "kl": KL_ESTIMATORS})
class DLGM(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: GaussianLatentModel

    def __init__(self, model: GaussianLatentModel, **hparams: Any):
        super().__init__(model, **hparams)
        check_schedule(self.schedule, self.epoch_size)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr, beta1=self.beta1, eps=self.eps)
        if self.kl not in KL_ESTIMATORS:
            raise ValueError(f"kl {self.kl!r}; use one of {KL_ESTIMATORS}")
        self.examples = 0  # training examples seen, for the iwae schedule

    def bound(self, x: Tensor) -> Tensor:
        """-F per example on x (R, B, D): (R, B)."""
        if self.kl == "analytic":
            return self.model.elbo_analytic_kl(x, self.k)
        return self.model.log_weights(x, self.k).mean(1)  # log_weights is (R, k, B)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        bound = self.bound(x)
        ascent_step(self.opt, bound.sum(1), x.shape[1], lr=self.lr, schedule=self.schedule,
                    examples=self.examples, epoch_size=self.epoch_size, weight_decay=self.weight_decay,
                    decayed=self.model.generative_parameters())
        self.examples += x.shape[1]
        return {"bound": bound.detach().mean(1)}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        return amortization_gap_metrics(self.model, x, k, self.gap_examples, self.gap_steps)
