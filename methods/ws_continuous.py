"""Wake-sleep (Hinton, Dayan, Frey & Neal 1995) for a continuous-latent model: AEVB's baseline.

Kingma & Welling (2014, Sec. 5) compare AEVB with wake-sleep "with the same encoder (recognition
model)". For a Gaussian-latent model, per minibatch of B examples:

* wake: z ~ q(z | x) (a sample; no reparameterisation), ascend log p(x, z) in the generative
  parameters theta (only p's parameters receive this gradient);
* sleep: fantasies (x~, z~) ~ p, ascend log q(z~ | x~) in the recognition parameters phi
  (only q's parameters receive it), one fantasy per minibatch example.

Both phases are one backward pass: the wake term is differentiated with the sample detached and
the sleep term through q only, and p's and q's parameters are disjoint, so their sum's gradient is
exactly the two phase gradients. Optimiser, schedule and weight decay are the VAE's
(methods/vae.py; bench.nn.optim.ascent_step). The training bound returned as 'bound' is the ELBO of
q on the minibatch (mean log w from the wake samples), so curves compare like for like with AEVB.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.estimators.amortization import amortization_gap_metrics
from bench.models.vae import GaussianLatentModel
from bench.nn.optim import OPTIMIZERS, SCHEDULES, ascent_step, check_schedule, make_optimizer
from bench.workloads.method import Method, register


@register("ws_continuous", family="vae", defaults={
    "optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "eps": 1e-8, "weight_decay": 0.0, "schedule": "constant",
    "epoch_size": 0, "gap_examples": 0, "gap_steps": 0,
}, choices={"optimizer": OPTIMIZERS, "schedule": SCHEDULES})
class WakeSleepContinuous(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: GaussianLatentModel

    def __init__(self, model: GaussianLatentModel, **hparams: Any):
        super().__init__(model, **hparams)
        check_schedule(self.schedule, self.epoch_size)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr, beta1=self.beta1, eps=self.eps)
        self.examples = 0  # training examples seen, for the iwae schedule

    def step(self, x: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            zs, log_q = self.model.sample_q(x, 1)
            fantasy_x, fantasy_zs = self.model.sample_p(x.shape[1])
        wake = self.model.log_joint(x, zs)  # (R, 1, B); gradients reach p only (z detached)
        with torch.no_grad():
            elbo = (wake - log_q).mean((1, 2))
        sleep = self.model.log_q(fantasy_x, fantasy_zs)  # (R, 1, B); gradients reach q only (fantasies detached)
        ascent_step(self.opt, wake.sum((1, 2)) + sleep.sum((1, 2)), x.shape[1], lr=self.lr, schedule=self.schedule,
                    examples=self.examples, epoch_size=self.epoch_size, weight_decay=self.weight_decay,
                    decayed=self.model.generative_parameters())
        self.examples += x.shape[1]
        return {"bound": elbo}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        return amortization_gap_metrics(self.model, x, k, self.gap_examples, self.gap_steps)
