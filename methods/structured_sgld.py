"""Structured SGLD (S-SGLD) and its dropout variant (D-SGLD): Alexos, Boyd & Mandt, "Structured
Stochastic Gradient MCMC", ICML 2022 (PMLR 162, arXiv 2107.09028), as their code (package `lvi`,
components.py: StochasticNetwork.sample_weights and training_step) updates an MLP.

The parameters are split into K = ``groups`` groups theta_1..theta_K. The sampler runs Langevin
dynamics (bench.nn.langevin: the update, prior, noise, thinning, ring of samples and burn-in of
methods/sgld.py) on the self-averaged potential, whose gradient for group k is the gradient of
U(theta_k, theta~_{-k}) with every other group j taken from a sample of the ring of past thinned
samples (each group its own uniformly drawn slot): the structured (block mean-field) approximation
of the posterior. One step evaluates I parameter instances on the same minibatch, each a mix of
current and buffered groups, and steps every group by the summed gradient of the instances where
it is current:

* ``variant: structured`` (S-SGLD): I = K instances, instance k with group k current and the others
  buffered (the code's mask eye(K)); grad_k U = grad of (N / B) sum -log p(t | x, instance k)
  plus the prior's. K = 1 is SGLD, step for step (tests/test_sgmcmc.py).
* ``variant: dropout`` (D-SGLD): I = ``vi_batch`` instances, each group of each instance current
  with probability p = ``keep_prob`` (a Bernoulli mask), else buffered; the likelihood terms are
  summed over the instances and divided by p I, so that each group's expected gradient is the
  self-averaged one (the code: log-likelihood / (p K), averaged over instances, times K).

The prior's gradient acts on every group at its current value, once per step (the code: log_prior
of the groups updated; here of every group, so that no group steps on noise alone). While the ring
is empty (the deterministic steps; the chain's start is its first sample) a step is SGLD's.

Partitions (``partition``): ``layer`` (layer l's weights and biases, K = number of layers; the code's
group_by_layers), ``permuted`` (balanced: the elements of W_1, b_1, W_2, b_2, ... in order get groups
0, 1, ..., K - 1, 0, 1, ... round-robin; the code's use_permuted_groups), ``random`` (each element's
group uniform over K, drawn per replica through bench.nn.noise; the code's use_random_groups).
K = the number of parameters with ``permuted`` is the fully factorised chain.

Buffer slots and dropout masks are drawn through bench.nn.noise (replica r's from its own
generator) before the Langevin noise of the step; S-SGLD with K = 1 draws none. Metrics: SGLD's
(bench.workloads.posterior). Raises ConfigError when K < 1 or exceeds the number of parameters,
when a layer partition's K is not the number of layers, when keep_prob is not in (0, 1] or vi_batch
< 1 for the dropout variant, and as SGLD on the chain's settings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from bench.core.errors import ConfigError
from bench.models.mlp import MLP
from bench.nn import noise
from bench.nn.langevin import DEFAULTS, LangevinChain
from bench.workloads.method import Method, register
from bench.workloads.posterior import posterior_metrics

PARTITIONS = ("layer", "permuted", "random")
VARIANTS = ("structured", "dropout")


@register("structured_sgld", family="mlp",
          defaults={**DEFAULTS, "groups": 2, "partition": "layer", "variant": "structured", "keep_prob": 0.5,
                    "vi_batch": 4},
          choices={"partition": PARTITIONS, "variant": VARIANTS})
class StructuredSGLD(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        self.chain = LangevinChain(self.name, list(model.parameters()), self.hparams, weight_cost=model.l2)
        k, layers = self.groups, len(model.weights)
        size = sum(p[0].numel() for p in self.chain.params)
        if not isinstance(k, int) or not 1 <= k <= size:
            raise ConfigError(f"structured_sgld: groups (K) must be an integer in [1, {size}] (the parameters of one "
                              f"replica); got {k!r}")
        if self.partition == "layer" and k != layers:
            raise ConfigError(f"structured_sgld: a layer partition has one group per layer: set groups to {layers} "
                              f"(got {k}), or use partition 'permuted' or 'random'")
        if self.variant == "dropout" and not (0 < self.keep_prob <= 1 and isinstance(self.vi_batch, int)
                                              and self.vi_batch >= 1):
            raise ConfigError(f"structured_sgld: the dropout variant needs keep_prob in (0, 1] and an integer "
                              f"vi_batch >= 1; got keep_prob={self.keep_prob!r}, vi_batch={self.vi_batch!r}")
        self.names = [name for name, _ in model.named_parameters()]
        self.group_ids = self._partition(model)

    def _partition(self, model: MLP) -> list[Tensor]:
        """Each parameter's element-wise group ids, in model.parameters() order: (1, E) shared by
        the replicas (layer, permuted) or (R, E) per replica (random), E = the elements of one replica."""
        params = self.chain.params
        if self.partition == "random":
            return [(noise.rand((p.shape[0], p[0].numel()), p) * self.groups).long().clamp_(max=self.groups - 1)
                    for p in params]
        ids, start = {}, 0
        for layer, block in enumerate(model.layer_params()):
            for p in block:
                n = p[0].numel()
                ids[id(p)] = (torch.full((1, n), layer) if self.partition == "layer"
                              else (torch.arange(start, start + n) % self.groups).unsqueeze(0))
                start += n
        return [ids[id(p)].to(p.device) for p in params]

    def instances(self) -> tuple[Tensor, Tensor | None, float]:
        """Which group is current in which instance, current (R, I, K) bool; the ring slot of each
        buffered group, slot (R, I, K) long (None when no group is buffered); and the weight of
        each instance's likelihood term."""
        like, k, stored = self.chain.params[0], self.groups, self.chain.buffer.size
        r = like.shape[0]
        if not stored:
            return torch.ones(r, 1, k, dtype=torch.bool, device=like.device), None, 1.0
        if self.variant == "dropout":
            current = noise.rand((r, self.vi_batch, k), like) < self.keep_prob
            weight = 1.0 / (self.keep_prob * self.vi_batch)
        else:
            current = torch.eye(k, dtype=torch.bool, device=like.device).expand(r, k, k)
            weight = 1.0
            if k == 1:
                return current, None, weight
        slot = (noise.rand(current.shape, like) * stored).long().clamp_(max=stored - 1)
        return current, slot, weight

    def composite(self, i: int, current: Tensor, slot: Tensor | None) -> Tensor:
        """Parameter i in every instance, current values where its group is current and the
        buffered sample of its group's slot elsewhere: (R * I, *s)."""
        p = self.chain.params[i]
        r, n = current.shape[:2]
        flat = p.flatten(1).unsqueeze(1).expand(r, n, -1)
        if slot is not None:
            ids = self.group_ids[i].unsqueeze(1).expand(r, n, -1)
            buffered = self.chain.buffer.values[i].gather(1, slot.gather(2, ids))
            flat = torch.where(current.gather(2, ids), flat, buffered)
        return flat.reshape(r * n, *p.shape[1:])

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Langevin step on the self-averaged potential on x (R, B, D) (labels y (R, B));
        returns the minibatch's mean -log p(t | x) averaged over the instances, (R,)."""
        current, slot, weight = self.instances()
        r, n = current.shape[:2]
        weights = {name: self.composite(i, current, slot) for i, name in enumerate(self.names)}
        xs = x.unsqueeze(1).expand(r, n, *x.shape[1:]).reshape(r * n, *x.shape[1:])
        ys = None if y is None else y.unsqueeze(1).expand(r, n, -1).reshape(r * n, -1)
        nll = self.model.nll(functional_call(self.model, weights, (xs,)), self.model.target(xs, ys)).mean(-1).view(r, n)
        data = (self.training_examples() * nll).sum(1) * weight
        grads = torch.autograd.grad((data + self.chain.prior_energy()).sum(), self.chain.params)
        self.chain.advance(grads)
        return {"batch_objective": nll.detach().mean(1)}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        return posterior_metrics(self.model, self.chain, x, y)
