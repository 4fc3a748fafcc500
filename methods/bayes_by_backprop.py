"""Bayes by backprop (Blundell, Cornebise, Kavukcuoglu & Wierstra, "Weight Uncertainty in Neural
Networks", ICML 2015, arXiv 1505.05424): mean-field Gaussian variational inference over every
weight and bias of an MLP, by the reparameterised ELBO.

q(w) = prod_i N(w_i; mu_i, sigma_i^2) with sigma = softplus(rho) (Sec. 3.2), prior
p(w) = prod_i N(w_i; 0, prior_sigma^2) (the paper's single-Gaussian prior; its scale-mixture prior
is not implemented). The harness's model holds the means mu (its weights and biases), so the
``mlp`` workload's standard metrics (loss, error, ece) are those of the mean network; this method
holds rho (R, ...) beside it, and both travel in the loop's checkpoint (the method is pickled with
its reference to the model). One step on a minibatch of B examples, per replica:

    w^(s) = mu + sigma * eps^(s),  eps^(s) ~ N(0, I),  s = 1..train_samples   (Sec. 3.2, eq. 3-4)
    F = 1/S sum_s mean_b -log p(t_b | x_b, w^(s)) + KL(q || p) / N            (eq. 8, per example)

minimised by Adam over (mu, rho). KL weighting: the paper's uniform per-minibatch weight
pi_i = 1/M (eq. 8 with M = N / B minibatches) divided by B, i.e. the KL spread evenly over the N
training examples of the run, which the loop passes to ``prepare`` (Jospin et al.'s pitfall:
1/num_batches); the KL is the closed
form between Gaussians (the paper's single-sample estimate log q - log p has the same mean), and no
local reparameterisation (one weight sample per minibatch and sample, as the paper). The model's
l2 weight cost must be 0: the prior is the weight cost.

Predictive (``extra_metrics``, bench.workloads.predictive): k weight samples from q, their averaged
softmax (``bma_nll``, ``bma_error``, ``bma_ece``) and the across-sample spread (mutual information)
on the evaluated inputs and on a white-noise probe. Noise (eps) is drawn through bench.nn.noise,
replica r's slice from its own generator.

Defaults: Adam lr 1e-3; prior_sigma 1 (the tutorial's BayesianMnist weight prior N(0, 1));
initial sigma 0.01 (rho = softplus^-1(0.01), within the paper's and common codes' range; BayesianMnist
uses 1e-7 x the prior's); one weight sample per step (Blundell's MNIST runs). `tunable`: lr.
Raises ConfigError when the model has an l2 weight cost.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from bench.core.errors import refuse_weight_cost
from bench.models.mlp import MLP
from bench.nn import noise
from bench.workloads.method import Method, Sampler, register
from bench.workloads.predictive import bma_metrics


def inverse_softplus(sigma: float) -> float:
    """rho with softplus(rho) = sigma > 0."""
    return sigma + math.log(-math.expm1(-sigma))


def gaussian_kl(mu: Tensor, sigma: Tensor, prior_sigma: float) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, prior_sigma^2 I)) summed over all but the replica axis:
    mu, sigma (R, ...) -> (R,), nats. sum_i log(prior_sigma / sigma_i) + (sigma_i^2 + mu_i^2) /
    (2 prior_sigma^2) - 1/2."""
    terms = math.log(prior_sigma) - torch.log(sigma) + (sigma.square() + mu.square()) / (2 * prior_sigma**2) - 0.5
    return terms.flatten(1).sum(1)


@register("bayes_by_backprop", family="mlp",
          defaults={"lr": 1e-3, "prior_sigma": 1.0, "init_sigma": 0.01, "train_samples": 1})
class BayesByBackprop(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        refuse_weight_cost("bayes_by_backprop", model.l2, f"N(0, {self.prior_sigma}^2)")
        self.names = [name for name, _ in model.named_parameters()]
        self.mu = [p for _, p in model.named_parameters()]
        self.rho = [torch.full_like(p, inverse_softplus(self.init_sigma)).requires_grad_() for p in self.mu]
        self.opt = torch.optim.Adam(self.mu + self.rho, lr=self.lr)

    def kl_per_example(self) -> Tensor:
        """KL(q || p) / N per replica, (R,), nats; N from ``prepare``."""
        return self.kl() / self.training_examples()

    def sigmas(self) -> list[Tensor]:
        """The posterior standard deviations softplus(rho), one per parameter, (R, ...)."""
        return [F.softplus(r) for r in self.rho]

    def kl(self) -> Tensor:
        """KL(q || p) per replica, (R,), nats."""
        return sum(gaussian_kl(m, s, self.prior_sigma) for m, s in zip(self.mu, self.sigmas()))

    def sample_logits(self, x: Tensor) -> Tensor:
        """The network's output for x (R, N, D) under one weight sample w ~ q per replica: (R, N, out)."""
        weights = {n: m + s * noise.randn(m.shape, m) for n, m, s in zip(self.names, self.mu, self.sigmas())}
        return functional_call(self.model, weights, (x,))

    def predictive_samplers(self, k: int) -> list[Sampler]:
        """k calls of `sample_logits`, each a fresh draw."""
        return [self.sample_logits] * k

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Adam step down F on x (R, B, D) (labels y (R, B)); returns F per replica (R,)."""
        t = self.model.target(x, y)
        nll = sum(self.model.nll(self.sample_logits(x), t).mean(1) for _ in range(self.train_samples))
        objective = nll / self.train_samples + self.kl_per_example()
        self.opt.zero_grad(set_to_none=True)
        objective.sum().backward()  # replicas have disjoint parameters
        self.opt.step()
        return {"batch_objective": objective.detach()}

    @torch.no_grad()
    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """The k-sample predictive of a classifier (bench.workloads.predictive) and the KL per
        training example; only the KL for autoencoders/regression."""
        out = {"kl_per_example": self.kl_per_example()}
        if self.model.loss == "categorical" and y is not None:
            out |= bma_metrics(self.predictive_samplers(k), x, y, self.classes_seen)
        return out
