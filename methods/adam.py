"""Adam (Kingma & Ba, 2015) on an MLP objective: Benzing's (2022) adaptive first-order baseline.
torch's defaults (betas 0.9, 0.999, eps 1e-8); only the learning rate is tuned, as in the paper."""

from __future__ import annotations

import torch

from bench.workloads.method import register
from methods.sgd import FirstOrder


@register("adam", family="mlp", defaults={"lr": 1e-3})
class Adam(FirstOrder):
    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)
