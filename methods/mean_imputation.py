"""Mean imputation, then maximum likelihood on the completed data: the ``mean_baseline`` of Simkus,
Rhodes & Gutmann 2023 (JMLR 24, Sec. 6; their experiment configs), for factor analysis and
normalising flows (the update reads only the model's complete-data ``log_prob`` and its
``observed_mean``).

Each missing value (NaN) of the training set is replaced once by the mean of that value's observed
training entries; the factor analyser is then fit by Adam (rate lr) on the mean complete-data
log-likelihood of the completed data, the same density-model update as VGI (methods/vgi.py)
without its imputation chains. The imputed values never change, so the fit is the ML estimate of
a data set whose missing entries sit at the mean, with the variances and covariances shrunk.

The means are the model's ``observed_mean`` (set from the whole training set by the workload's
``prepare``), so any batch size imputes the same values, and new data too (`impute`); the claims
run full batch. Returns 'll_imputed', the mean log p(x~) of the completed data before the update,
in nats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.factor_analysis import FactorAnalysis
from bench.models.flow import Flow
from bench.workloads.method import Method, register


@register("mean_imputation", family=("factor_analysis", "flow"), defaults={"lr": 0.01}, tunable=("lr",))
class MeanImputation(Method):
    model: FactorAnalysis | Flow

    def __init__(self, model: FactorAnalysis | Flow, **hparams):
        super().__init__(model, **hparams)
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        ll = self.model.log_prob(self.impute(x)).mean(1)
        self.opt.zero_grad(set_to_none=True)
        (-ll.sum()).backward()
        self.opt.step()
        return {"ll_imputed": ll.detach()}

    def impute(self, x: Tensor) -> Tensor:
        """x (R, N, D) with each missing (NaN) value replaced by its observed training mean."""
        x = x.to(torch.float64)
        return torch.where(torch.isfinite(x), x, self.model.observed_mean.unsqueeze(1))
