"""Predictive coding (PC) training of an MLP classifier with a value node on every hidden layer and a
chosen distribution per node: Pinchetti, Salvatori, Yordanov, Millidge, Song & Lukasiewicz,
"Predictive Coding beyond Gaussian Distributions", NeurIPS 2022 (arXiv 2211.03481), whose energy is
a divergence between each node and its predicted distribution (for a point-valued node, its negative
log-density under the prediction), and Whittington & Bogacz 2017 (Neural Computation 29(5)) for
the small-error limit.

Graph (``mlp`` family, ``layers = [D, h_1, ..., h_{L-1}, C]``): the input x_0 is clamped; hidden
layer l has a value node x_l (R, B, h_l) in place of its pre-activation, predicted by
mu_l = phi_l-1(x_{l-1}) W_l^T + b_l (phi_0 the identity, phi_l the layer's activation); the output
mu_L is predicted the same way and read against the target t (the label, clamped). Per example
(nats; sums over the units):

    F = sum_{l < L} E_hidden(x_l; mu_l, s) + E_out(t; mu_L),

* ``hidden``: E_hidden = -log p(x_l | mu_l) of a location family of scale ``scale`` s, with
  u = (x_l - mu_l) / s: ``gaussian`` N(mu, s^2): u^2 / 2 + log s + log(2 pi) / 2; ``logistic``
  (density e^{-u} / (s (1 + e^{-u})^2)): u + 2 softplus(-u) + log s.
* ``output``: ``categorical`` (PC_F_KL: the KL from the label's one-hot distribution to the
  predicted softmax(mu_L)) -log softmax(mu_L)_t, backprop's cross-entropy; ``gaussian`` (standard
  PC_F: a unit-variance Gaussian at the one-hot code e_t) |e_t - mu_L|^2 / 2.

One ``step``: a feed-forward pass sets x_l = mu_l (every E_hidden at its minimum); T = ``iterations``
inference steps with the weights fixed, x_l <- x_l - lr_x dF/dx_l / c, c = E_hidden's curvature at
its minimum (1 / s^2 Gaussian, 1 / (2 s^2) logistic: one lr_x is stable at every scale); then one
Adam step on the weights, on the minibatch mean of F at the inferred nodes (each W_l sees only its
own layer's error: the update is local).

Small-error limit: at the inference fixed point, delta_l = dE_hidden/dmu_l satisfies delta_l =
(dmu_{l+1}/dx_l)^T delta_{l+1} with delta_L = dE_out/dmu_L, backprop's recursion, evaluated at the
nodes; as s -> 0 the nodes tend to the feed-forward pass (x_l - mu_l = O(s^2)), so PC's weight
gradient tends to backprop's gradient of E_out for any smooth location family whose energy has a
positive curvature at its minimum (tests/test_pc_mlp.py checks both families and both outputs
against autograd in float64). At s = 1 it is a different update.

Replicas: every tensor carries the model's leading replica axis R; replicas never mix. ``step``
returns 'energy' (R,), the mean over the minibatch of F at the inferred nodes, and
'batch_objective' (R,), the mean output energy at the feed-forward pass before the update (for the
categorical output the minibatch's cross-entropy, the workload's health checks' curve).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.mlp import ACTIVATIONS, MLP
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register

HIDDEN = ("gaussian", "logistic")
OUTPUTS = ("categorical", "gaussian")
CURVATURE = {"gaussian": 1.0, "logistic": 0.5}  # E_hidden'' at its minimum, times s^2


def hidden_energy(x: Tensor, mu: Tensor, scale: float, family: str) -> Tensor:
    """-log p(x | mu) of a location family ('gaussian' or 'logistic') of scale `scale`, summed over
    the last axis: x, mu (..., h) -> (...), nats."""
    u = (x - mu) / scale
    if family == "gaussian":
        per_unit = 0.5 * u.square() + 0.5 * math.log(2 * math.pi)
    else:
        per_unit = u + 2 * F.softplus(-u)
    return (per_unit + math.log(scale)).sum(-1)


def output_energy(mu: Tensor, t: Tensor, family: str) -> Tensor:
    """E_out per example: mu (R, B, C) the predicted output, t (R, B) the labels -> (R, B), nats;
    'categorical' -log softmax(mu)_t, 'gaussian' |e_t - mu|^2 / 2."""
    if family == "categorical":
        return F.cross_entropy(mu.transpose(1, 2), t, reduction="none")
    return 0.5 * (F.one_hot(t, mu.shape[-1]).to(mu.dtype) - mu).square().sum(-1)


@register("pc_mlp", family="mlp", defaults={
    "hidden": "gaussian", "output": "categorical", "scale": 1.0, "iterations": 20, "lr_x": 0.5, "lr": 1e-3,
}, choices={"hidden": HIDDEN, "output": OUTPUTS})
class PCMLP(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        if model.loss != "categorical" or len(model.layers) < 3 or model.l2:
            raise ConfigError(f"pc_mlp trains a classifier with hidden layers and no weight cost (loss categorical, "
                              f"layers [D, h, ..., C], l2 0); got loss {model.loss!r}, layers {model.layers}, "
                              f"l2 {model.l2}")
        if self.iterations < 0 or not 0 < self.lr_x <= 1 or self.scale <= 0:
            raise ConfigError(f"pc_mlp needs iterations >= 0, 0 < lr_x <= 1 and scale > 0; got {self.iterations}, "
                              f"{self.lr_x}, {self.scale}")
        self.opt = make_optimizer(model.parameters(), "adam", self.lr)

    def predict(self, below: Tensor, layer: int) -> Tensor:
        """mu_layer (R, B, out) from the node (or input, layer 0) below it, `below` (R, B, in)."""
        a = below if layer == 0 else ACTIVATIONS[self.model.activations[layer - 1]](below)
        mu = torch.bmm(a, self.model.weights[layer].transpose(1, 2))
        return mu if self.model.biases is None else mu + self.model.biases[layer].unsqueeze(1)

    def free_energy(self, x: Tensor, nodes: list[Tensor], t: Tensor) -> Tensor:
        """F per example (module docstring) for the input x (R, B, D), the hidden nodes (R, B, h_l)
        and the labels t (R, B): (R, B), nats."""
        below = [x, *nodes]
        energy = output_energy(self.predict(below[-1], len(nodes)), t, self.output)
        for layer, node in enumerate(nodes):
            energy = energy + hidden_energy(node, self.predict(below[layer], layer), self.scale, self.hidden)
        return energy

    def infer(self, x: Tensor, t: Tensor) -> tuple[list[Tensor], Tensor]:
        """The hidden nodes after ``iterations`` inference steps from the feed-forward pass, the
        weights fixed (each (R, B, h_l), detached), and the feed-forward output energy (R, B)."""
        with torch.no_grad():
            nodes = [x]
            for layer in range(len(self.model.layers) - 2):
                nodes.append(self.predict(nodes[-1], layer))
            nodes = nodes[1:]
            feed_forward = output_energy(self.predict(nodes[-1], len(nodes)), t, self.output)
        step = self.lr_x * self.scale ** 2 / CURVATURE[self.hidden]
        for _ in range(self.iterations):
            nodes = [node.requires_grad_(True) for node in nodes]
            grads = torch.autograd.grad(self.free_energy(x, nodes, t).sum(), nodes)
            nodes = [(node - step * grad).detach() for node, grad in zip(nodes, grads)]
        return nodes, feed_forward

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        t = self.model.target(x, y)
        nodes, feed_forward = self.infer(x, t)
        energy = self.free_energy(x, nodes, t)
        self.opt.zero_grad(set_to_none=True)
        energy.mean(1).sum().backward()
        self.opt.step()
        return {"energy": energy.detach().mean(1), "batch_objective": feed_forward.mean(1)}
