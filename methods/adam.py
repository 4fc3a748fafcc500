"""Adam (Kingma & Ba, 2015) on an MLP or convnet objective: Benzing's (2022) adaptive first-order baseline.

The objective is the model's h(theta) = mean_n -log p(t_n | x_n) + l2/2 ||theta||^2 on the
minibatch (as for SGD, methods/sgd.py), and the step is torch's Adam (Algorithm 1) with its defaults
beta1 = 0.9, beta2 = 0.999, eps = 1e-8; only the learning rate is tuned, as in the paper. One call of
bench.curvature.mlp.first_order_step per minibatch; Adam acts element-wise, so the replicas stay
independent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.curvature.mlp import first_order_step
from bench.models.mlp import Network
from bench.workloads.method import Method, register


@register("adam", family=("mlp", "convnet"), defaults={"lr": 1e-3})
class Adam(Method):
    model: Network

    def __init__(self, model: Network, **hparams: Any):
        super().__init__(model, **hparams)
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return {"batch_objective": first_order_step(self.model, self.opt, x, y)}
