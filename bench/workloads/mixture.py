"""Workload of mixtures of multivariate Bernoullis (``bernoulli_mixture`` family).

Protocol: 'll' is the exact log p(x) per example (logsumexp over the K components, float64; no
estimator, so the evaluation K plays no part), with its standard error over the evaluated examples
('ll_sem'); 'empty_components' counts the components whose mixing weight pi_k is below
EMPTY_SHARE / K (a component holding under a thousandth of an equal share of the data: in practice
one that won no example and has pi_k = 0). Static binary data only (transform 'none'): EM's
monotone objective, checked below, holds on a fixed training set. The data-dependent
initialisation (``init: data``) draws its starting examples from the training set in `prepare`.

Health (bench.workloads.health): a test log-likelihood that blows up or never moves; a seed that
ends with more than MAX_EMPTY_FRACTION of its components empty (the model has collapsed onto fewer
components than the claim names); and, in full-batch runs (one step per epoch, so that every step
sees the same data), a training 'map_objective' that decreases by more than MONOTONE_TOLERANCE of
its magnitude between two iterations, which EM never does (bench.workloads.monotone.em_checks).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from bench.models.mixture import BernoulliMixture
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, Finding
from bench.workloads.method import Method
from bench.workloads.monotone import em_checks

EMPTY_SHARE = 1e-3  # a component with pi_k < EMPTY_SHARE / K is empty
MAX_EMPTY_FRACTION = 0.1  # more empty components than this fraction of K: degenerate


def empty_components(model: BernoulliMixture) -> Tensor:
    """Per replica, the number of components with pi_k < EMPTY_SHARE / K: (R,) float."""
    pi = torch.softmax(model.mixing_logits, dim=-1)
    return (pi < EMPTY_SHARE / model.components).sum(-1).to(torch.float64)


def too_many_empty(components: int, metric: str = "empty_components", split: str = "test") -> Check:
    """Degenerate when a seed ends with more than MAX_EMPTY_FRACTION of its `components` empty."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        sel = rows[(rows.split == split) & (rows.metric == metric)]
        out = []
        for seed, g in sel.groupby("seed"):
            last = float(g.sort_values("step").value.iloc[-1])
            if last > MAX_EMPTY_FRACTION * components:
                out.append(Finding("empty components", "degenerate", metric, int(seed),
                                   f"{last:.0f} of {components} components hold no data at the last evaluation"))
        return out

    return check


@register_workload("bernoulli_mixture")
class BernoulliMixtureWorkload(Workload):
    transforms = ("none",)

    def prepare(self, model: BernoulliMixture, x_train: Tensor, y_train: Tensor | None = None) -> None:
        if model.init == "data":
            model.init_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll",)

    def health_checks(self, model: dict) -> list[Check]:
        return [*em_checks("test", objective="map_objective"), too_many_empty(int(model["layers"][1]))]

    @torch.no_grad()
    def metrics(self, model: BernoulliMixture, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        return {**with_sem("ll", model.log_prob(x)), "empty_components": empty_components(model)}
