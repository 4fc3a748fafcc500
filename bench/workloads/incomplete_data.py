"""Models fit to data with missing values (NaN): the pieces that the VAE workload's evaluation of an
incomplete split (bench/workloads/gaussian_latent.py), MIWAE (methods/miwae.py), VGI (methods/vgi.py)
and mean imputation (methods/mean_imputation.py) share.

Gaussian-latent models (``vae``, ``dlgm``; bench/models/vae.py):

p(x | z) factorises over the values, so the observed values' likelihood is the product over the
observed ones alone, p(x_o | z) = prod_{j observed} p(x_j | z), and for any proposal q(z | x~)

    log p(x_o) >= E log (1/K) sum_k p(x_o | z_k) p(z_k) / q(z_k | x~),   z_k ~ q(z | x~),

with equality as K grows (Burda et al. 2016; with x~ the zero-filled data this is MIWAE's bound,
Mattei & Frellsen 2019, "MIWAE: deep generative modelling and imputation of incomplete data sets",
ICML; with K = 1 the MVAE's ELBO of Nazabal et al. 2020). The encoder reads x~ = x with each missing
value replaced by `fill` (0 by default, MIWAE's zero imputation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.vae import GaussianLatentModel


def pixel_log_prob(model: GaussianLatentModel, x: Tensor, h: Tensor) -> Tensor:
    """log p(x_j | h) per value, unsummed: x (R, B, D), h (R, K, B, d) -> (R, K, B, D)."""
    a, log_var = model.data._params(h)
    x = x.unsqueeze(1)
    if log_var is None:
        return x * a - F.softplus(a)  # Bernoulli with logits a
    return -0.5 * ((x - a).square() / log_var.exp() + log_var + math.log(2 * math.pi))


def observed_log_weights(model: GaussianLatentModel, x: Tensor, k: int, fill: float = 0.0) -> Tensor:
    """log w_k = log p(x_o | z_k) + log p(z_k) - log q(z_k | x~), z_k ~ q(z | x~), x~ = x with its
    missing (NaN) values at `fill`: (R, K, B) for x (R, B, D). Equal in distribution to
    ``model.log_weights`` on complete x; differentiable (reparameterised) with gradients enabled."""
    observed = torch.isfinite(x)
    filled = torch.where(observed, x, torch.as_tensor(fill, dtype=x.dtype, device=x.device))
    zs, log_q = model.sample_q(filled, k)
    data = (pixel_log_prob(model, filled, model.decoder_input(zs)) * observed.unsqueeze(1)).sum(-1)
    return model.log_prior(zs) + data - log_q


def complete_elbo(model: GaussianLatentModel, x: Tensor) -> Tensor:
    """The one-sample ELBO of complete x (R, B, D), the stand-in for log p(x) that VGI and mean
    imputation maximise for a VAE: analytic KL for one stochastic layer (AEVB's estimator B),
    else log w of one sample; (R, B), differentiable in the model's parameters and in x."""
    if len(model.layers) == 2:
        return model.elbo_analytic_kl(x, 1)
    return model.log_weights(x, 1)[:, 0]


def complete_log_density(model: nn.Module, x: Tensor) -> Tensor:
    """What VGI and mean imputation maximise on complete (imputed) x (R, B, D): log p(x), exact for
    factor analysis and flows, the one-sample ELBO for a VAE; (R, B)."""
    if isinstance(model, GaussianLatentModel):
        return complete_elbo(model, x)
    return model.log_prob(x)


class ObservedMoments:
    """The observed training mean and standard deviation (R, D) that VGI and mean imputation
    standardise by and impute with: the model's buffers ``observed_mean``, ``observed_sd``, set from
    the whole training split by the workload's ``prepare`` (factor analysis, flows and Gaussian-latent
    models alike), so that any batch size sees the same values; computed in the model's dtype."""

    model: nn.Module

    def dtype(self) -> torch.dtype:
        """The dtype the methods compute in: the buffers' (a VAE's float32, float64 otherwise)."""
        return self.model.observed_mean.dtype

    def moments(self) -> tuple[Tensor, Tensor]:
        return self.model.observed_mean, self.model.observed_sd
