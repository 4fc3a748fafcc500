"""Expectation-maximisation for a mixture of Gaussians with full covariances (Dempster, Laird &
Rubin 1977; Bishop, PRML 2006, Sec. 9.2.2, eqs 9.23-9.28), with scikit-learn's covariance floor.

One ``step`` is one E+M iteration on the minibatch it gets, x (R, B, D), projected by the model to
its principal coordinates z (R, B, P); the claims give it the whole training set (batch_size = N),
so one step is one iteration of batch EM:

* E-step (eq 9.23): responsibilities gamma_nk = pi_k N(z_n | mu_k, Sigma_k) / sum_j pi_j N(z_n | mu_j,
  Sigma_j), from the log-joint in float64 (logsumexp; bench.models.finite_mixture);
* M-step: N_k = sum_n gamma_nk + 10 eps (eq 9.27, plus ten float64 machine epsilons, as
  scikit-learn, so that a component that wins no example keeps a finite mean), mu_k = sum_n
  gamma_nk z_n / N_k (eq 9.24), pi_k = N_k / sum_j N_j (eq 9.26) and

      Sigma_k = sum_n gamma_nk (z_n - mu_k)(z_n - mu_k)^T / N_k + reg_covar I      (eq 9.25 + floor),

  accumulated in one pass over blocks of examples as (sum_n gamma_nk z_n z_n^T - N_k mu_k mu_k^T)
  / N_k. The principal coordinates are centred on the training mean, so the cancellation is mild:
  on 10000 MNIST images (P = 50, K = 10, 30 iterations) the means and covariances agree with
  scikit-learn's centred two-pass M-step (``GaussianMixture``, ``covariance_type="full"``, the
  reference of tests/test_gmm.py) to 3e-13 relative. reg_covar = 1e-6 by default, as there.

EM never decreases the log-likelihood (Dempster et al. 1977, Theorem 1; Bishop Sec. 9.4) when the
M-step maximises its expected complete-data log-likelihood Q. The floor moves each covariance off
that maximiser, which lowers Q, and so bounds a fall of the log-likelihood in one iteration, by
sum_k N_k / 2 sum_i (log(1 + u_ki) - u_ki / (1 + u_ki)) <= sum_k N_k sum_i u_ki^2 / 4 nats,
u_ki = reg_covar / lambda_ki over the eigenvalues lambda_ki of the unfloored covariance: second
order in reg_covar, none at reg_covar = 0 (which the method accepts), and no bound at all for a
component that has collapsed onto P or fewer examples (lambda = 0: the likelihood's singularity,
Bishop Sec. 9.2.1, which the floor keeps finite).

The step returns 'll_decrease', the largest relative decrease of the batch's mean log-likelihood
between consecutive iterations so far, 0 while EM is monotone (bench.workloads.monotone.
LargestDecrease, from the log-likelihood at the parameters each iteration starts from, which its
E-step computes). It compares consecutive batches, which are the same data only in full-batch runs
(the workload flags others).

EM has no step size: the equal-budget tuning has no knob to search (``tunable=()``). reg_covar is a
floor on the estimate, not a step size, and is not tuned either.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.finite_mixture import responsibilities
from bench.models.gaussian_mixture import CHUNK, GaussianMixture
from bench.workloads.method import Method, register
from bench.workloads.monotone import LargestDecrease

EPS_COUNT = 10 * torch.finfo(torch.float64).eps  # added to every N_k, as scikit-learn


@register("gmm_em", family="gaussian_mixture", defaults={"reg_covar": 1e-6}, tunable=())
class GaussianMixtureEM(Method):
    model: GaussianMixture

    def __init__(self, model: GaussianMixture, **hparams):
        super().__init__(model, **hparams)
        if not self.reg_covar >= 0:
            raise ConfigError(f"gmm_em: reg_covar must be >= 0 (the floor added to every covariance's diagonal); "
                              f"got {self.reg_covar}")
        self.decrease = LargestDecrease()

    @torch.no_grad()
    def step(self, x: Tensor) -> dict[str, Tensor]:
        model = self.model
        z = model.project(x)  # (R, B, P)
        r, b, p = z.shape
        k = model.components
        ll = torch.zeros(r, dtype=torch.float64, device=z.device)  # sum_n log p(z_n)
        counts = torch.full((r, k), EPS_COUNT, dtype=torch.float64, device=z.device)  # N_k
        means = torch.zeros_like(model.means)  # sum_n gamma_nk z_n, then mu_k
        second = torch.zeros_like(model.covariances)  # sum_n gamma_nk z_n z_n^T
        for zc in z.split(CHUNK, dim=1):
            log_px, gamma = responsibilities(model.log_joint(zc))  # E-step, eq 9.23: (R, n), (R, n, K)
            ll += log_px.sum(1)
            counts += gamma.sum(1)
            means += torch.bmm(gamma.transpose(1, 2), zc)
            weighted = (gamma.unsqueeze(-1) * zc.unsqueeze(2)).reshape(r, -1, k * p)  # gamma_nk z_n, (R, n, K P)
            second += torch.bmm(weighted.transpose(1, 2), zc).view(r, k, p, p)
        means = means / counts.unsqueeze(-1)  # eq 9.24
        scatter = second - counts[..., None, None] * means.unsqueeze(-1) * means.unsqueeze(-2)
        eye = torch.eye(p, dtype=scatter.dtype, device=scatter.device)
        model.covariances.copy_(scatter / counts[..., None, None] + self.reg_covar * eye)  # eq 9.25 + floor
        model.means.copy_(means)
        model.mixing_logits.copy_(torch.log(counts))  # pi_k = N_k / sum_j N_j, eq 9.26
        return {"ll_decrease": self.decrease.update(ll / b)}
