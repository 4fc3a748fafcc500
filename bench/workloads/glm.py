"""Workload of the Bayesian GLMs (``bayesian_glm``, bench/models/glm.py), in nats, float64.

On the evaluated rows x (N of them):

* 'elbo': (E_q sum_n log p(y_n | x_n, theta) - KL(q || prior)) / N, the evidence lower bound of
  those rows per example; on the training split, the objective the methods ascend. Exact (closed
  form) for the linear model; for the logistic model the expected log-likelihood is a Monte Carlo
  mean over K draws of q (the run's eval_k; float64).
* linear model only, against the exact posterior of the training rows (fitted in ``prepare``):
  'kl_posterior' = KL(q || p(theta | training data)) (exact; on the training split it is
  log p(data) minus the ELBO, times N), and 'mean_error' = max_i |mu_i - m_i|, m the posterior mean.
  For a diagonal q both are minimised at mu = m, variances 1 / Lambda_ii (the mean-field optimum of
  a Gaussian), where 'mean_error' is 0 and 'kl_posterior' is 0.5 (sum_i log Lambda_ii - log|Lambda|); for a
  full-covariance q (``covariance: full``) at q = the posterior, where both are 0.

Float rows are read as stored (transform 'unit_interval' divides only uint8 pixels by 255). The
tuning scores 'elbo' on the validation rows carved from the training set (the ELBO q gives them).
Health: the training ELBO blowing up or never moving.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.glm import BayesianGLM
from bench.workloads import Workload, register_workload
from bench.workloads.health import Check, blow_up, flat_curve
from bench.workloads.method import Method


@register_workload("bayesian_glm")
class BayesianGLMWorkload(Workload):
    transforms = ("unit_interval",)
    tuning_metric = ("elbo", True)

    def prepare(self, model: BayesianGLM, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.fit_posterior(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("elbo", "kl_posterior", "mean_error") if model.get("likelihood") == "linear" else ()

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("elbo", higher_is_better=True), flat_curve("elbo", "train")]

    @torch.no_grad()
    def metrics(self, model: BayesianGLM, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        out = {"elbo": (model.expected_log_likelihood(x, k) - model.kl_to_prior()) / x.shape[1]}
        if model.likelihood == "linear":
            out["kl_posterior"] = model.kl_to_posterior()
            out["mean_error"] = (model.mu - model.posterior_mean).abs().amax(-1)
        return out
