"""Analyses of trained Gaussian-latent models, reported as evaluation metrics.

* ``active_units`` -- IWAE's criterion (Burda et al. 2016, Sec. 5.2 and ``get_units_variances`` /
  ``chop_units_with_variance_under_threshold`` in yburda/iwae): unit u is active when
  A_u = Cov_x(E_q[u | x]) > 0.01, the variance over examples of the posterior *mean*.
* ``amortization_gaps`` -- Cremer, Li & Duvenaud (2018): log p(x) - L[q] split into the
  approximation gap log p(x) - L[q*] and the amortization gap L[q*] - L[q], where q is the
  encoder's (amortized) factorised Gaussian and q* the best factorised Gaussian for each example,
  found by optimising its mean and log sigma.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.estimators.importance import importance_log_likelihood
from bench.models.vae import VAE, GaussianLatentModel, gaussian_log_prob, gaussian_sample
from bench.nn import noise

ACTIVE_THRESHOLD = 0.01


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> Tensor:
    """Number of units whose posterior mean varies across examples: means (R, N, d) -> (R,)."""
    return (means.var(dim=1, unbiased=False) > threshold).sum(-1).to(means.dtype)


def _gaussian_entropy(log_sigma: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian, summed over the last axis."""
    return (log_sigma + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)


def _elbo(model: VAE, x: Tensor, mean: Tensor, log_sigma: Tensor, draws: int) -> Tensor:
    """E_q[log p(x, z)] + H(q) for q = N(mean, exp(log_sigma)^2) given per example (R, B, d),
    with `draws` reparameterised samples: (R, B). The entropy is exact, which lowers the variance
    and leaves the ELBO unchanged."""
    z = gaussian_sample(mean, log_sigma, draws)[0]
    return model.log_joint(x, [z]).mean(1) + _gaussian_entropy(log_sigma)


def optimise_local_gaussian(model: VAE, x: Tensor, steps: int, lr: float) -> tuple[Tensor, Tensor]:
    """q*(z | x): per example and replica, a factorised Gaussian fitted by Adam on the
    reparameterised ELBO (one sample per step), starting from the encoder's q. Cremer et al.'s
    local_ffg.py starts from N(0, I) with lr 1e-3 and runs until a 100-step average stops improving;
    starting at q reaches the optimum in fewer steps and makes L[q*] >= L[q] up to noise.
    Only mean and log sigma receive gradients; the model's parameters are untouched."""
    mean, log_sigma = (t.detach().clone().requires_grad_(True) for t in model.q[0](x))
    opt = torch.optim.Adam([mean, log_sigma], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = -_elbo(model, x, mean, log_sigma, 1).sum()
            mean.grad, log_sigma.grad = torch.autograd.grad(loss, [mean, log_sigma])
            opt.step()
    return mean.detach(), log_sigma.detach()


def _mixture_log_weights(model: VAE, packed: Tensor, k: int) -> Tensor:
    """Log-weights of log p(x) under the defensive mixture m = q/2 + q*/2 (each sample comes from
    q or q* with probability 1/2): log p(x, z) - log m(z). `packed` carries each example's q*
    parameters next to it, (R, B, D + 2d), so the IS estimator's chunking keeps them aligned."""
    d = model.layers[1]
    x, mean, log_sigma = packed.split([packed.shape[-1] - 2 * d, d, d], dim=-1)
    amortized, local = model.q[0](x), (mean, log_sigma)
    pick = noise.rand((x.shape[0], k, x.shape[1], 1), x) < 0.5
    z = torch.where(pick, gaussian_sample(*amortized, k)[0], gaussian_sample(*local, k)[0])
    log_q, log_q_local = (gaussian_log_prob(z, m.unsqueeze(1), s.unsqueeze(1)) for m, s in (amortized, local))
    log_m = torch.logaddexp(log_q, log_q_local) - math.log(2.0)
    return model.log_joint(x, [z]) - log_m


def amortization_gaps(model: VAE, x: Tensor, k: int, steps: int, lr: float = 1e-2,
                      draws: int = 100) -> dict[str, Tensor]:
    """Cremer et al.'s decomposition on x (R, B, D), per replica (means over the B examples):

    * L[q]  = ELBO of the encoder's q, and L[q*] = ELBO of the locally optimised q*, each with
      `draws` samples per example (the paper's 100);
    * log p(x) estimated by importance sampling with k samples from the mixture q/2 + q*/2
      (a stochastic lower bound; the paper uses AIS, so our approximation gap is a lower bound of
      theirs and the amortization share an upper bound);
    * gap_approximation = log p(x) - L[q*], gap_amortization = L[q*] - L[q],
      gap_inference = their sum, amortization_share = mean amortization gap / mean inference gap.

    Requires a VAE with one Gaussian latent layer, q(z | x) = ``model.q[0]``, as in Cremer et al.'s VAEs."""
    if len(model.layers) != 2:
        raise ValueError(f"the amortization gap needs one stochastic layer (Cremer et al.); got layers={model.layers}")
    mean, log_sigma = optimise_local_gaussian(model, x, steps, lr)
    elbo_amortized = _elbo(model, x, *model.q[0](x), draws)
    elbo_local = _elbo(model, x, mean, log_sigma, draws)
    packed = torch.cat([x, mean, log_sigma], dim=-1)
    log_px = importance_log_likelihood(lambda p, kc: _mixture_log_weights(model, p, kc), packed, k).float()
    approximation = (log_px - elbo_local).mean(1)
    amortization = (elbo_local - elbo_amortized).mean(1)
    return {
        "gap_approximation": approximation,
        "gap_amortization": amortization,
        "gap_inference": approximation + amortization,
        "amortization_share": amortization / (approximation + amortization),
    }


def amortization_gap_metrics(model: GaussianLatentModel, x: Tensor, k: int, examples: int,
                             steps: int) -> dict[str, Tensor]:
    """The evaluation metrics a Gaussian-latent method adds with its ``gap_examples`` and
    ``gap_steps`` hyper-parameters: ``amortization_gaps`` on the first ``examples`` examples of the
    evaluated x (R, N, D), k importance samples and ``steps`` Adam steps of local optimisation;
    name -> (R,). Nothing (an empty dict) when examples is 0."""
    if not examples:
        return {}
    return amortization_gaps(model, x[:, :examples], k, steps)
