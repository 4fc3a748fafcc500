"""SGD with (Nesterov) momentum on an MLP objective: the first-order baseline of Martens & Grosse
(2015, after Sutskever et al. 2013) and of Benzing (2022).

The objective is the model's h(theta) = mean_n -log p(t_n | x_n) + l2/2 ||theta||^2 on the
minibatch. torch.optim.SGD acts element-wise, so the replicas stay independent. Choices the papers
leave open (CLAIMS.md P1 marks the SGD baseline's details as unverified): a constant momentum
instead of Sutskever's schedule mu_k = min(1 - 2^(-1 - log2(floor(k/250) + 1)), mu_max), whose
first 250 steps use mu = 0.5, and lr and momentum picked by a grid (the claims' notes name it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.models.mlp import MLP
from bench.workloads.method import Method, register


class FirstOrder(Method):
    """One torch optimizer step on h per minibatch; subclasses choose the optimizer."""

    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        self.opt = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        self.opt.zero_grad(set_to_none=True)
        h = self.model.objective(x, y)
        h.sum().backward()  # replicas have disjoint parameters: each gets its own gradient
        self.opt.step()
        return {"batch_objective": h.detach()}


@register("sgd", family="mlp", defaults={"lr": 0.01, "momentum": 0.9, "nesterov": True})
class SGD(FirstOrder):
    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum,
                               nesterov=self.nesterov and self.momentum > 0)
