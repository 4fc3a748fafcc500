"""Mean imputation, then maximum likelihood on the completed data: the ``mean_baseline`` of Simkus,
Rhodes & Gutmann 2023 (JMLR 24, Sec. 6; their experiment configs), for factor analysis,
normalising flows and VAEs (the update reads only the model's complete-data ``log_prob``, for a VAE
its one-sample ELBO as VGI's does, bench.workloads.incomplete_data.complete_log_density, and the
observed training means).

Each missing value (NaN) of the training set is replaced once by the mean of that value's observed
training entries; the factor analyser is then fit by Adam (rate lr) on the mean complete-data
log-likelihood of the completed data, the same density-model update as VGI (methods/vgi.py)
without its imputation chains. The imputed values never change, so the fit is the ML estimate of
a data set whose missing entries sit at the mean, with the variances and covariances shrunk.

The means are the model's ``observed_mean`` (set from the whole training set by the workload's
``prepare``; a VAE's in its float32), so any batch size imputes the same values, and new data too
(`impute`). Returns 'll_imputed', the mean log p(x~)
of the completed data before the update, in nats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.factor_analysis import FactorAnalysis
from bench.models.flow import Flow
from bench.models.vae import GaussianLatentModel
from bench.workloads.incomplete_data import ObservedMoments, complete_log_density
from bench.workloads.method import Method, register


@register("mean_imputation", family=("factor_analysis", "flow", "vae"), defaults={"lr": 0.01}, tunable=("lr",))
class MeanImputation(ObservedMoments, Method):
    model: FactorAnalysis | Flow | GaussianLatentModel

    def __init__(self, model: FactorAnalysis | Flow | GaussianLatentModel, **hparams):
        super().__init__(model, **hparams)
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        ll = complete_log_density(self.model, self.impute(x)).mean(1)
        self.opt.zero_grad(set_to_none=True)
        (-ll.sum()).backward()
        self.opt.step()
        return {"ll_imputed": ll.detach()}

    def impute(self, x: Tensor) -> Tensor:
        """x (R, N, D) with each missing (NaN) value replaced by its observed training mean."""
        x = x.to(self.dtype())
        return torch.where(torch.isfinite(x), x, self.moments()[0].unsqueeze(1))
