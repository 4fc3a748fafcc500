"""Monte Carlo dropout (Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model
Uncertainty in Deep Learning", ICML 2016, arXiv 1506.02142): dropout at training and at test time,
the test-time passes read as samples of an approximate posterior over the weights.

Dropout here masks the input of every layer after the first (each hidden layer's activations),
and of the first too when ``drop_input`` is set: a unit is kept with probability 1 - p and a kept
unit is scaled by 1 / (1 - p) (inverted dropout, so the deterministic network `model(x)` is the
usual weight-scaling approximation, and the ``mlp`` workload's standard metrics are its). A mask
per example, unit and replica, drawn through bench.nn.noise (replica r's slice from its own
generator). The training objective is the model's, with dropout, by Adam:

    h = mean_b -log p(t_b | x_b, masked network) + l2/2 ||theta||^2

(Gal & Ghahramani eq. 1; the model's l2 is the paper's weight decay lambda, which their eq. 7 ties
to the prior length-scale, precision and N). Predictive (``extra_metrics``,
bench.workloads.predictive): k stochastic passes, their averaged softmax (``bma_nll``,
``bma_error``, ``bma_ece``) and the across-pass spread (mutual information) on the evaluated inputs
and on a white-noise probe (the paper's eq. 8 with T = k).

Defaults: Adam lr 1e-3, p = 0.5 on the hidden layers (the paper's MNIST networks and the
tutorial's BayesianMnist), no input dropout. `tunable`: lr. Raises ConfigError unless 0 <= p < 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.mlp import ACTIVATIONS, MLP
from bench.nn import noise
from bench.workloads.method import Method, Sampler, register
from bench.workloads.predictive import bma_metrics


def dropout_forward(model: MLP, x: Tensor, p: float, drop_input: bool) -> Tensor:
    """The output z (R, N, out) of the network on x (R, N, D) with fresh dropout masks (keep
    probability 1 - p, kept units scaled by 1 / (1 - p)) on the inputs of every layer but the first
    (and of the first when drop_input). With p = 0 it is model(x) exactly."""
    a = x
    for i, (w, act) in enumerate(zip(model.weights, model.activations)):
        if i > 0 or drop_input:
            a = a * (noise.rand(a.shape, a) >= p).to(a.dtype) / (1.0 - p)
        s = torch.bmm(a, w.transpose(1, 2))
        if model.biases is not None:
            s = s + model.biases[i].unsqueeze(1)
        a = ACTIVATIONS[act](s)
    return a


@register("mc_dropout", family="mlp", defaults={"lr": 1e-3, "p": 0.5, "drop_input": False})
class MCDropout(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        if not 0.0 <= self.p < 1.0:
            raise ConfigError(f"mc_dropout: the drop probability p must lie in [0, 1); got {self.p!r}")
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)

    def sample_logits(self, x: Tensor) -> Tensor:
        """One stochastic pass on x (R, N, D): (R, N, out)."""
        return dropout_forward(self.model, x, self.p, self.drop_input)

    def predictive_samplers(self, k: int) -> list[Sampler]:
        """k calls of `sample_logits`, each a fresh draw."""
        return [self.sample_logits] * k

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Adam step down h with dropout on x (R, B, D) (labels y (R, B)); returns h (R,)."""
        self.opt.zero_grad(set_to_none=True)
        h = self.model.objective(x, y, z=self.sample_logits(x))
        h.sum().backward()  # replicas have disjoint parameters
        self.opt.step()
        return {"batch_objective": h.detach()}

    @torch.no_grad()
    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """The k-pass predictive of a classifier (bench.workloads.predictive); none otherwise."""
        if self.model.loss != "categorical" or y is None:
            return {}
        return bma_metrics(self.predictive_samplers(k), x, y, self.classes_seen)
