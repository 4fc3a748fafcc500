"""SGD with (Nesterov) momentum on an MLP or convnet objective: the first-order baseline of Martens & Grosse
(2015, after Sutskever et al. 2013) and of Benzing (2022).

The objective is the model's h(theta) = mean_n -log p(t_n | x_n) + l2/2 ||theta||^2 on the
minibatch, and the step is torch's SGD,

    v <- mu v + grad h,   theta <- theta - lr (grad h + mu v)   (Nesterov; theta <- theta - lr v without),

one call of bench.curvature.mlp.first_order_step per minibatch. torch.optim.SGD acts element-wise,
so the replicas stay independent. Choices the papers leave open (the research notes P1 marks the SGD
baseline's details as unverified): a constant momentum mu instead of Sutskever's schedule
mu_t = min(1 - 2^(-1 - log2(floor(t/250) + 1)), mu_max), whose first 250 steps use mu = 0.5, and
lr and momentum picked by a grid (the claims' notes name it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.curvature.mlp import first_order_step
from bench.models.mlp import Network
from bench.workloads.method import Method, register


@register("sgd", family=("mlp", "convnet"), defaults={"lr": 0.01, "momentum": 0.9, "nesterov": True})
class SGD(Method):
    model: Network

    def __init__(self, model: Network, **hparams: Any):
        super().__init__(model, **hparams)
        self.opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                                   nesterov=self.nesterov and self.momentum > 0)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return {"batch_objective": first_order_step(self.model, self.opt, x, y)}
