"""Bayesian generalized linear models with a Gaussian variational posterior, diagonal or full, one per
replica (``bayesian_glm`` family; the setting of Magris, Shabani & Iosifidis 2022, "Quasi Black-Box
Variational Inference with Natural Gradients for Bayesian Learning", arXiv 2205.11568).

``layers = [D]``: an example is a row (x_1, ..., x_{D-1}, y), the response last. The coefficients
theta (P = D - 1 values, plus an intercept first when ``intercept``) have the prior
N(prior_mean 1, prior_variance I); the likelihood is

* 'logistic': log p(y | x, theta) = y eta - log(1 + e^eta), eta = x^T theta, y in {0, 1};
* 'linear': log N(y; eta, noise_sd^2) with the noise standard deviation known.

q(theta) = N(mu, Sigma) in float64, Sigma = precision^-1: ``covariance: diagonal`` holds the
precision's diagonal (R, P) (Sigma = diag(1 / precision)), ``covariance: full`` the whole symmetric
positive definite precision matrix (R, P, P) (the paper's full-covariance case). It starts, as in the
authors' code (QBVI.m without MeanInit), at mu ~ N(0, init_mean_sd^2 I) per replica (seeded by
1000 * seed + 1) and the precision I / init_variance (their SigInitScale 0.01). The KL to the
prior is closed form (`kl_to_prior`); for the linear model so are the expected log-likelihood
(`expected_log_likelihood`) and the exact posterior N(m, Lambda^-1), Lambda = prior precision +
X^T X / noise_sd^2, m = Lambda^-1 (prior precision prior mean + X^T y / noise_sd^2) (Bishop, PRML
eqs 3.50-3.51), held as the reference the workload's ``prepare`` fits on the training data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise

LIKELIHOODS = ("logistic", "linear")
COVARIANCES = ("diagonal", "full")


def cholesky_or_nan(a: Tensor) -> Tensor:
    """Lower Cholesky factor L of each symmetric a (..., P, P) = L L^T; NaN where a is not numerically
    positive definite (that replica's run then reads diverged), never an exception."""
    chol, info = torch.linalg.cholesky_ex(a)
    return torch.where((info == 0)[..., None, None], chol, torch.nan)


@register_family("bayesian_glm")
class BayesianGLM(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int], likelihood: str = "logistic", intercept: bool = False,
                 prior_mean: float = 0.0, prior_variance: float = 1.0, noise_sd: float = 1.0,
                 init_variance: float = 0.01, init_mean_sd: float = 0.01, covariance: str = "diagonal"):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"bayesian_glm likelihood {likelihood!r} is not one of {LIKELIHOODS}")
        if covariance not in COVARIANCES:
            raise ValueError(f"bayesian_glm covariance {covariance!r} is not one of {COVARIANCES}")
        if len(layers) != 1 or layers[0] < 2:
            raise ValueError(f"bayesian_glm needs layers [D] with D >= 2 (covariates and the response); got {layers}")
        if min(prior_variance, noise_sd, init_variance) <= 0:
            raise ValueError("bayesian_glm: prior_variance, noise_sd and init_variance must be > 0")
        self.layers, self.likelihood, self.intercept = list(layers), likelihood, intercept
        self.noise_sd, self.full = float(noise_sd), covariance == "full"
        p, r = layers[0] - 1 + int(intercept), len(seeds)
        self.register_buffer("prior_mean", torch.full((p,), float(prior_mean), dtype=torch.float64))
        self.register_buffer("prior_precision", torch.full((p,), 1 / float(prior_variance), dtype=torch.float64))
        start = torch.stack([torch.randn(p, generator=g, dtype=torch.float64)
                             for g in noise.replica_generators([1000 * s + 1 for s in seeds])])
        self.mu = nn.Parameter(init_mean_sd * start, requires_grad=False)  # (R, P)
        precision = torch.full((r, p), 1 / float(init_variance), dtype=torch.float64)
        self.precision = nn.Parameter(torch.diag_embed(precision) if self.full else precision,
                                      requires_grad=False)  # (R, P, P) full, (R, P) diagonal
        self.register_buffer("posterior_mean", torch.full((p,), math.nan, dtype=torch.float64))
        self.register_buffer("posterior_precision", torch.full((p, p), math.nan, dtype=torch.float64))

    def design(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features (..., N, P) with the intercept's ones first, responses (..., N)) of rows x (..., N, D), float64."""
        x = x.to(torch.float64)
        features, y = x[..., :-1], x[..., -1]
        if self.intercept:
            features = torch.cat([torch.ones_like(features[..., :1]), features], -1)
        return features, y

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """sum_n log p(y_n | x_n, theta) in nats: theta (R, S, P), rows x (R, N, D) -> (R, S)."""
        features, y = self.design(x)
        eta = theta @ features.transpose(1, 2)  # (R, S, N)
        y = y.unsqueeze(1)
        if self.likelihood == "logistic":
            return (y * eta - nn.functional.softplus(eta)).sum(-1)
        var = self.noise_sd ** 2
        return (-0.5 * math.log(2 * math.pi * var) - (y - eta).square() / (2 * var)).sum(-1)

    def sample(self, s: int) -> Tensor:
        """theta (R, s, P) ~ q, through bench.nn.noise (each replica its own generator): mu + L^-T eps
        with precision = L L^T (Cholesky) when full."""
        eps = noise.randn((self.mu.shape[0], s, self.mu.shape[1]), self.mu)
        if self.full:
            chol = cholesky_or_nan(self.precision)
            return self.mu.unsqueeze(1) + torch.linalg.solve_triangular(chol.mT, eps.mT, upper=True).mT
        return self.mu.unsqueeze(1) + eps * self.precision.rsqrt().unsqueeze(1)

    def covariance(self) -> Tensor:
        """Sigma = precision^-1: (R, P, P) when full (by Cholesky), else its diagonal (R, P)."""
        if self.full:
            return torch.cholesky_inverse(cholesky_or_nan(self.precision))
        return 1 / self.precision

    def variances(self) -> Tensor:
        """diag(Sigma), (R, P)."""
        return torch.diagonal(self.covariance(), dim1=-2, dim2=-1) if self.full else 1 / self.precision

    def logdet_precision(self) -> Tensor:
        """log |precision| = -log |Sigma|, (R,)."""
        if self.full:
            return 2 * torch.log(torch.diagonal(cholesky_or_nan(self.precision), dim1=-2, dim2=-1)).sum(-1)
        return torch.log(self.precision).sum(-1)

    def kl_to_prior(self) -> Tensor:
        """KL(q || prior) in nats, (R,), closed form for Gaussians: (tr(P_0 Sigma) + (mu - mu_0)^T
        P_0 (mu - mu_0) - P + log |precision| - log |P_0|) / 2, P_0 the prior's diagonal precision."""
        p0, m0 = self.prior_precision, self.prior_mean
        return 0.5 * ((p0 * self.variances()).sum(-1) + (p0 * (self.mu - m0).square()).sum(-1) - p0.shape[0]
                      + self.logdet_precision() - torch.log(p0).sum())

    def expected_log_likelihood(self, x: Tensor, k: int) -> Tensor:
        """E_q sum_n log p(y_n | x_n, theta) in nats, (R,): closed form for 'linear'
        (E (y - x^T theta)^2 = (y - x^T mu)^2 + x^T Sigma x), else a Monte Carlo mean over k draws of q."""
        if self.likelihood == "linear":
            features, y = self.design(x)
            var = self.noise_sd ** 2
            mean_sq = (y - (features @ self.mu.unsqueeze(-1)).squeeze(-1)).square()
            sigma = self.covariance()
            spread = ((features @ sigma) * features).sum(-1) if self.full else \
                (features.square() @ sigma.unsqueeze(-1)).squeeze(-1)
            return (-0.5 * math.log(2 * math.pi * var) - (mean_sq + spread) / (2 * var)).sum(-1)
        return self.log_likelihood(self.sample(k), x).mean(1)

    @torch.no_grad()
    def fit_posterior(self, x_train: Tensor) -> None:
        """The exact posterior of the training rows x_train (N, D), linear model only (a no-op otherwise)."""
        if self.likelihood != "linear":
            return
        features, y = self.design(x_train)
        precision = torch.diag(self.prior_precision) + features.T @ features / self.noise_sd ** 2
        self.posterior_precision.copy_(precision)
        rhs = self.prior_precision * self.prior_mean + features.T @ y / self.noise_sd ** 2
        self.posterior_mean.copy_(torch.linalg.solve(precision, rhs))

    def kl_to_posterior(self) -> Tensor:
        """KL(q || N(m, Lambda^-1)) to the exact posterior in nats, (R,); NaN before `fit_posterior`.
        Its minimum over diagonal q is at mu = m, precision = diag(Lambda) (mean-field optimum of a
        Gaussian; Bishop, PRML Sec. 10.1.2); over full q it is 0, at q = the posterior."""
        lam, m = self.posterior_precision, self.posterior_mean
        e = self.mu - m
        sigma = self.covariance()
        trace = (lam * sigma).sum((-2, -1)) if self.full else (torch.diagonal(lam) * sigma).sum(-1)
        return 0.5 * (trace + ((e @ lam) * e).sum(-1) - lam.shape[0]
                      - torch.logdet(lam) + self.logdet_precision())
