"""Factor analysis with a leading replica axis (``factor_analysis`` family; Bishop, PRML 2006,
Sec. 12.2.4; Ghahramani & Hinton 1996, "The EM algorithm for mixtures of factor analyzers",
Tech. Rep. CRG-TR-96-1).

``layers = [D, q]``: D observed values, q factors. Per replica,

    z ~ N(0, I_q),   x | z ~ N(W z + mu, Psi),   so   x ~ N(mu, C),  C = W W^T + Psi,   Psi diagonal,

with mu (R, D), W (R, D, q) and log Psi (R, D) as float64 parameters (gradients on: VGI and the
mean-imputation baseline fit them by gradient ascent; EM writes them under no_grad).

**Missing values are NaN.** Every function below reads x (R, N, D) with NaN at the missing entries
and marginalises them out exactly: with o_n the observed indicator of example n and
P_n = I + W^T diag(o_n / Psi) W (q x q), b_n = W^T diag(o_n / Psi) (x_n - mu) (missing terms zero),

    p(z | x_o) = N(P_n^-1 b_n, P_n^-1),
    log p(x_o) = -1/2 (|o_n| log 2 pi + sum_{j in o_n} log Psi_j + log|P_n|
                       + sum_{j in o_n} (x_nj - mu_j)^2 / Psi_j - b_n^T P_n^-1 b_n)

(the Woodbury identity and the matrix determinant lemma applied to C restricted to the observed
entries, C_oo = W_o W_o^T + Psi_o). With nothing missing this is the complete-data Gaussian
log-density log N(x; mu, C).

Initialisation, per replica from its own seed (``bench.nn.noise.replica_generators``, seeded by
1000 * seed + 1): W = 0.1 Z with Z (D, q) standard normal, mu = 0, Psi = 1; `initialize_from_data`
then sets mu to the observed training mean, Psi to the observed training variance and scales W by
the square root of the mean observed variance, and keeps that mean and standard deviation as fixed
buffers (``observed_mean``, ``observed_sd``) for the imputation methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.core.missing import register_observed_moments, set_observed_moments
from bench.models import register_family
from bench.nn import noise


@dataclass
class FactorPosterior:
    """The exact posterior of the factors given each example's observed values, float64:
    mean (R, N, q), covariance (R, N, q, q), and the observed-data log-likelihood log p(x_o) (R, N)."""

    mean: Tensor
    covariance: Tensor
    log_prob: Tensor


@register_family("factor_analysis")
class FactorAnalysis(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int]):
        super().__init__()
        if len(layers) != 2 or not 1 <= layers[1] < layers[0]:
            raise ValueError(f"factor analysis needs layers [D, q] with 1 <= q < D; got layers={layers}")
        self.layers = list(layers)
        d, q = layers
        start = torch.stack([torch.randn(d, q, generator=g, dtype=torch.float64)
                             for g in noise.replica_generators([1000 * s + 1 for s in seeds])])
        self.weight = nn.Parameter(0.1 * start)  # W (R, D, q)
        self.mean = nn.Parameter(torch.zeros(len(seeds), d, dtype=torch.float64))  # mu (R, D)
        self.log_noise = nn.Parameter(torch.zeros(len(seeds), d, dtype=torch.float64))  # log Psi (R, D)
        # the observed training values' mean and standard deviation per value (R, D), set by
        # `initialize_from_data` and fixed: what imputation methods centre and scale by
        register_observed_moments(self, len(seeds), d)

    @property
    def noise_variance(self) -> Tensor:
        """Psi's diagonal (R, D)."""
        return self.log_noise.exp()

    @torch.no_grad()
    def initialize_from_data(self, x_train: Tensor) -> None:
        """mu <- the observed mean, Psi <- the observed variance of each value of x_train (N, D)
        (NaN = missing), W *= sqrt(mean observed variance); the buffers observed_mean and
        observed_sd keep that mean and the variance's square root. A ValueError when a value is observed
        fewer than twice."""
        mean, variance = set_observed_moments(self, x_train)
        self.mean.copy_(mean.expand_as(self.mean))
        self.log_noise.copy_(variance.log().expand_as(self.log_noise))
        self.weight.mul_(variance.mean().sqrt())

    def posterior(self, x: Tensor) -> FactorPosterior:
        """p(z | x_o) and log p(x_o) for x (R, N, D) with NaN at missing entries (module docstring);
        differentiable in the parameters. Where a replica's parameters are not finite (it diverged,
        e.g. at a tuning grid's largest rate) its posterior precision cannot be factored: its
        log p(x_o) is NaN, so that the loop marks that replica diverged, and the others go on."""
        x = x.to(torch.float64)
        observed = torch.isfinite(x)
        precision = observed / self.noise_variance.unsqueeze(1)  # o / Psi (R, N, D)
        residual = (x - self.mean.unsqueeze(1)).nan_to_num(0.0)  # missing entries contribute nothing
        w = self.weight.unsqueeze(1)  # (R, 1, D, q)
        q = self.layers[1]
        p = torch.eye(q, dtype=x.dtype, device=x.device) + (w * precision.unsqueeze(-1)).transpose(-1, -2) @ w
        b = ((precision * residual).unsqueeze(-2) @ w).squeeze(-2)  # (R, N, q)
        chol, info = torch.linalg.cholesky_ex(p)
        failed = info != 0  # (R, N): I + W^T O Psi^-1 W is positive definite for finite parameters
        chol = torch.where(failed[..., None, None], torch.eye(q, dtype=x.dtype, device=x.device), chol)
        mean = torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)
        log_det_p = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_noise = (observed * self.log_noise.unsqueeze(1)).sum(-1)
        quadratic = (precision * residual.square()).sum(-1) - (b * mean).sum(-1)
        log_prob = -0.5 * (observed.sum(-1, dtype=x.dtype) * math.log(2 * math.pi) + log_noise + log_det_p + quadratic)
        return FactorPosterior(mean, torch.cholesky_inverse(chol), log_prob.masked_fill(failed, math.nan))

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x_o) per example for x (R, N, D), NaN = missing: (R, N) nats, float64; the exact
        complete-data log N(x; mu, W W^T + Psi) when nothing is missing."""
        return self.posterior(x).log_prob

    def conditional_mean(self, x: Tensor) -> Tensor:
        """E[x | x_o] for x (R, N, D) with NaN at missing entries: the observed values kept, each
        missing one replaced by mu_j + W_j E[z | x_o] (exact): (R, N, D) float64."""
        x = x.to(torch.float64)
        fill = self.mean.unsqueeze(1) + self.posterior(x).mean @ self.weight.transpose(1, 2)
        return torch.where(torch.isfinite(x), x, fill)
