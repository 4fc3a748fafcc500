"""Workload of sigmoid belief networks with a recognition network (``helmholtz`` family).

Protocol (DESIGN.md, "The workload/method boundary"): 'll' is the importance-sampled log-likelihood with K samples
per example, accumulated in float64 (bench.estimators.importance), with the recognition network
q(h | x) as proposal unless the method trains none and supplies its own (the mean-field method's
factorised posterior); 'll_exact' is the exact log p(x) by enumeration when the hidden layers are
small enough (the toy claims are then judged without estimator bias). Binary data only.
Health: a test log-likelihood that blows up or never moves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.importance import importance_log_likelihood
from bench.estimators.sbn import MAX_ENUMERATED_HIDDEN, exact_log_likelihood
from bench.models.helmholtz import HelmholtzMachine
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, blow_up, flat_curve
from bench.workloads.method import Method


@register_workload("helmholtz")
class HelmholtzWorkload(Workload):
    transforms = ("none", "dynamic_binarize")

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("ll", higher_is_better=True, split="test"), flat_curve("ll", "test")]

    def metrics(self, model: HelmholtzMachine, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        chunks = method.proposal(x) or [(x, model.log_weights)]
        ll = torch.cat([importance_log_likelihood(log_weights, xc, k) for xc, log_weights in chunks], dim=1)
        out = with_sem("ll", ll)
        if sum(model.layers[1:]) <= MAX_ENUMERATED_HIDDEN:
            out["ll_exact"] = exact_log_likelihood(model, x).mean(1)
        return out
