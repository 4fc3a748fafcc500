"""Workload of binary restricted Boltzmann machines (``rbm`` family).

Protocol: 'll' = log p(v) = -F(v) - log Z in nats per example, in float64, where log Z is

* **exact** when the smaller layer has at most EXACT_MAX_UNITS units (2^20 hidden states of a
  784-20 RBM, enumerated in chunks; bench.models.rbm), and K is then unused;
* **AIS** otherwise (bench.estimators.ais): K runs from the data-marginal base-rate model through
  AIS_BETAS intermediate distributions (Salakhutdinov & Murray 2008's 14,500-point schedule).
  AIS estimates Z without bias, so log Z^ is low in expectation and 'll' *high*: a stochastic
  upper bound in expectation, unlike the importance-sampled 'll' of the other workloads (a lower
  bound); 'log_z_sd' is the standard deviation of log Z^ over the K runs.

Every evaluation also records 'log_z'. ``prepare`` sets the visible biases (and the AIS base rate)
from the training log-odds (Hinton's practical guide, Sec. 8). Binary data only. Health: a test
log-likelihood that blows up or never moves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.ais import PAPER_BETAS, ais_log_partition, salakhutdinov_murray_betas
from bench.models.rbm import MAX_ENUMERATED, RBM
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, blow_up, flat_curve
from bench.workloads.method import Method

EXACT_MAX_UNITS = MAX_ENUMERATED  # smaller layer's units up to which log Z is enumerated (2^25 states: a GPU's job)
AIS_BETAS = PAPER_BETAS


@register_workload("rbm")
class RBMWorkload(Workload):
    transforms = ("none", "dynamic_binarize")

    def prepare(self, model: RBM, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.initialize_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll", "log_z") if min(model["layers"]) <= EXACT_MAX_UNITS else ()

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("ll", higher_is_better=True, split="test"), flat_curve("ll", "test")]

    @torch.no_grad()
    def metrics(self, model: RBM, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        out = {}
        if self.exact_metrics({"layers": model.layers}):
            log_z = model.log_partition()
        else:
            log_z, out["log_z_sd"] = ais_log_partition(model, k, salakhutdinov_murray_betas(AIS_BETAS).to(x.device))
        out["log_z"] = log_z
        return {**with_sem("ll", model.log_prob(x, log_z)), **out}
