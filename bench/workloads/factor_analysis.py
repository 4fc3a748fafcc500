"""Workload of factor analysis (``factor_analysis``), for training data with missing values (NaN;
a claim's ``missing_rate`` masks the training split, bench.engine.train.prepare_data). Reads
real-valued data (transform 'unit_interval', or 'none' for data stored as floats); ``prepare`` sets
the model's mean and noise variances from the observed training values. Every metric is exact (no
sampling, so no K) and in float64, on the evaluated examples x:

* 'll': log p(x_o) per example in nats, with 'll_sem': on complete data (the test split) the
  complete-data Gaussian log-likelihood log N(x; mu, W W^T + Psi), the verdicts' metric; on a split
  with missing values (a validation split carved from masked training data) the observed-data
  log-likelihood, the missing entries marginalised out (bench/models/factor_analysis.py);
* 'imputation_rmse': the fitted model's imputation error (bench.workloads.imputation: a fixed MCAR
  mask hides half the observed entries of x); each is imputed by its exact conditional mean
  E[x_j | x_o] under the fitted model; the root mean squared error over the hidden entries (in the
  data's units).

Health: 'll' blowing up or never moving on the test split; for EM in full-batch runs, its
'batch_ll' decreasing between iterations (bench.workloads.monotone.em_checks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.factor_analysis import FactorAnalysis
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check
from bench.workloads.imputation import imputation_rmse
from bench.workloads.method import Method
from bench.workloads.monotone import em_checks


@register_workload("factor_analysis")
class FactorAnalysisWorkload(Workload):
    transforms = ("unit_interval", "none")

    def prepare(self, model: FactorAnalysis, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.initialize_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll", "imputation_rmse")

    def health_checks(self, model: dict) -> list[Check]:
        return em_checks("test", objective="batch_ll")

    @torch.no_grad()
    def metrics(self, model: FactorAnalysis, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        return {**with_sem("ll", model.log_prob(x)), "imputation_rmse": imputation_rmse(model.conditional_mean, x)}
