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
its magnitude between two iterations, which EM never does.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from bench.models.mixture import BernoulliMixture
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, Finding, blow_up, flat_curve
from bench.workloads.method import Method

EMPTY_SHARE = 1e-3  # a component with pi_k < EMPTY_SHARE / K is empty
MAX_EMPTY_FRACTION = 0.1  # more empty components than this fraction of K: degenerate
MONOTONE_TOLERANCE = 1e-9  # relative decrease of EM's objective between iterations that counts as a decrease


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


def decreasing_objective(metric: str = "map_objective") -> Check:
    """Degenerate when, in a full-batch run (every train row has step == epoch), a seed's training
    objective decreases between consecutive iterations by more than MONOTONE_TOLERANCE of its
    magnitude. Minibatch runs see different data at each step and are not checked."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        sel = rows[(rows.split == "train") & (rows.metric == metric)]
        if sel.empty or (sel.step != sel.epoch).any():
            return []
        out = []
        for seed, g in sel.groupby("seed"):
            v = g.sort_values("step").value.to_numpy(float)
            drops = v[:-1] - v[1:]
            worst = int(drops.argmax()) if len(drops) else 0
            if len(drops) and drops[worst] > MONOTONE_TOLERANCE * abs(v[worst]):
                out.append(Finding("objective decreased", "degenerate", metric, int(seed),
                                   f"train {metric} fell from {v[worst]:.10g} to {v[worst + 1]:.10g} at iteration "
                                   f"{worst + 1}; EM never decreases it"))
        return out

    return check


@register_workload("bernoulli_mixture")
class BernoulliMixtureWorkload(Workload):
    transforms = ("none",)

    def prepare(self, model: BernoulliMixture, x_train: Tensor) -> None:
        if model.init == "data":
            model.init_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll",)

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("ll", higher_is_better=True, split="test"), flat_curve("ll", "test"),
                too_many_empty(int(model["layers"][1])), decreasing_objective()]

    @torch.no_grad()
    def metrics(self, model: BernoulliMixture, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        return {**with_sem("ll", model.log_prob(x)), "empty_components": empty_components(model)}
