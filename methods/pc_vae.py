"""Predictive coding (PC) training of a one-layer Gaussian-latent VAE, with the energy a KL
divergence between each value node's distribution and its prediction (PC_F_KL) or the standard
squared errors (PC_F): Pinchetti, Salvatori, Yordanov, Millidge, Song & Lukasiewicz, "Predictive
Coding beyond Gaussian Distributions", NeurIPS 2022 (arXiv 2211.03481).

The VAE's computation graph x -> q(z | x) = N(mu(x), sigma(x)^2) -> z -> p(x | z) gets one value
node per example for its latent layer, phi = (m, s): the parameters of N(m, exp(s)^2), predicted by
the encoder as (mu, log sigma) = q(x). The data x is clamped at the input and at the output; z = m
+ exp(s) * eps is the node's reparameterised draw, eps ~ N(0, I) drawn once per example and step
(bench.nn.noise) and held through the step. Per example (nats; sums over the units):

* ``energy: kl`` (PC_F_KL):
      F = lambda KL(N(m, e^{2s}) || N(mu, sigma^2)) + KL(N(m, e^{2s}) || N(0, I)) - log p(x | z),
  the node-prediction divergence, the VAE's prior term at the node, and the output's cross-entropy
  (Bernoulli; the Gaussian decoder's negative log-density likewise). At phi = (mu, log sigma) the
  first term is 0 and F is the negative single-draw ELBO of AEVB's estimator B (Kingma & Welling
  2014, eq. 7), the loss backprop descends.
* ``energy: gaussian`` (PC_F, every node a unit-variance Gaussian of its activations):
      F = lambda (|m - mu|^2 + |s - log sigma|^2) / 2 + KL(N(m, e^{2s}) || N(0, I)) + |x - x_hat(z)|^2 / 2,
  x_hat = sigmoid(decoder head), the mean of p(x | z) for either likelihood.

``precision`` lambda weights the node-prediction term: 1 is the unweighted sum of divergences (our
reading of the paper's F_KL);
as lambda grows the inferred node stays within O(1/lambda) of its prediction and the weight update
at the fixed point tends to backprop's (the small-error limit of PC, Whittington & Bogacz 2017,
Neural Computation 29(5)); at lambda = 1 it is a different update (cosine about 0.55 to backprop's
at the fixed point on the test's small VAE).

One ``step``: predict (mu, log sigma) = q(x); start the node there (the feed-forward pass); T =
``iterations`` inference steps with the weights fixed, phi <- phi - lr_x * G^{-1} dF/dphi; then one
Adam step on the weights of both networks on the minibatch's sum of F at the inferred phi. At T = 0
the encoder receives no gradient (the KL and the squared error are stationary at phi = prediction);
as T grows with a stable lr_x, phi reaches the fixed point dF/dphi = 0, where the update is
backprop's up to O(1/lambda) (tests/test_pc_vae.py checks the cosine).

Choices the paper leaves to the implementation, and ours:

* Value nodes for the latent layer only; the deterministic hidden layers are computed, not inferred.
* G is the diagonal Hessian in (m, s) of the node's closed-form terms, the node-prediction term
  and the prior KL (``node_curvature``): for ``kl`` (lambda / sigma^2 + 1, 2 lambda e^{2(s - log
  sigma)} + 2 e^{2s}), at the prediction lambda times its Fisher information plus the prior's
  curvature; for ``gaussian`` (lambda + 1, lambda + 2 e^{2s}). Plain gradient steps diverge from
  the first minibatch of MNIST (the encoder's initial log sigma reaches 4, where the prior's
  curvature in s is 2 e^8); G makes one lr_x stable whatever sigma the encoder predicts. Each
  exponential factor is floored at 1 (its value where node and prediction agree, and at s = 0 for
  the prior): below the minimum the Hessian in s vanishes and a Newton step would overshoot. The
  decoder's curvature is left out (it needs the decoder's Jacobian per example). G changes the
  path to the fixed point, not the fixed point.
* The VAE's prior KL is charged at the node, not at the prediction, in both energies; one draw eps
  per example and step (common to the inference and the weight update).
* Only models with one stochastic layer (``layers = [D, d]``); deeper ones raise ConfigError.

Replicas: every tensor carries the model's leading replica axis R, the energy is per replica, and
replicas never mix. ``step`` returns 'energy' (R,), the mean over the minibatch of F at the
inferred nodes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.vae import VAE, standard_normal_kl
from bench.nn import noise
from bench.nn.optim import ascent_step, make_optimizer
from bench.workloads.method import Method, register

ENERGIES = ("kl", "gaussian")


def gaussian_kl(mean: Tensor, log_sigma: Tensor, mean_p: Tensor, log_sigma_p: Tensor) -> Tensor:
    """KL(N(mean, diag e^{2 log_sigma}) || N(mean_p, diag e^{2 log_sigma_p})) summed over the last axis
    (nats): sum_j log(sigma_p / sigma) + (sigma^2 + (mean - mean_p)^2) / (2 sigma_p^2) - 1/2. The
    arguments broadcast; the result has their shape less the last axis."""
    ratio = torch.exp(2 * (log_sigma - log_sigma_p))
    return (log_sigma_p - log_sigma + 0.5 * (ratio + ((mean - mean_p) * torch.exp(-log_sigma_p)).square() - 1)).sum(-1)


@register("pc_vae", family="vae", defaults={
    "energy": "kl", "iterations": 10, "lr_x": 0.1, "precision": 1.0, "lr": 1e-3, "beta1": 0.9, "eps": 1e-8,
}, choices={"energy": ENERGIES})
class PCVAE(Method):
    model: VAE

    def __init__(self, model: VAE, **hparams: Any):
        super().__init__(model, **hparams)
        if len(model.layers) != 2:
            raise ConfigError(f"pc_vae infers one stochastic layer (layers [D, d]); got layers {model.layers}")
        if self.iterations < 0 or self.lr_x <= 0 or self.precision <= 0:
            raise ConfigError(f"pc_vae needs iterations >= 0, lr_x > 0 and precision > 0; got {self.iterations}, "
                              f"{self.lr_x}, {self.precision}")
        self.opt = make_optimizer(model.parameters(), "adam", self.lr, beta1=self.beta1, eps=self.eps)

    def free_energy(self, x: Tensor, m: Tensor, s: Tensor, mean: Tensor, log_sigma: Tensor, eps: Tensor) -> Tensor:
        """F per example (module docstring) for data x (R, B, D), node (m, s), prediction (mean,
        log_sigma), each (R, B, d), and the step's draw eps (R, B, d): (R, B), nats."""
        z = (m + s.exp() * eps).unsqueeze(1)  # (R, 1, B, d): one draw, the decoder's K axis
        prior = standard_normal_kl(m, s)
        if self.energy == "kl":
            return self.precision * gaussian_kl(m, s, mean, log_sigma) + prior - self.model.data.log_prob(x, z)[:, 0]
        data = self.model.data
        x_hat = torch.sigmoid(data.head(data.trunk(z)))[:, 0]
        nodes = (m - mean).square().sum(-1) + (s - log_sigma).square().sum(-1)
        return 0.5 * (self.precision * nodes + (x - x_hat).square().sum(-1)) + prior

    def node_curvature(self, s: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The diagonal Hessian of the node-prediction term plus the prior KL in m and in s, at the
        node's log sigma s and the predicted log_sigma, each (R, B, d), each exponential factor
        floored at 1, its value at equality (module docstring, G)."""
        prior_s = 2 * torch.exp(2 * s).clamp(min=1)
        if self.energy == "kl":
            return (self.precision * torch.exp(-2 * log_sigma) + 1,
                    2 * self.precision * torch.exp(2 * (s - log_sigma)).clamp(min=1) + prior_s)
        return torch.full_like(s, self.precision + 1), self.precision + prior_s

    def infer(self, x: Tensor, mean: Tensor, log_sigma: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """The value node (m, s) after ``iterations`` inference steps from the prediction, the
        weights fixed: each (R, B, d), detached."""
        m, s = mean.detach().clone(), log_sigma.detach().clone()
        mean, log_sigma = mean.detach(), log_sigma.detach()
        for _ in range(self.iterations):
            curvature_m, curvature_s = self.node_curvature(s, log_sigma)
            m.requires_grad_(True)
            s.requires_grad_(True)
            grad_m, grad_s = torch.autograd.grad(self.free_energy(x, m, s, mean, log_sigma, eps).sum(), (m, s))
            m = (m - self.lr_x * grad_m / curvature_m).detach()
            s = (s - self.lr_x * grad_s / curvature_s).detach()
        return m, s

    def step(self, x: Tensor) -> dict[str, Tensor]:
        mean, log_sigma = self.model.q[0](x)
        eps = noise.randn(mean.shape, mean)
        m, s = self.infer(x, mean, log_sigma, eps)
        energy = self.free_energy(x, m, s, mean, log_sigma, eps)
        ascent_step(self.opt, -energy.sum(1), x.shape[1], lr=self.lr)
        return {"energy": energy.detach().mean(1)}
