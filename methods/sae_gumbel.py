"""Latplan's state autoencoder trained by Gumbel-softmax (Asai & Fukunaga, AAAI 2018, Sec. 3;
Jang, Gu & Poole 2017): Adam on the per-example loss

    L(x) = BCE(x, decoder(y)) + KL(q(. | x) || uniform),   y = Gumbel-softmax(encoder(x), tau_t)

(nats per image; bench/models/latplan.py), its mean over the minibatch per replica. The
temperature falls geometrically from tau_start to tau_end over the first anneal_updates updates
and stays there: tau_t = tau_start (tau_end / tau_start)^min(t / anneal_updates, 1) (the research
notes' 5 -> 0.7 [R?]). Returns 'loss' and 'bce' on the minibatch before the step, (R,) each.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.latplan import StateAutoencoder
from bench.workloads.method import Method, register


@register("sae_gumbel", family="latplan",
          defaults={"lr": 1e-3, "tau_start": 5.0, "tau_end": 0.7, "anneal_updates": 1000})
class SAEGumbel(Method):
    model: StateAutoencoder

    def __init__(self, model: StateAutoencoder, **hparams: Any):
        super().__init__(model, **hparams)
        if not 0 < self.tau_end <= self.tau_start or self.anneal_updates < 1:
            raise ConfigError(f"sae_gumbel: need 0 < tau_end <= tau_start and anneal_updates >= 1; got "
                              f"{self.tau_start}, {self.tau_end}, {self.anneal_updates}")
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        self.updates = 0

    def temperature(self) -> float:
        """tau at the current update (see the module docstring)."""
        frac = min(self.updates / self.anneal_updates, 1.0)
        return self.tau_start * (self.tau_end / self.tau_start) ** frac

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        self.model.train()  # batch norm on minibatch statistics (the workload evaluates in eval mode)
        logits = self.model.logits(x)
        bce = self.model.cross_entropy(x, self.model.decode(self.model.relaxed(logits, self.temperature())))
        loss = (bce + self.model.kl_uniform(logits)).mean(1)  # (R,)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # replicas have disjoint parameters
        self.opt.step()
        self.updates += 1
        return {"loss": loss.detach(), "bce": bce.detach().mean(1)}
