"""Fully connected networks with a replica axis: the deep autoencoders of Martens & Grosse (2015)
and the classifiers of Benzing (2022), trained by the curvature methods in ``methods/``.

``layers = [D_in, h_1, ..., D_out]``; layer l maps a_{l-1} (R, B, in) to the pre-activation
s_l = a_{l-1} W_l^T + b_l (R, B, out) with W_l (R, out, in), b_l (R, out), and a_l = phi_l(s_l).
The last pre-activation is the output z, read by the loss through its canonical link:

* ``bernoulli``: -log p(t | z) = sum_d softplus(z_d) - t_d z_d (sigmoid outputs, cross-entropy),
* ``gaussian``:  0.5 ||z - t||^2 (linear outputs, unit variance),
* ``categorical``: -log softmax(z)_t (classifiers; t is the label).

Autoencoders (bernoulli/gaussian) reconstruct their input (t = x); classifiers read the labels.
The training objective is h(theta) = mean_n -log p(t_n | x_n) + l2/2 ||theta||^2 (biases decayed
too, as in Martens' nnet_train_2.m). Replicas never share parameters: every product is a bmm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise
from bench.nn.bernoulli import bernoulli_log_prob, sample_bernoulli

ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "linear": lambda s: s}
LOSSES = ("bernoulli", "gaussian", "categorical")
INITS = ("sparse", "kaiming")
REFERENCES = (None, "nuts")  # the mlp workload's reference posteriors (bench.workloads.mlp)
SPARSE_FAN_IN = 15  # Martens (2010) sparse init: 15 non-zero incoming weights per unit


def _init_weight(n_in: int, n_out: int, init: str, g: torch.Generator) -> Tensor:
    """'sparse': each unit gets min(15, n_in) incoming weights ~ N(0, 1), the rest 0 (Martens 2010,
    the K-FAC code's default); 'kaiming': N(0, 2 / n_in) (PyTorch's kaiming_normal_ for ReLU,
    Benzing's SimpleFCNet)."""
    if init == "kaiming":
        return torch.randn(n_out, n_in, generator=g) * math.sqrt(2.0 / n_in)
    w = torch.zeros(n_out, n_in)
    k = min(SPARSE_FAN_IN, n_in)
    for i in range(n_out):
        w[i, torch.randperm(n_in, generator=g)[:k]] = torch.randn(k, generator=g)
    return w


class Network(nn.Module):
    """What the replica-axis networks trained by the optimizers share (MLP, and the convnets of
    bench.models.convnet): the output distribution read through its canonical link (`loss`:
    bernoulli, gaussian or categorical, see the module's docstring), the weight cost `l2` and the
    training objective h. A subclass sets `loss`, `l2` and `replicas` and implements forward,
    x (R, B, D) -> z (R, B, out)."""

    loss: str
    l2: float
    replicas: int
    reference: str | None = None  # a reference posterior the workload measures predictives against (MLP only)
    reference_posterior: object | None = None  # its draws, set by the workload's prepare

    def like(self, seeds: list[int]) -> Network:
        """A new network of this one's configuration, one replica per seed, freshly initialised
        from those seeds (by the same scheme), on the device and dtype of this one's parameters
        (deep ensembles' further members)."""
        raise NotImplementedError

    def target(self, x: Tensor, y: Tensor | None) -> Tensor:
        """What the output predicts: the labels for classifiers, the input for autoencoders."""
        if self.loss == "categorical":
            if y is None:
                raise ValueError("a classifier needs labels: set `labels: true` in the claim")
            return y
        return x

    def nll(self, z: Tensor, t: Tensor) -> Tensor:
        """-log p(t | z) per example, summed over output units: (R, B)."""
        if self.loss == "bernoulli":
            return -bernoulli_log_prob(t, z)
        if self.loss == "gaussian":
            return 0.5 * (z - t).square().sum(-1)
        return F.cross_entropy(z.transpose(1, 2), t, reduction="none")

    def sample(self, z: Tensor) -> Tensor:
        """t ~ p(t | z), the model's predictive: the targets of the true (sampled-label) Fisher.
        Written so that NaN logits give NaN losses downstream rather than an exception."""
        if self.loss == "bernoulli":
            return sample_bernoulli(z)
        if self.loss == "gaussian":
            return z + noise.randn(z.shape, z)
        gumbel = -torch.log(-torch.log(noise.rand(z.shape, z)))  # Gumbel-max: no error on NaN logits,
        return (z + gumbel).argmax(-1)  # so the loop records a diverged replica instead of crashing

    def output_metric(self, z: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """u^T H v per example, H = d^2(-log p(t|z))/dz^2 the loss Hessian in z (which does not
        depend on t for these canonical links, so the GGN equals the Fisher): (R, B)."""
        if self.loss == "gaussian":
            return (u * v).sum(-1)
        if self.loss == "bernoulli":
            p = torch.sigmoid(z)
            return (p * (1 - p) * u * v).sum(-1)
        p = torch.softmax(z, -1)
        return (p * u * v).sum(-1) - (p * u).sum(-1) * (p * v).sum(-1)

    # ----------------------------------------------------------------- objective
    def penalty(self) -> Tensor:
        """l2/2 ||theta||^2 per replica: (R,)."""
        return 0.5 * self.l2 * sum(p.square().flatten(1).sum(1) for p in self.parameters())

    def objective(self, x: Tensor, y: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        """The training objective h per replica, (R,): mean -log p(t | x) plus the weight cost
        (z: the output for x when a forward pass has already computed it)."""
        z = self(x) if z is None else z
        return self.nll(z, self.target(x, y)).mean(1) + self.penalty()


@register_family("mlp")
class MLP(Network):
    """An MLP per replica. `activations` names the hidden units, one for all or one per hidden layer
    (sigmoid, tanh, relu, linear); `loss` fixes the output distribution (bernoulli, gaussian,
    categorical); `bias` adds biases (Benzing's nets have none); `l2` is the weight cost;
    `reference` names the gold-standard posterior the workload measures Bayesian methods'
    predictives against ('nuts': a one-layer categorical model with biases, softmax regression)."""

    def __init__(self, layers: list[int], seeds: list[int], activations: str | list[str] = "sigmoid",
                 loss: str = "bernoulli", bias: bool = True, init: str = "sparse", l2: float = 0.0,
                 reference: str | None = None):
        super().__init__()
        hidden = len(layers) - 2
        acts = [activations] * hidden if isinstance(activations, str) else list(activations)
        if len(acts) != hidden or any(a not in ACTIVATIONS for a in acts):
            raise ValueError(f"activations must be one of {sorted(ACTIVATIONS)} or a list of {hidden} of them; got {activations}")
        if loss not in LOSSES:
            raise ValueError(f"loss {loss!r}; use one of {LOSSES}")
        if init not in INITS:
            raise ValueError(f"init {init!r}; use one of {INITS}")
        if reference not in REFERENCES:
            raise ValueError(f"reference {reference!r}; use one of {REFERENCES}")
        if reference == "nuts" and (len(layers) != 2 or loss != "categorical" or not bias):
            raise ValueError(f"reference 'nuts' is softmax regression: one layer, loss categorical, biases; "
                             f"got layers {layers}, loss {loss!r}, bias {bias}")
        self.layers, self.activations, self.loss, self.l2 = list(layers), acts + ["linear"], loss, float(l2)
        self.reference = reference
        self.reference_posterior: object | None = None  # the workload's NUTS draws, set by its prepare (bench.workloads.mlp)
        self.init = init
        self.replicas = len(seeds)
        gens = noise.replica_generators(seeds)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([_init_weight(layers[i], layers[i + 1], init, g) for g in gens]))
            for i in range(len(layers) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(len(seeds), n)) for n in layers[1:]
        ) if bias else None

    def like(self, seeds: list[int]) -> MLP:
        return MLP(self.layers, seeds, activations=self.activations[:-1], loss=self.loss, bias=self.has_bias,
                   init=self.init, l2=self.l2, reference=self.reference).to(self.weights[0])

    @property
    def has_bias(self) -> bool:
        return self.biases is not None

    def layer_params(self) -> list[list[nn.Parameter]]:
        """Per layer: [W_l] or [W_l, b_l], the blocks the curvature methods precondition."""
        if self.biases is None:
            return [[w] for w in self.weights]
        return [[w, b] for w, b in zip(self.weights, self.biases)]

    # ----------------------------------------------------------------- forward
    def forward_layers(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Layer inputs a_{l-1} (R, B, in) and pre-activations s_l (R, B, out), in the graph;
        the last pre-activation is the output z."""
        inputs, pre = [], []
        a = x
        for i, (w, act) in enumerate(zip(self.weights, self.activations)):
            inputs.append(a)
            s = torch.bmm(a, w.transpose(1, 2))
            if self.biases is not None:
                s = s + self.biases[i].unsqueeze(1)
            pre.append(s)
            a = ACTIVATIONS[act](s)
        return inputs, pre

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_layers(x)[1][-1]
