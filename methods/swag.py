"""SWAG (Maddox, Izmailov, Garipov, Vetrov & Wilson, "A Simple Baseline for Bayesian Uncertainty in
Deep Learning", NeurIPS 2019, arXiv 1902.02476, Algorithm 1): a Gaussian posterior over every weight
and bias of an MLP fitted to the SGD iterates.

Training is SGD with momentum on the model's objective h = mean_b -log p(t_b | x_b) + l2/2
||theta||^2 at a constant step size (the paper decays it to a constant SWA rate before collecting;
here one rate throughout). From the end of epoch ``swa_start`` on, every c = steps_per_epoch //
``snapshots_per_epoch`` updates (c >= 1; the paper's c is one epoch), the iterate theta_i (R, P)
is collected (Algorithm 1, in float64):

    theta_bar <- (n theta_bar + theta_i) / (n + 1),   theta2_bar <- (n theta2_bar + theta_i^2) / (n + 1)
    D <- the last ``rank`` deviations theta_i - theta_bar (theta_bar the running mean after theta_i)

and the posterior is N(theta_SWA, Sigma_diag / 2 + D^T D / (2 (K' - 1))) with theta_SWA =
theta_bar, Sigma_diag = theta2_bar - theta_bar^2 (clamped at 0) and K' = the number of stored
deviations (the paper's K once K snapshots are in; the low-rank term is left out while K' < 2).
A sample (Sec. 3.2) is theta_SWA + Sigma_diag^(1/2) z1 / sqrt(2) + D^T z2 / sqrt(2 (K' - 1)),
z1 ~ N(0, I_P), z2 ~ N(0, I_K'), drawn through bench.nn.noise (replica r's from its own generator).
No batch-norm refresh (the MLP has none).

The harness's model holds the SGD iterate, so the ``mlp`` workload's standard metrics (loss, error,
the tuning metric) are the iterate's. Predictive (``extra_metrics``, bench.workloads.predictive):
the averaged softmax of k posterior samples and their spread (mutual information); before the first
snapshot the posterior is a point mass at the current iterate (one sample, mutual information 0).

Defaults: SGD lr 0.05, momentum 0.9, collection from the end of epoch 5, one snapshot per epoch,
rank K = 20 (the paper's). `tunable`: lr. Raises ConfigError for rank < 2, swa_start < 0 or
snapshots_per_epoch < 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from bench.core.errors import ConfigError
from bench.models.mlp import MLP
from bench.nn import noise
from bench.workloads.method import Method, register
from bench.workloads.predictive import bma_metrics


class SWAGMoments:
    """The running moments of Algorithm 1 for R replicas of P parameters, float64: `mean` and
    `sq_mean` (R, P), `deviations` (R, K', P) with K' <= rank, `n` snapshots collected."""

    def __init__(self, replicas: int, size: int, rank: int, device: torch.device | str = "cpu"):
        self.rank, self.n = rank, 0
        self.mean = torch.zeros(replicas, size, dtype=torch.float64, device=device)
        self.sq_mean = torch.zeros_like(self.mean)
        self.deviations = self.mean.new_zeros(replicas, 0, size)

    def collect(self, theta: Tensor) -> None:
        """Add one snapshot theta (R, P)."""
        theta = theta.detach().double()
        self.mean = (self.n * self.mean + theta) / (self.n + 1)
        self.sq_mean = (self.n * self.sq_mean + theta.square()) / (self.n + 1)
        self.n += 1
        self.deviations = torch.cat([self.deviations, (theta - self.mean).unsqueeze(1)], 1)[:, -self.rank:]

    def variance(self) -> Tensor:
        """Sigma_diag = theta2_bar - theta_bar^2, clamped at 0: (R, P)."""
        return (self.sq_mean - self.mean.square()).clamp_min(0.0)

    def covariance(self) -> Tensor:
        """The posterior covariance Sigma_diag / 2 + D^T D / (2 (K' - 1)), dense: (R, P, P) (for
        tests and small models)."""
        cov = torch.diag_embed(self.variance() / 2)
        k = self.deviations.shape[1]
        if k >= 2:
            cov = cov + self.deviations.transpose(1, 2) @ self.deviations / (2 * (k - 1))
        return cov

    def sample(self) -> Tensor:
        """One posterior sample per replica, (R, P), float64, noise through bench.nn.noise."""
        theta = self.mean + (self.variance() / 2).sqrt() * noise.randn(self.mean.shape, self.mean)
        k = self.deviations.shape[1]
        if k >= 2:
            z = noise.randn((self.mean.shape[0], k), self.mean)
            theta = theta + torch.einsum("rk,rkp->rp", z, self.deviations) / math.sqrt(2 * (k - 1))
        return theta


@register("swag", family="mlp",
          defaults={"lr": 0.05, "momentum": 0.9, "swa_start": 5, "snapshots_per_epoch": 1, "rank": 20})
class SWAG(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        if not isinstance(self.rank, int) or self.rank < 2:
            raise ConfigError(f"swag: rank (K, the deviations kept) must be an integer >= 2; got {self.rank!r}")
        if self.swa_start < 0 or not isinstance(self.snapshots_per_epoch, int) or self.snapshots_per_epoch < 1:
            raise ConfigError(f"swag: swa_start must be >= 0 epochs and snapshots_per_epoch an integer >= 1; got "
                              f"{self.swa_start!r} and {self.snapshots_per_epoch!r}")
        self.names = [name for name, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)
        self.moments = SWAGMoments(model.replicas, sum(s[1:].numel() for s in self.shapes), self.rank,
                                   model.weights[0].device)
        self.updates = 0

    def flat_parameters(self) -> Tensor:
        """The model's parameters flattened per replica: (R, P)."""
        return torch.cat([p.detach().flatten(1) for p in self.model.parameters()], 1)

    def collects(self, batch_size: int) -> bool:
        """Whether the update just made (number self.updates) is a snapshot of Algorithm 1."""
        per_epoch = self.training_examples() // batch_size
        since = self.updates - round(self.swa_start * per_epoch)
        return since > 0 and since % max(1, per_epoch // self.snapshots_per_epoch) == 0

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One SGD step down h on x (R, B, D) (labels y (R, B)), then a snapshot when one is due;
        returns h (R,)."""
        h = self.model.objective(x, y)
        self.opt.zero_grad(set_to_none=True)
        h.sum().backward()  # replicas have disjoint parameters
        self.opt.step()
        self.updates += 1
        if self.collects(x.shape[1]):
            self.moments.collect(self.flat_parameters())
        return {"batch_objective": h.detach()}

    def sample_logits(self, x: Tensor) -> Tensor:
        """The network's output on x (R, N, D) under one SWAG sample per replica: (R, N, out)."""
        like = self.model.weights[0]
        chunks = self.moments.sample().to(like.dtype).split([s[1:].numel() for s in self.shapes], 1)
        weights = {n: c.reshape(s) for n, c, s in zip(self.names, chunks, self.shapes)}
        return functional_call(self.model, weights, (x,))

    @torch.no_grad()
    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """The k-sample SWAG predictive of a classifier (bench.workloads.predictive) and the number
        of snapshots; only the latter otherwise."""
        out = {"swag_snapshots": torch.full((self.model.replicas,), float(self.moments.n))}
        if self.model.loss == "categorical" and y is not None:
            samplers = [self.sample_logits] * k if self.moments.n else [self.model]
            out |= bma_metrics(samplers, x, y, self.classes_seen)
        return out
