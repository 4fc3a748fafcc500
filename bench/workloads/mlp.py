"""Workload of multilayer perceptrons trained by the optimizers (``mlp`` family): classifiers and
deep autoencoders.

Protocol: per-replica means over the evaluated examples of 'loss' = -log p(t | x) in nats per case
(without the weight cost) and 'error' = the papers' error: for autoencoders the squared
reconstruction error per case sum_d (E[t_d] - x_d)^2 (Martens & Grosse's errtype 'L2'), for
classifiers the misclassification rate. Health: a training objective that blows up beyond 10x its
start, or a training loss pinned near 0 (under 0.1% of its start: the training set is memorised, saturated).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.mlp import MLP
from bench.workloads import Workload, register_workload
from bench.workloads.health import Check, blow_up, pinned_at_zero
from bench.workloads.method import Method

EVAL_CHUNK = 2000


@register_workload("mlp")
class MLPWorkload(Workload):
    tuning_metric = ("loss", False)

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("batch_objective", higher_is_better=False), pinned_at_zero("batch_objective"),
                pinned_at_zero("loss")]

    @torch.no_grad()
    def metrics(self, model: MLP, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        total = {"loss": 0.0, "error": 0.0}
        n = x.shape[1]
        for start in range(0, n, EVAL_CHUNK):
            xs = x[:, start:start + EVAL_CHUNK]
            t = model.target(xs, None if y is None else y[:, start:start + EVAL_CHUNK])
            z = model(xs)
            total["loss"] = total["loss"] + model.nll(z, t).sum(1)
            if model.loss == "categorical":
                err = (z.argmax(-1) != t).to(z.dtype).sum(1)
            else:
                mean = torch.sigmoid(z) if model.loss == "bernoulli" else z
                err = (mean - t).square().sum(-1).sum(1)
            total["error"] = total["error"] + err
        return {name: value / n for name, value in total.items()}
