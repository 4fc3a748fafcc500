"""The training set's principal components, the reference of the PCA-like families
(``linear_autoencoder``, ``ppca``; bench/models/linear_autoencoder.py, bench/models/ppca.py).

For a training set x (N, D) with mean m, the covariance S = (x - m)^T (x - m) / N (divisor N: the
maximum-likelihood covariance of Tipping & Bishop 1999, Sec. 3.2, and the normalisation under which
PCA's reconstruction error is a sum of eigenvalues) has eigenvalues lambda_1 >= ... >= lambda_D and
orthonormal eigenvectors u_j. PCA with k components (Pearson 1901; Bishop, PRML 2006, Sec. 12.1.2)
reconstructs x as m + U_k U_k^T (x - m), U_k = [u_1 ... u_k], and its mean squared reconstruction
error on the training set is

    MSE_PCA = mean_n ||x_n - m - U_k U_k^T (x_n - m)||^2 = sum_{j > k} lambda_j        (PRML eq. 12.18)

(squared error summed over the D values of an example, averaged over examples). The eigen
decomposition is torch.linalg.eigh in float64, the definition of the metrics that read it.

`TrainingPCA` holds m, the eigenvalues and U_k as buffers with the replica axis first (every replica
trains on the same data, so the slices are equal), set once by the workload's ``prepare`` and read by
its metrics; no method reads them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TrainingPCA(nn.Module):
    """Buffers, float64: ``mean`` (R, D), ``eigenvalues`` (R, D) in decreasing order, ``components``
    (R, D, k) (the top-k eigenvectors as columns). Zero until `fit`."""

    def __init__(self, replicas: int, d: int, k: int):
        super().__init__()
        if not 1 <= k < d:
            raise ValueError(f"a {k}-dimensional principal subspace of {d}-dimensional data needs 1 <= k < D")
        self.register_buffer("mean", torch.zeros(replicas, d, dtype=torch.float64))
        self.register_buffer("eigenvalues", torch.zeros(replicas, d, dtype=torch.float64))
        self.register_buffer("components", torch.zeros(replicas, d, k, dtype=torch.float64))

    @property
    def k(self) -> int:
        return self.components.shape[-1]

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Mean, covariance eigenvalues and top-k eigenvectors of the training set x (N, D), float64.
        A ValueError when N < 2."""
        if x.shape[0] < 2:
            raise ValueError(f"a covariance needs at least 2 training examples; got {x.shape[0]}")
        x = x.to(torch.float64)
        mean = x.mean(0)
        centred = x - mean
        values, vectors = torch.linalg.eigh(centred.T @ centred / x.shape[0])  # ascending
        values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)  # rounding can leave -1e-17
        self.mean.copy_(mean.expand_as(self.mean))
        self.eigenvalues.copy_(values.expand_as(self.eigenvalues))
        self.components.copy_(vectors[:, : self.k].expand_as(self.components))

    def trailing_sum(self) -> Tensor:
        """sum_{j > k} lambda_j per replica: (R,), PCA's training reconstruction error."""
        return self.eigenvalues[:, self.k:].sum(-1)

    def reconstruct(self, x: Tensor) -> Tensor:
        """PCA's reconstruction m + U_k U_k^T (x - m) of x (R, N, D), float64: (R, N, D)."""
        centred = x.to(torch.float64) - self.mean.unsqueeze(1)
        return self.mean.unsqueeze(1) + torch.bmm(torch.bmm(centred, self.components), self.components.transpose(1, 2))


def subspace_distance(basis: Tensor, reference: Tensor) -> Tensor:
    """The sine of the largest principal angle between span(basis) and span(reference) (Golub & Van
    Loan, Matrix Computations, Sec. 6.4.3): basis (R, D, k) of full column rank, reference (R, D, k)
    with orthonormal columns -> (R,) in [0, 1], float64; 0 when the subspaces are equal. Computed as
    ||(I - P_ref) Q||_2 with Q an orthonormal basis of span(basis) (exact for small angles, unlike
    sqrt(1 - cos^2))."""
    q = torch.linalg.qr(basis.to(torch.float64)).Q
    residual = q - torch.bmm(reference, torch.bmm(reference.transpose(1, 2), q))
    return torch.linalg.matrix_norm(residual, ord=2).clamp(max=1.0)
