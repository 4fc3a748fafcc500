"""Workloads of the PCA-like families: linear autoencoders (``linear_autoencoder``) and probabilistic
PCA (``ppca``). Both read real-valued data (transform 'unit_interval', or 'none' for data stored as
floats) and fit, in ``prepare``, the training set's PCA reference (bench/models/principal.py: mean,
covariance eigenvalues and top-k eigenvectors by torch.linalg.eigh in float64), which defines the
metrics below. Every metric is exact (no sampling, so no K) and computed in float64.

``linear_autoencoder``, on the evaluated examples x:

* 'mse': the reconstruction error ||x^ - x||^2 per example (summed over the D values), with 'mse_sem';
* 'excess_mse' = (mse - mse_PCA) / mse_PCA, mse_PCA the same error of PCA's reconstruction
  m + U_k U_k^T (x - m) (training mean and eigenvectors); on the training set mse_PCA is the sum of
  the trailing eigenvalues sum_{j > k} lambda_j (Bishop, PRML eq. 12.18), the minimum of the linear
  autoencoder's error (Baldi & Hornik 1989), so 'excess_mse' >= 0 there;
* 'subspace_distance': the sine of the largest principal angle between the decoder's column space
  and span(U_k), in [0, 1]. Near-equal eigenvalues lambda_k ~ lambda_{k+1} leave it large at a
  small excess error (a rotation between u_k and u_{k+1} costs only (lambda_k - lambda_{k+1}) sin^2).

``ppca``:

* 'll': log p(x) per example in nats (Tipping & Bishop 1999, eq. 3), with 'll_sem';
* 'll_gap' = mean log p(x) under the closed-form maximum-likelihood model (eqs 7-8) minus the same
  under the fitted model, nats per example; >= 0 on the training set, 0 at the ML solution;
* 'subspace_distance': as above, between span(W) and span(U_q).

Health: the tuning metric ('mse', 'll') blowing up or never moving on the training split; for PPCA
in full-batch runs, the EM step's training log-likelihood 'batch_ll' decreasing between iterations
(EM never decreases it; bench.workloads.monotone.em_checks).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.linear_autoencoder import LinearAutoencoder
from bench.models.ppca import PPCA, gaussian_log_prob
from bench.models.principal import subspace_distance
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, blow_up, flat_curve
from bench.workloads.method import Method
from bench.workloads.monotone import em_checks

TRANSFORMS = ("unit_interval", "none")


@register_workload("linear_autoencoder")
class LinearAutoencoderWorkload(Workload):
    transforms = TRANSFORMS
    tuning_metric = ("mse", False)

    def prepare(self, model: LinearAutoencoder, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.reference.fit(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("mse", "excess_mse", "subspace_distance")

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("mse", higher_is_better=False), flat_curve("mse", "train")]

    @torch.no_grad()
    def metrics(self, model: LinearAutoencoder, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        x = x.to(torch.float64)
        error = model.squared_error(x)
        pca_error = (model.reference.reconstruct(x) - x).square().sum(-1).mean(1)
        return {**with_sem("mse", error), "excess_mse": (error.mean(1) - pca_error) / pca_error,
                "subspace_distance": subspace_distance(model.decoder, model.reference.components)}


@register_workload("ppca")
class PPCAWorkload(Workload):
    transforms = TRANSFORMS

    def prepare(self, model: PPCA, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.initialize_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll", "ll_gap", "subspace_distance")

    def health_checks(self, model: dict) -> list[Check]:
        return em_checks("train", objective="batch_ll")

    @torch.no_grad()
    def metrics(self, model: PPCA, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        ll = model.log_prob(x)
        weight, variance = model.maximum_likelihood()
        ll_ml = gaussian_log_prob(x, model.mean, weight, variance).mean(1)
        return {**with_sem("ll", ll), "ll_gap": ll_ml - ll.mean(1),
                "subspace_distance": subspace_distance(model.weight, model.reference.components)}
