"""Workload of normalising flows (``flow``, bench/models/flow.py), for training data with missing
values (NaN; a claim's ``missing_rate`` masks the training split, bench.engine.train.prepare_data).
Reads real-valued data (transform 'unit_interval', or 'none' for data stored as floats); ``prepare``
sets the flow's standardisation from the observed training values.

* 'll', with 'll_sem': log p(x) per example in nats. On complete data (the test split, the
  verdicts' metric) the flow's exact log-density (change of variables). On a split with missing
  values (the validation split a tuning run carves from masked training data, which only the
  tuning reads) the observed-data log-likelihood log p(x_o) is not tractable for a flow: it is the
  importance-sampling estimate log (1/K) sum_k p(x_o, x_m^k) / q(x_m^k), x_m^k ~ q = the product of
  each missing value's N(observed mean, observed variance), K the evaluation's k, float64 (a
  stochastic lower bound in expectation, tightening with K).
* 'imputation_rmse': the method's imputation error (bench.workloads.imputation: a fixed MCAR mask
  hides half the observed entries of x, the method's `impute` fills them in: VGI by its Gibbs
  chains, mean imputation by the observed training means); the root mean squared error over the
  hidden entries (in the data's units). A ConfigError when the method imputes nothing.

Health: 'll' never moving on the test split.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.flow import Flow
from bench.nn import noise
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, flat_curve
from bench.workloads.imputation import imputation_rmse
from bench.workloads.method import Method


def observed_log_prob(model: Flow, x: Tensor, k: int) -> Tensor:
    """log p(x_o) per example of x (R, N, D) (NaN = missing): exact where nothing is missing, else
    the K-sample importance-sampling estimate of the module docstring; (R, N) float64."""
    x = x.to(torch.float64)
    missing = torch.isnan(x)
    if not missing.any():
        return model.log_prob(x)
    r, n, d = x.shape
    centre, scale = model.observed_mean[:, None, None], model.observed_sd[:, None, None]  # (R, 1, 1, D)
    eps = noise.randn((r, k, n, d), x)
    draws = torch.where(missing.unsqueeze(1), centre + scale * eps, x.unsqueeze(1))  # (R, K, N, D)
    log_q = (missing.unsqueeze(1) * (-0.5 * (math.log(2 * math.pi) + eps.square()) - scale.log())).sum(-1)
    log_w = model.log_prob(draws.reshape(r, k * n, d)).reshape(r, k, n) - log_q
    return log_w.logsumexp(1) - math.log(k)


@register_workload("flow")
class FlowWorkload(Workload):
    transforms = ("unit_interval", "none")

    def prepare(self, model: Flow, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.initialize_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll",)  # on the complete test split; see the module docstring for a split with missing values

    def health_checks(self, model: dict) -> list[Check]:
        return [flat_curve("ll", "test")]

    @torch.no_grad()
    def metrics(self, model: Flow, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        def impute(holed: Tensor) -> Tensor:
            imputed = method.impute(holed)
            if imputed is None:
                raise ConfigError(f"method {method.name!r} imputes nothing (Method.impute); the flow workload's "
                                  f"imputation_rmse needs it: give it an `impute`")
            return imputed

        return {**with_sem("ll", observed_log_prob(model, x, k)), "imputation_rmse": imputation_rmse(impute, x)}
