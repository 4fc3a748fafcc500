"""Mixture of multivariate Gaussians with full covariances on the data's first P principal
components, with a leading replica axis (``gaussian_mixture`` family).

    p(z) = sum_k pi_k N(z | mu_k, Sigma_k),   z = W (x - m) in R^P

(Bishop, PRML 2006, Sec. 9.2, eq 9.7). ``layers = [D, P, K]`` lists sizes from the data side, as in
the other families: D values per example (784 pixels), the P principal components kept (the
projection W, P x D with orthonormal rows, and the mean m of the training data), then the K values
of the one categorical latent variable (the components). log p is the density of the projected
coordinates z on the principal subspace (nats per example; W is orthonormal, so it is the density
on that P-dimensional subspace with its Lebesgue measure), not a density of the D pixels.

Full covariances, not diagonal ones: principal components are uncorrelated over the whole training
set but not within one component (one kind of digit), so a diagonal model would be a different,
worse density; full is also scikit-learn's default (`GaussianMixture(covariance_type="full")`), the
reference of the tests.

Parameters, float64, one slice per replica (seed); no gradients (EM updates them in place):

* ``mixing_logits`` (R, K): pi = softmax(mixing_logits);
* ``means`` (R, K, P): mu_k;
* ``covariances`` (R, K, P, P): Sigma_k, symmetric positive definite.

The projection is ``pca``, the training set's PCA (bench.models.principal.TrainingPCA: m and the
top-P eigenvectors of the training covariance as the columns of W^T, float64 buffers with the
replica axis first, equal slices since every replica trains on the same data), fitted by
`fit_projection`; the likelihood does not depend on the signs of the eigenvectors (a reflection of
the coordinates, which EM follows exactly).

Initialisation: until the workload's ``prepare`` fits the projection from the training set, W = 0
and every component is the standard normal. `init_from_data` then centres component k on the k-th
of K distinct training examples drawn by the replica's seed (``bench.nn.noise.replica_generators``,
seeded by 1000 * seed + 1, as the Bernoulli mixture), with the training set's covariance in the
projected coordinates and pi_k = 1/K.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.models.principal import TrainingPCA
from bench.nn import noise

CHUNK = 4096  # examples per block of the (R, n, K, P) whitened residuals: 82 MB at R = 5, K = 10, P = 50


@register_family("gaussian_mixture")
class GaussianMixture(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int]):
        super().__init__()
        if len(layers) != 3 or min(layers) < 1 or layers[1] >= layers[0]:
            raise ValueError(f"a Gaussian mixture needs layers [D, P, K] (values per example, principal components "
                             f"kept, P < D, and components); got layers={layers}")
        self.layers, self.seeds = list(layers), list(seeds)
        d, p, k = layers
        r = len(seeds)
        self.pca = TrainingPCA(r, d, p)
        self.mixing_logits = nn.Parameter(torch.zeros(r, k, dtype=torch.float64), requires_grad=False)
        self.means = nn.Parameter(torch.zeros(r, k, p, dtype=torch.float64), requires_grad=False)
        self.covariances = nn.Parameter(torch.eye(p, dtype=torch.float64).expand(r, k, p, p).clone(),
                                        requires_grad=False)

    @property
    def dims(self) -> int:
        """P, the principal components kept."""
        return self.layers[1]

    @property
    def components(self) -> int:
        return self.layers[2]

    def fit_projection(self, x: Tensor) -> None:
        """Fit m and W on the training set x (N, D) (TrainingPCA.fit, float64)."""
        self.pca.fit(x)

    def project(self, x: Tensor) -> Tensor:
        """z = W (x - m) for x (R, n, D): (R, n, P), float64 (as W x - W m: no centred copy of x)."""
        w_t = self.pca.components  # (R, D, P)
        return torch.baddbmm(-(self.pca.mean.unsqueeze(1) @ w_t), x.to(w_t), w_t)

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """The initialisation from the training set x (N, D) (see the module docstring), after
        `fit_projection`. A ValueError when N < K, or N <= P (the training covariance in the P
        projected coordinates, every component's first covariance, would be singular)."""
        n, k = x.shape[0], self.components
        if n < k or n <= self.dims:
            raise ValueError(f"{k} components on {self.dims} principal components need at least {k} and more than "
                             f"{self.dims} training examples to start from; got {n}")
        z = self.project(x.unsqueeze(0).expand(len(self.seeds), -1, -1))  # (R, N, P)
        gens = noise.replica_generators([1000 * s + 1 for s in self.seeds])
        picks = torch.stack([torch.randperm(n, generator=g)[:k] for g in gens]).to(z.device)
        centred = z - z.mean(1, keepdim=True)
        self.means.copy_(z[torch.arange(len(self.seeds), device=z.device).unsqueeze(1), picks])
        self.covariances.copy_((centred.transpose(1, 2) @ centred / n).unsqueeze(1).expand_as(self.covariances))
        self.mixing_logits.zero_()

    def log_joint(self, z: Tensor) -> Tensor:
        """log pi_k + log N(z | mu_k, Sigma_k) for projected coordinates z (R, n, P): (R, n, K),
        float64. Through the Cholesky factor L_k of Sigma_k: with U_k = L_k^-T (U_k U_k^T =
        Sigma_k^-1), log N = -|z U_k - mu_k U_k|^2 / 2 + sum log diag U_k - P log(2 pi) / 2, the
        residuals of every k from one matmul of [z, 1] with [U_k; -mu_k U_k]. A component whose
        covariance is not positive definite (its factorisation fails) gives NaN, which marks its
        replica diverged, rather than raising for every replica."""
        r, k, p = self.means.shape
        chol, info = torch.linalg.cholesky_ex(self.covariances)
        eye = torch.eye(p, dtype=chol.dtype, device=chol.device).expand_as(chol)
        u = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)  # (R, K, P, P), upper
        shift = -(self.means.unsqueeze(-2) @ u)  # (R, K, 1, P): -mu_k U_k
        weights = torch.cat([u, shift], dim=-2).transpose(1, 2).reshape(r, p + 1, k * p)
        ones = torch.ones(*z.shape[:-1], 1, dtype=u.dtype, device=u.device)
        residual = (torch.cat([z.to(u), ones], dim=-1) @ weights).view(r, -1, k, p)  # (z - mu_k) U_k
        maha = torch.linalg.vector_norm(residual, dim=-1).square()  # (R, n, K)
        log_det = torch.log(torch.diagonal(u, dim1=-2, dim2=-1)).sum(-1)  # (R, K) = -log det Sigma_k / 2
        bias = torch.log_softmax(self.mixing_logits, -1) + log_det - 0.5 * p * math.log(2 * math.pi)
        bias = torch.where(info == 0, bias, torch.nan)
        return bias.unsqueeze(1) - 0.5 * maha

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(z) = logsumexp_k (log pi_k + log N(z | mu_k, Sigma_k)) of z = W (x - m), for
        x (R, N, D): (R, N) nats, float64, in blocks of CHUNK examples."""
        return torch.cat([torch.logsumexp(self.log_joint(self.project(xc)), dim=-1) for xc in x.split(CHUNK, dim=1)],
                         dim=1)
