"""Last-layer Laplace approximation (MacKay 1992; Daxberger, Kristiadi, Immer, Eschenhagen, Bauer &
Hennig, "Laplace Redux -- Effortless Bayesian Deep Learning", NeurIPS 2021, arXiv 2106.14806, the
laplace-torch library's `LLLaplace`): a MAP network, then a Gaussian posterior over its last layer.

Training is Adam on the model's objective h = mean_b -log p(t_b | x_b) + l2/2 ||theta||^2, as the
single network of deep_ensemble. The posterior is fitted at each evaluation, at the current weights,
on the training examples the method was given in its first epoch (it keeps them: R x N x D values),
over the last layer's theta = [W_L | b_L] (C, H + 1) (row-major; H the last hidden width, the bias
column when the model has biases), with features phi = [a_{L-1}, 1] and p = softmax(z):

    precision = G + delta I,  G = sum_n (diag p_n - p_n p_n^T) (x) phi_n phi_n^T

the generalised Gauss-Newton matrix of the summed NLL (for the last layer, which is linear in its
weights, the exact Hessian of the NLL; Laplace Redux sec. 3), ``hessian: full``; or its Kronecker
factorisation (Martens & Grosse 2015) G ~ (sum_n Lambda_n) (x) (sum_n phi_n phi_n^T) / N,
``hessian: kron`` (the library's default). The prior N(0, I / delta) is on the last layer; delta
maximises the Laplace log marginal likelihood, as the library's ``optimize_prior_precision(method=
'marglik')`` does (there by Adam on log delta; here the same objective solved by bisection):

    log Z(delta) = log p(D | theta) - delta/2 ||theta||^2 + P/2 log delta - 1/2 sum_i log(lambda_i + delta) + const

with lambda_i the eigenvalues of G (kron: products of the factors' eigenvalues), P = C (H + 1);
its stationary point is MacKay's gamma(delta) = sum_i lambda_i / (lambda_i + delta) = delta
||theta||^2, unique since the left side falls and the right rises with delta.

Predictive (``extra_metrics``, bench.workloads.predictive): Monte Carlo, not the probit
approximation: k last-layer samples theta + precision^(-1/2) z, their averaged softmax and spread
(mutual information). Before the first epoch ends (no training set kept yet) the posterior is a
point mass at the current network (one sample, mutual information 0). The ``mlp`` workload's
standard metrics are the MAP network's. Reports ``prior_precision`` (delta, per replica).

Defaults: Adam lr 1e-3, hessian kron. `tunable`: lr. Raises ConfigError for a model whose loss is
not categorical.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.mlp import MLP
from bench.nn import noise
from bench.workloads.method import Method, register
from bench.workloads.predictive import bma_metrics

LOG_DELTA_RANGE = (-12 * math.log(10), 12 * math.log(10))  # the prior precisions bisection searches
BISECTIONS = 80


def last_layer(model: MLP, x: Tensor) -> tuple[Tensor, Tensor]:
    """The last layer's features phi (R, N, H [+ 1 with biases]) on x (R, N, D) and its weights
    theta (R, C, H [+ 1]), float64."""
    phi = model.forward_layers(x)[0][-1].double()
    theta = model.weights[-1].double()
    if model.has_bias:
        phi = torch.cat([phi, torch.ones_like(phi[..., :1])], -1)
        theta = torch.cat([theta, model.biases[-1].double().unsqueeze(-1)], -1)
    return phi, theta


class LastLayerLaplace:
    """N(theta, (G + delta I)^-1) over the last layer of R replicas, G from the features phi (R, N, H')
    and class probabilities p (R, N, C) of the training examples, full or Kronecker-factored,
    delta by marginal likelihood (module docstring)."""

    def __init__(self, phi: Tensor, p: Tensor, theta: Tensor, kron: bool):
        self.theta, self.kron = theta, kron
        lam = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (R, N, C, C)
        r, c, h = theta.shape
        if kron:
            a, self.u_out = torch.linalg.eigh(lam.sum(1))
            b, self.u_in = torch.linalg.eigh(phi.transpose(1, 2) @ phi / phi.shape[1])
            self.eigvals = (a.clamp_min(0).unsqueeze(-1) * b.clamp_min(0).unsqueeze(-2)).reshape(r, c * h)
        else:
            ggn = torch.einsum("rncd,rnh,rng->rchdg", lam, phi, phi).reshape(r, c * h, c * h)
            eigvals, self.basis = torch.linalg.eigh(ggn)
            self.eigvals = eigvals.clamp_min(0)
        self.prior_precision = self.maximise_evidence()

    def log_evidence(self, delta: Tensor) -> Tensor:
        """log Z(delta) less the terms free of delta, per replica: delta (R,) -> (R,)."""
        size = self.eigvals.shape[1]
        return (-delta / 2 * self.theta.square().flatten(1).sum(1) + size / 2 * delta.log()
                - 0.5 * (self.eigvals + delta.unsqueeze(1)).log().sum(1))

    def maximise_evidence(self) -> Tensor:
        """The delta (R,) at which gamma(delta) = delta ||theta||^2, by bisection on log delta in
        LOG_DELTA_RANGE (an end when the root lies beyond it)."""
        sq_norm = self.theta.square().flatten(1).sum(1)
        lo = torch.full_like(sq_norm, LOG_DELTA_RANGE[0])
        hi = torch.full_like(sq_norm, LOG_DELTA_RANGE[1])
        for _ in range(BISECTIONS):
            mid = (lo + hi) / 2
            delta = mid.exp()
            rising = (self.eigvals / (self.eigvals + delta.unsqueeze(1))).sum(1) > delta * sq_norm
            lo, hi = torch.where(rising, mid, lo), torch.where(rising, hi, mid)
        return ((lo + hi) / 2).exp()

    def scales(self) -> Tensor:
        """(lambda_i + delta)^(-1/2), (R, P): the posterior's standard deviations along the eigenbasis."""
        return (self.eigvals + self.prior_precision.unsqueeze(1)).rsqrt()

    def covariance(self) -> Tensor:
        """(G + delta I)^-1, dense, (R, P, P), row-major over theta (for tests and small layers)."""
        basis = self.basis if not self.kron else torch.einsum(
            "rci,rhj->rchij", self.u_out, self.u_in).flatten(3).flatten(1, 2)
        return basis @ torch.diag_embed(self.scales().square()) @ basis.transpose(1, 2)

    def sample(self) -> Tensor:
        """One last layer per replica, theta + (G + delta I)^(-1/2) z: (R, C, H'), z through
        bench.nn.noise, with the symmetric square root (unique where eigenvalues repeat, as they do
        for dead units: a seed's draws do not depend on which eigenbasis a batched eigh returns)."""
        z = noise.randn(self.eigvals.shape, self.theta)
        if self.kron:
            rotated = self.u_out.transpose(1, 2) @ z.reshape(self.theta.shape) @ self.u_in
            step = self.u_out @ (rotated * self.scales().reshape(self.theta.shape)) @ self.u_in.transpose(1, 2)
        else:
            rotated = (self.basis.transpose(1, 2) @ z.unsqueeze(-1)).squeeze(-1)
            step = (self.basis @ (rotated * self.scales()).unsqueeze(-1)).reshape(self.theta.shape)
        return self.theta + step


@register("laplace", family="mlp", defaults={"lr": 1e-3, "hessian": "kron"}, choices={"hessian": ("kron", "full")})
class Laplace(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        if model.loss != "categorical":
            raise ConfigError(f"laplace: the last-layer Laplace here is for classifiers (loss: categorical); "
                              f"got loss {model.loss!r}")
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        self.updates = 0
        self.seen: list[tuple[Tensor, Tensor]] = []  # the first epoch's minibatches
        self.train_x: Tensor | None = None
        self.train_y: Tensor | None = None

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Adam step down h on x (R, B, D) with labels y (R, B), keeping the first epoch's
        examples; returns h (R,)."""
        h = self.model.objective(x, y)
        self.opt.zero_grad(set_to_none=True)
        h.sum().backward()  # replicas have disjoint parameters
        self.opt.step()
        self.updates += 1
        if self.train_x is None:
            self.seen.append((x.detach(), y))
            if self.updates == self.training_examples() // x.shape[1]:
                self.train_x, self.train_y = (torch.cat(parts, 1) for parts in zip(*self.seen))
                self.seen = []
        return {"batch_objective": h.detach()}

    @torch.no_grad()
    def posterior(self) -> LastLayerLaplace:
        """The last-layer Laplace at the current weights on the kept training examples. Raises
        RuntimeError before the first epoch has ended."""
        if self.train_x is None:
            raise RuntimeError("laplace: no training set kept yet (the first epoch has not ended)")
        phi, theta = last_layer(self.model, self.train_x)
        p = F.softmax(torch.bmm(phi, theta.transpose(1, 2)), -1)
        return LastLayerLaplace(phi, p, theta, self.hessian == "kron")

    @torch.no_grad()
    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """The k-sample last-layer predictive (bench.workloads.predictive) and the prior precision;
        the point mass at the network before the first epoch ends."""
        if y is None:
            return {}
        if self.train_x is None:
            return bma_metrics([self.model], x, y, self.classes_seen)
        posterior = self.posterior()
        phi = last_layer(self.model, x)[0]

        def sample_logits(inputs: Tensor) -> Tensor:
            features = phi if inputs is x else last_layer(self.model, inputs)[0]
            return torch.bmm(features, posterior.sample().transpose(1, 2))

        return {"prior_precision": posterior.prior_precision,
                **bma_metrics([sample_logits] * k, x, y, self.classes_seen)}
