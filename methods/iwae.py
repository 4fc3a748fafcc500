"""Importance weighted autoencoder (Burda, Grosse & Salakhutdinov, ICLR 2016).

The step ascends the k-sample bound (paper eq. 8)

    L_k = log (1/k) sum_k w_k,   w_k = p(x, z_k) / q(z_k | x),   z_k ~ q(z | x) reparameterised,

summed over the minibatch. Its gradient is sum_k w~_k grad log w_k with the normalised weights
w~_k held constant (eq. 14); autograd through logsumexp gives exactly that, computed stably
(logsumexp subtracts the maximum). With k = 1 it is the VAE's sampled-KL bound (tested).

Defaults follow the official code (yburda/iwae): Adam with beta1 = 0.99 and eps = 1e-4 (the paper's
text says beta1 = 0.9; methods/vae.py says what else the optimiser keeps or changes), lr 1e-3,
and the 3^i-epoch schedule (bench.nn.optim.iwae_learning_rate) when ``schedule: iwae`` is set with
``epoch_size``. ``weight_decay`` and ``gap_examples`` / ``gap_steps`` are the VAE's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bench.estimators.amortization import amortization_gap_metrics
from bench.models.vae import GaussianLatentModel
from bench.nn.optim import OPTIMIZERS, SCHEDULES, ascent_step, check_schedule, make_optimizer
from bench.workloads.method import Method, register


@register("iwae", family="vae", defaults={
    "optimizer": "adam", "lr": 1e-3, "beta1": 0.99, "eps": 1e-4, "weight_decay": 0.0, "schedule": "constant",
    "epoch_size": 0, "gap_examples": 0, "gap_steps": 0, "k": 5,
}, choices={"optimizer": OPTIMIZERS, "schedule": SCHEDULES})
class IWAE(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: GaussianLatentModel

    def __init__(self, model: GaussianLatentModel, **hparams: Any):
        super().__init__(model, **hparams)
        check_schedule(self.schedule, self.epoch_size)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr, beta1=self.beta1, eps=self.eps)
        self.examples = 0  # training examples seen, for the iwae schedule

    def bound(self, x: Tensor) -> Tensor:
        """L_k per example on x (R, B, D): (R, B)."""
        log_w = self.model.log_weights(x, self.k)  # (R, k, B)
        return torch.logsumexp(log_w, dim=1) - math.log(self.k)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        bound = self.bound(x)
        ascent_step(self.opt, bound.sum(1), x.shape[1], lr=self.lr, schedule=self.schedule,
                    examples=self.examples, epoch_size=self.epoch_size, weight_decay=self.weight_decay,
                    decayed=self.model.generative_parameters())
        self.examples += x.shape[1]
        return {"bound": bound.detach().mean(1)}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        return amortization_gap_metrics(self.model, x, k, self.gap_examples, self.gap_steps)
