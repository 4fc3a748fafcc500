"""Workload of factor analysis (``factor_analysis``), for training data with missing values (NaN;
a claim's ``missing_rate`` masks the training split, bench.engine.train.prepare_data). Reads
real-valued data (transform 'unit_interval', or 'none' for data stored as floats); ``prepare`` sets
the model's mean and noise variances from the observed training values. Every metric is exact (no
sampling, so no K) and in float64, on the evaluated examples x:

* 'll': log p(x_o) per example in nats, with 'll_sem': on complete data (the test split) the
  complete-data Gaussian log-likelihood log N(x; mu, W W^T + Psi), the verdicts' metric; on a split
  with missing values (a validation split carved from masked training data) the observed-data
  log-likelihood, the missing entries marginalised out (bench/models/factor_analysis.py);
* 'imputation_rmse': the fitted model's imputation error. A fixed MCAR mask of rate
  IMPUTATION_RATE (seeded by IMPUTATION_SEED, bench.core.missing.mcar) hides observed entries of x;
  each is imputed by its exact conditional mean E[x_j | x_o] under the fitted model; the root mean
  squared error over the hidden entries (in the data's units).

Health: 'll' blowing up or never moving on the test split; for EM in full-batch runs, its
'batch_ll' decreasing between iterations (bench.workloads.monotone.em_checks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.core.missing import mcar
from bench.models.factor_analysis import FactorAnalysis
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check
from bench.workloads.method import Method
from bench.workloads.monotone import em_checks

IMPUTATION_RATE = 0.5
IMPUTATION_SEED = 20200428  # the test seed of Simkus, Rhodes & Gutmann 2023 (their experiment configs)


def imputation_rmse(model: FactorAnalysis, x: Tensor, rate: float = IMPUTATION_RATE, seed: int = IMPUTATION_SEED) -> Tensor:
    """RMSE of the exact conditional-mean imputation of the entries of x (R, N, D) that a fixed MCAR
    mask of `rate` hides (only entries observed in x count): (R,) float64, NaN when none is hidden."""
    x = x.to(torch.float64)
    hidden = torch.as_tensor(mcar(tuple(x.shape[1:]), rate, seed), device=x.device) & torch.isfinite(x)
    imputed = model.conditional_mean(torch.where(hidden, torch.nan, x))
    squared = torch.where(hidden, imputed - x, 0.0).square().sum((1, 2))
    return (squared / hidden.sum((1, 2))).sqrt()


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
        return {**with_sem("ll", model.log_prob(x)), "imputation_rmse": imputation_rmse(model, x)}
