"""Workload of mixtures of Gaussians on principal components (``gaussian_mixture`` family).

Data transform: grey pixels scaled to [0, 1] (transform 'unit_interval'), then projected to the
first P principal components of the training split: ``prepare`` fits the projection on the
training examples the run trains on (its train_subset, without a tuning run's carved validation
examples), in float64, and stores it in the model, which projects every split it is given with it
(bench/models/gaussian_mixture.py). Then ``prepare`` draws the data-dependent initialisation.

Protocol: 'll' is the exact log-density of the projected example, logsumexp over the K components
in float64 (nats per example; no estimator, so the evaluation K plays no part), with its standard
error over the evaluated examples ('ll_sem'), on every evaluated split (train and test).

Health (bench.workloads.health): a test log-likelihood that blows up or never moves; and, for
claims judged on EM's 'll_decrease' (methods/gmm_em.py), a run that is not full-batch
(bench.workloads.monotone.not_full_batch): its consecutive iterations see different minibatches,
whose log-likelihoods need not increase, so the metric cannot test monotonicity there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.gaussian_mixture import GaussianMixture
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check
from bench.workloads.method import Method
from bench.workloads.monotone import em_checks


@register_workload("gaussian_mixture")
class GaussianMixtureWorkload(Workload):
    transforms = ("unit_interval",)

    def prepare(self, model: GaussianMixture, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.fit_projection(x_train)
        model.init_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll",)

    def health_checks(self, model: dict) -> list[Check]:
        return em_checks("test")

    @torch.no_grad()
    def metrics(self, model: GaussianMixture, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        return with_sem("ll", model.log_prob(x))
