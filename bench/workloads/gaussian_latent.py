"""Workload of Gaussian-latent models (``vae`` and ``dlgm`` families).

Protocol: 'll' = the importance-sampled log-likelihood with the encoder q(z | x) as proposal, K
samples per example (IWAE's protocol; float64 accumulation); 'elbo' = mean log w over ELBO_DRAWS
samples per example (the bound of the model's own q, AEVB's Fig. 2 comparison); 'active_units' =
IWAE's count over all stochastic layers (bench.estimators.amortization.active_units), and per layer
'active_units_l<i>' when there are several. ``output_bias: data_mean`` models get their output
bias from the training mean before the first step (IWAE's code). Health: no active latent unit
(degenerate), every unit active (the count is saturated), a test log-likelihood that blows up or
never moves.

A split with missing values (NaN: the validation split a tuning run carves from training data that a
claim's ``missing_rate`` masked; only the tuning reads it) gets the same metrics of the observed
values: 'll' estimates log p(x_o) by importance sampling with the encoder reading the zero-filled
data (bench.workloads.incomplete_data.observed_log_weights), 'elbo' is that bound's mean log w, and the
active units are counted on the zero-filled data. Complete splits are evaluated as before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.estimators.amortization import active_units
from bench.estimators.importance import importance_log_likelihood
from bench.models.vae import GaussianLatentModel
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import (
    Check,
    all_units_active,
    blow_up,
    dead_latents,
    flat_curve,
)
from bench.workloads.method import Method
from bench.workloads.incomplete_data import observed_log_weights

ELBO_DRAWS = 10  # samples per example for the reported ELBO metric
EVAL_CHUNK = 1000  # examples per chunk of the ELBO metric (bounds memory at the paper's 10k test images)


@register_workload("vae", "dlgm")
class GaussianLatentWorkload(Workload):
    def health_checks(self, model: dict) -> list[Check]:
        return [dead_latents(), all_units_active(sum(model["layers"][1:])),
                blow_up("ll", higher_is_better=True, split="test"), flat_curve("ll", "test")]

    def check_transform(self, model: dict, transform: str) -> None:
        super().check_transform(model, transform)
        if transform == "unit_interval" and model.get("likelihood", "bernoulli") == "bernoulli":
            raise ConfigError(f"a Bernoulli likelihood on grey pixels (transform 'unit_interval') is no likelihood of "
                              f"the data: {self.family} model {model}; use transform 'dynamic_binarize' (binarized "
                              f"images) or likelihood 'gaussian'")

    def prepare(self, model: GaussianLatentModel, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.initialize_from_data(x_train)

    @torch.no_grad()
    def metrics(self, model: GaussianLatentModel, method: Method, x: Tensor, k: int,
                y: Tensor | None) -> dict[str, Tensor]:
        log_weights = model.log_weights
        if torch.isnan(x).any():  # an incomplete split: the observed values' metrics (module docstring)
            def log_weights(xs: Tensor, kc: int) -> Tensor:
                return observed_log_weights(model, xs, kc)
        out = with_sem("ll", importance_log_likelihood(log_weights, x, k))
        elbo = torch.cat([log_weights(xs, ELBO_DRAWS).mean(1) for xs in x.split(EVAL_CHUNK, dim=1)], dim=1)
        out["elbo"] = elbo.mean(1)
        counts = [active_units(m) for m in model.posterior_means(x.nan_to_num(0.0))]
        out["active_units"] = torch.stack(counts).sum(0)
        if len(counts) > 1:
            out.update({f"active_units_l{i + 1}": c for i, c in enumerate(counts)})
        return out
