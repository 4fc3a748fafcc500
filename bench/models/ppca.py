"""Probabilistic PCA with a leading replica axis (``ppca`` family; Tipping & Bishop 1999,
"Probabilistic principal component analysis", JRSS B 61(3)).

``layers = [D, q]``: D observed values, q latent dimensions. Per replica,

    z ~ N(0, I_q),   x | z ~ N(W z + mu, sigma^2 I_D),   so   x ~ N(mu, C),  C = W W^T + sigma^2 I  (eqs 2-3),

with W (R, D, q) and sigma^2 (R,), float64, fitted by EM (methods/ppca_em.py: no gradients). The mean
mu is the training mean, its maximum-likelihood value in closed form (Sec. 3.2), held by the
`TrainingPCA` reference (bench/models/principal.py) that the workload's ``prepare`` fits.

Initialisation, per replica from its own seed (``bench.nn.noise.replica_generators``, seeded by
1000 * seed + 1): W = Z sqrt(v / q) with Z (D, q) standard normal, v = tr(S) / D the training data's
mean variance per value, and sigma^2 = tr(S) / q, the variance each latent dimension would carry if
the total were shared among q (set by `initialize_from_data`; until then v = 1 and sigma^2 = D / q).
A noise variance larger than W's makes M ~ sigma^2 I, so that the first EM iterations act as
subspace iterations W <- S W / sigma^2 towards the principal subspace: on the first 10000 MNIST
images with q = 16, EM from sigma^2 = 15 v was 0.004 nats per example from the ML log-likelihood
after 180 iterations, and from sigma^2 = v still 0.19.

The maximum-likelihood solution is closed form (eqs 7-8): W_ML = U_q (Lambda_q - sigma^2_ML I)^(1/2) R
for any rotation R, and sigma^2_ML = sum_{j > q} lambda_j / (D - q), from the eigen decomposition of
the training covariance S (`maximum_likelihood`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.models.principal import TrainingPCA
from bench.nn import noise


def gaussian_log_prob(x: Tensor, mean: Tensor, weight: Tensor, variance: Tensor) -> Tensor:
    """log N(x; mean, W W^T + sigma^2 I) per example (Tipping & Bishop 1999, eq. 3; the log-likelihood
    of eq. 4 is its sum over examples), in nats, float64: x (R, N, D), mean (R, D), weight W (R, D, q),
    variance sigma^2 (R,) -> (R, N). Through the q x q matrix M = W^T W + sigma^2 I (Woodbury and
    the matrix determinant lemma): log|C| = (D - q) log sigma^2 + log|M| and
    e^T C^-1 e = (||e||^2 - ||L^-1 W^T e||^2) / sigma^2 with M = L L^T, e = x - mean."""
    d, q = weight.shape[-2:]
    variance = variance.reshape(-1, 1, 1)
    m = weight.transpose(1, 2) @ weight + variance * torch.eye(q, dtype=weight.dtype, device=weight.device)
    chol = torch.linalg.cholesky(m)
    e = x.to(torch.float64) - mean.unsqueeze(1)
    projected = torch.linalg.solve_triangular(chol, weight.transpose(1, 2) @ e.transpose(1, 2), upper=False)
    mahalanobis = (e.square().sum(-1) - projected.square().sum(1)) / variance.reshape(-1, 1)
    log_det = (d - q) * torch.log(variance.reshape(-1)) + 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(-1)
    return -0.5 * (d * math.log(2 * math.pi) + log_det.unsqueeze(1) + mahalanobis)


@register_family("ppca")
class PPCA(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int]):
        super().__init__()
        if len(layers) != 2 or not 1 <= layers[1] < layers[0]:
            raise ValueError(f"probabilistic PCA needs layers [D, q] with 1 <= q < D; got layers={layers}")
        self.layers = list(layers)
        d, q = layers
        start = torch.stack([torch.randn(d, q, generator=g, dtype=torch.float64)
                             for g in noise.replica_generators([1000 * s + 1 for s in seeds])])
        self.weight = nn.Parameter(start / math.sqrt(q), requires_grad=False)  # W (R, D, q)
        self.variance = nn.Parameter(torch.full((len(seeds),), d / q, dtype=torch.float64), requires_grad=False)
        self.reference = TrainingPCA(len(seeds), d, q)

    @property
    def mean(self) -> Tensor:
        """mu (R, D): the training mean."""
        return self.reference.mean

    @torch.no_grad()
    def initialize_from_data(self, x_train: Tensor) -> None:
        """Fit the reference to x_train (N, D) and scale the start to the data: W *= sqrt(v), sigma^2 *= v,
        v = tr(S) / D (from v = 1 at construction)."""
        self.reference.fit(x_train)
        v = self.reference.eigenvalues.sum(-1) / self.layers[0]  # (R,)
        self.weight.mul_(v.sqrt().reshape(-1, 1, 1))
        self.variance.mul_(v)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per example for x (R, N, D): (R, N) nats, float64."""
        return gaussian_log_prob(x, self.mean, self.weight, self.variance)

    def maximum_likelihood(self) -> tuple[Tensor, Tensor]:
        """(W_ML (R, D, q), sigma^2_ML (R,)) of the training set (eqs 7-8 with R = I), from the reference."""
        q = self.layers[1]
        values = self.reference.eigenvalues
        variance = values[:, q:].mean(-1)
        scale = (values[:, :q] - variance.unsqueeze(1)).clamp_min(0.0).sqrt()
        return self.reference.components * scale.unsqueeze(1), variance
