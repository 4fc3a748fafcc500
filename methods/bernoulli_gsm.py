"""Variational Bernoulli-gate pruning with a spike-and-slab (two-scale Gaussian scale mixture)
prior: structured Bayesian pruning of an MLP's input features and hidden units (issue 13, research
notes P5; the paper the notes describe was not identified, so this is the notes' operational
definition, built from the sources named below).

Gates. Layer l's input unit i (an input feature for l = 1, hidden unit i of layer l - 1 after
that) carries a gate z_li in {0, 1} that multiplies its activation, so the effective weights of the
column are theta_l[:, i] = z_li W_l[:, i]: a gate switched off removes the unit with all its
outgoing weights (Louizos, Ullrich & Welling 2017, "Bayesian Compression for Deep Learning", the
group = a layer's input unit).

Prior (per column): z_li ~ Bernoulli(prior_pi), W_l[:, i] ~ N(0, prior_sigma^2 I), so each
effective weight has the Gaussian scale mixture prior (1 - prior_pi) delta_0 + prior_pi
N(0, prior_sigma^2), the spike-and-slab (Mitchell & Beauchamp 1988) as a GSM whose scale is 0 or
prior_sigma. Posterior: q(z_li) = Bernoulli(pi_li), pi = sigmoid(gate logit), and q(W | z = 1) =
prod N(mu, sigma^2) with sigma = softplus(rho), q(W | z = 0) = the prior (an unused weight is not
learned), the spike-and-slab family of Titsias & Lazaro-Gredilla (2011, "Spike and Slab
Variational Inference for Multi-Task and Multiple Kernel Learning", eq. 7), whose KL is closed-form:

    KL(q || p) = sum_{l,i} [ KL(Bern(pi_li) || Bern(prior_pi)) + pi_li sum_j KL(N(mu_lji, sigma_lji^2) || N(0, prior_sigma^2)) ]

Biases are point estimates without a prior (a pruned hidden unit's bias is removed with it).

Objective per replica, on a minibatch of B examples (the ELBO per example, as Bayes by backprop):

    F = mean_b -log p(t_b | x_b, z_b, W_b) + KL(q || p) / N

with one draw of (z, W) per example: the weights by local reparameterisation (Kingma, Salimans &
Welling 2015, "Variational Dropout and the Local Reparameterization Trick", eq. 6: the
pre-activation s = a mu^T + sqrt(a^2 (sigma^2)^T) eps), the gates by the straight-through
Gumbel estimator for binary variables (Jang, Gu & Poole 2017, "Categorical Reparameterization with
Gumbel-Softmax", sec. 2.2; Bengio, Leonard & Courville 2013): the forward pass uses the exact
Bernoulli sample z = 1[logit(pi) + logit(u) > 0], u ~ U(0, 1), the backward pass the gradient of
its binary-Concrete relaxation sigmoid((logit(pi) + logit(u)) / temperature) (Maddison, Mnih & Teh
2017, with their binary temperature 2/3). The likelihood term's gradient is therefore biased
(straight-through); the KL's is exact. N comes from ``prepare`` (the loop's training examples).
Adam minimises F, with step size lr for the weights' means and the biases and variational_lr for
the gate logits and rho (a short budget must let the gates and scales move as far as the means);
kl_warmup > 0 scales the KL by min(1, t / kl_warmup) at update t (linear KL annealing, Bowman et
al. 2016, Sonderby et al. 2016; the notes' pitfall: without it the gates of a large layer can all
close before the likelihood has shaped them).

Pruning (the notes' C5.3): a gate with pi < 0.5 is pruned. The harness's model holds the
deterministic pruned network, W_l = mu_l with the columns of pruned inputs and the rows of pruned
hidden units set to 0 (gates at their posterior mode, weights at their posterior mean), rewritten
after every step: the ``mlp`` workload's standard metrics (loss, error, ece) and the equal-budget
tuning's validation loss are those of the pruned network. ``extra_metrics``: ``weights_kept``
(the fraction of weight entries of all layers left non-zero after pruning propagates: entry (j, i)
of W_l is kept when input i of layer l and, below the output layer, hidden unit j are kept; biases
not counted), ``units_kept`` (the fraction of hidden units kept), ``inputs_kept`` (of input
features) and ``kl_per_example`` (nats).

Defaults: Adam lr 1e-3, variational_lr 1e-2, no KL warm-up; prior_pi 0.1 and prior_sigma 1 (the
notes' pi0 in 0.1-0.5; Bayes by backprop's N(0, 1) slab); gates start at init_pi 0.9 (every unit kept at epoch 0, so the
epoch-0 network is the model's initialisation), sigma at 0.01 (as methods/bayes_by_backprop.py).
Noise (u, eps) is drawn through bench.nn.noise, replica r's slice from its own generator.
`tunable`: lr. Raises ConfigError for an l2 weight cost on the model (the prior is the weight
cost), a probability outside (0, 1), or a training size N that is not a positive integer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import ConfigError, refuse_weight_cost
from bench.models.mlp import ACTIVATIONS, MLP
from bench.nn import noise
from bench.workloads.method import Method, register
from methods.bayes_by_backprop import gaussian_kl, inverse_softplus

TEMPERATURE = 2 / 3  # binary Concrete temperature of the backward pass (Maddison et al. 2017)


def bernoulli_kl(pi: Tensor, prior_pi: float) -> Tensor:
    """KL(Bernoulli(pi) || Bernoulli(prior_pi)) elementwise, nats: pi log(pi / prior_pi) +
    (1 - pi) log((1 - pi) / (1 - prior_pi)), with 0 log 0 = 0; pi any shape with values in [0, 1]."""
    return (torch.xlogy(pi, pi) - pi * math.log(prior_pi)
            + torch.xlogy(1 - pi, 1 - pi) - (1 - pi) * math.log(1 - prior_pi))


def straight_through_gate(logit: Tensor, u: Tensor) -> Tensor:
    """Gate samples z ~ Bernoulli(sigmoid(logit)) from uniforms u (same shape, broadcast): the
    value is the exact sample 1[logit + logit(u) > 0] (a 0 exactly, a 1 to rounding), the gradient
    that of the binary Concrete sigmoid((logit + logit(u)) / TEMPERATURE) (Jang et al. 2017,
    straight-through)."""
    noisy = logit + torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid(noisy / TEMPERATURE)
    return (noisy > 0).to(soft.dtype) + soft - soft.detach()


def kept_masks(gates: list[Tensor], n_out: int) -> list[Tensor]:
    """Per layer l, the mask (R, out_l, in_l) of weight entries the pruned network keeps, from the
    kept gates (R, in_l) of every layer's inputs and the n_out output units: entry (j, i) is kept
    when input i is kept and (below the output layer) hidden unit j, the input gate of layer l + 1."""
    outputs = gates[-1].new_ones(gates[-1].shape[0], n_out)
    rows = [g.unsqueeze(-1) for g in gates[1:] + [outputs]]
    return [row * g.unsqueeze(1) for g, row in zip(gates, rows)]


@register("bernoulli_gsm", family="mlp",
          defaults={"lr": 1e-3, "prior_pi": 0.1, "prior_sigma": 1.0, "init_pi": 0.9, "init_sigma": 0.01,
                    "variational_lr": 0.01, "kl_warmup": 0})
class BernoulliGSM(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        refuse_weight_cost("bernoulli_gsm", model.l2, "spike-and-slab (GSM)")
        for key in ("prior_pi", "init_pi"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"bernoulli_gsm: {key} must lie in (0, 1); got {getattr(self, key)!r}")
        self.mu = [w.detach().clone().requires_grad_() for w in model.weights]
        self.rho = [torch.full_like(w, inverse_softplus(self.init_sigma)).requires_grad_() for w in self.mu]
        init_logit = math.log(self.init_pi / (1 - self.init_pi))
        self.gate_logits = [torch.full_like(w[:, 0], init_logit).requires_grad_() for w in self.mu]  # (R, in_l)
        biases = list(model.biases) if model.biases is not None else []
        self.opt = torch.optim.Adam([{"params": self.mu + biases},
                                     {"params": self.rho + self.gate_logits, "lr": self.variational_lr}], lr=self.lr)
        self.steps = 0
        self.sync_model()

    def gate_probabilities(self) -> list[Tensor]:
        """pi_l = q(z_l = 1), one (R, in_l) tensor per layer."""
        return [torch.sigmoid(g) for g in self.gate_logits]

    def kept_gates(self) -> list[Tensor]:
        """The posterior mode of the gates, 1.0 where pi >= 0.5 (kept), 0.0 where pruned: (R, in_l)."""
        return [(pi >= 0.5).to(pi.dtype) for pi in self.gate_probabilities()]

    def kl(self) -> Tensor:
        """KL(q || p) per replica, (R,), nats (the closed form in the module docstring)."""
        total = 0.0
        for mu, rho, pi in zip(self.mu, self.rho, self.gate_probabilities()):
            columns = mu.transpose(1, 2).flatten(0, 1), F.softplus(rho).transpose(1, 2).flatten(0, 1)
            slab = gaussian_kl(*columns, self.prior_sigma).view_as(pi)  # (R, in_l): a column's weights
            total = total + (bernoulli_kl(pi, self.prior_pi) + pi * slab).sum(1)
        return total

    def kl_per_example(self) -> Tensor:
        """KL(q || p) / N per replica, (R,), nats; N from ``prepare``."""
        return self.kl() / self.training_examples()

    def sample_logits(self, x: Tensor) -> Tensor:
        """The output (R, N, out) on x (R, N, D) under one draw of the gates and weights from q per
        example (straight-through gates, locally reparameterised weights)."""
        a = x
        for i, (mu, rho, logit, act) in enumerate(zip(self.mu, self.rho, self.gate_logits, self.model.activations)):
            a = a * straight_through_gate(logit.unsqueeze(1), noise.rand(a.shape, a))
            mean = torch.bmm(a, mu.transpose(1, 2))
            sd = torch.bmm(a.square(), F.softplus(rho).square().transpose(1, 2)).clamp_min(1e-16).sqrt()
            s = mean + sd * noise.randn(mean.shape, mean)
            if self.model.biases is not None:
                s = s + self.model.biases[i].unsqueeze(1)
            a = ACTIVATIONS[act](s)
        return a

    @torch.no_grad()
    def sync_model(self) -> None:
        """Write the deterministic pruned network into the model: W_l = mu_l * kept mask."""
        for w, mu, mask in zip(self.model.weights, self.mu, kept_masks(self.kept_gates(), self.model.layers[-1])):
            w.copy_(mu * mask)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Adam step down F on x (R, B, D) (labels y (R, B)); returns F per replica (R,)."""
        t = self.model.target(x, y)
        self.steps += 1
        beta = min(1.0, self.steps / self.kl_warmup) if self.kl_warmup else 1.0
        objective = self.model.nll(self.sample_logits(x), t).mean(1) + beta * self.kl_per_example()
        self.opt.zero_grad(set_to_none=True)
        objective.sum().backward()  # replicas have disjoint parameters
        self.opt.step()
        self.sync_model()
        return {"batch_objective": objective.detach()}

    @torch.no_grad()
    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """The pruned network's size (fractions kept, (R,) each) and the KL per training example."""
        gates = self.kept_gates()
        masks = kept_masks(gates, self.model.layers[-1])
        hidden = torch.cat(gates[1:], 1) if len(gates) > 1 else torch.ones_like(gates[0][:, :1])
        return {"weights_kept": sum(m.flatten(1).sum(1) for m in masks) / sum(m[0].numel() for m in masks),
                "units_kept": hidden.mean(1), "inputs_kept": gates[0].mean(1),
                "kl_per_example": self.kl_per_example()}
