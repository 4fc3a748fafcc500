"""Helmholtz machine: a generative SBN p and a recognition SBN q, with a replica axis.

``layers = [D, h1, ..., hL]`` lists sizes from the data side (as in RWS's ``layer_sizes`` and
argo's ``layers``). p has a factorial Bernoulli prior over h_L and layers h_{i+1} -> h_i;
q has layers h_i -> h_{i+1}. A *state* is the list ``[x, h1, ..., hL]`` of (R, N, n_i) tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.nn.bernoulli import (
    BernoulliPrior,
    SBNLayer,
    bernoulli_log_prob,
    sample_bernoulli,
)

State = list[Tensor]


@register_family("helmholtz")
class HelmholtzMachine(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int], init: str = "rws", bias: float = -1.0):
        super().__init__()
        if len(layers) < 2:
            raise ValueError(f"a Helmholtz machine needs at least [D, h1]; got layers={layers}")
        self.layers = list(layers)
        self.replicas = len(seeds)
        # Distinct seeds per sub-network so that p and q are not initialised identically.
        self.generative = nn.ModuleList(
            SBNLayer(layers[i + 1], layers[i], [s * 1000 + 2 * i for s in seeds], init, bias)
            for i in range(len(layers) - 1)
        )
        self.recognition = nn.ModuleList(
            SBNLayer(layers[i], layers[i + 1], [s * 1000 + 2 * i + 1 for s in seeds], init, bias)
            for i in range(len(layers) - 1)
        )
        self.prior = BernoulliPrior(layers[-1], self.replicas, bias)

    # ----------------------------------------------------------------- parameters by network
    def p_parameters(self) -> list[nn.Parameter]:
        return list(self.generative.parameters()) + list(self.prior.parameters())

    def q_parameters(self) -> list[nn.Parameter]:
        return list(self.recognition.parameters())

    # ----------------------------------------------------------------- sampling
    def sample_q(self, x: Tensor, k: int = 1) -> tuple[State, Tensor]:
        """K samples h ~ q(h | x) per example and their log q(h | x), in one pass through q.

        x (R, B, D) is tiled to N = K*B rows, sample-major (row n = k*B + b), as in the authors'
        code. Returns the state [x_tiled, h1..hL], each (R, N, n_i) and detached (a sample carries
        no gradient), and log q(h | x) per row, (R, N): differentiable in q's parameters when
        gradients are enabled (the wake-q term), so that one pass both draws and scores. The bottom
        layer's logits are computed once per example and broadcast over the K samples (its
        gradient sums over them); the draws are those of sampling each layer's N rows in turn."""
        r, b, _ = x.shape
        logits = self.recognition[0].logits(x).unsqueeze(1)  # (R, 1, B, h1): once per example
        h = sample_bernoulli(logits, (r, k, b, logits.shape[-1]))  # (R, K, B, h1)
        log_q = bernoulli_log_prob(h, logits).view(r, k * b)
        state = [x.repeat(1, k, 1), h.view(r, k * b, -1)]
        for layer in self.recognition[1:]:
            logits = layer.logits(state[-1])
            state.append(sample_bernoulli(logits))
            log_q = log_q + bernoulli_log_prob(state[-1], logits)
        return state, log_q

    def sample_p(self, n: int) -> State:
        """n ancestral samples (x, h) ~ p per replica: the detached state [x, h1..hL]."""
        with torch.no_grad():
            state = [self.prior.sample(n)]
            for layer in reversed(self.generative):
                state.insert(0, layer.sample(state[0]))
        return state

    # ----------------------------------------------------------------- log-probabilities
    def log_p(self, state: State) -> Tensor:
        """log p(x, h) per row: (R, N)."""
        out = self.prior.log_prob(state[-1])
        for i, layer in enumerate(self.generative):
            out = out + layer.log_prob(state[i], state[i + 1])
        return out

    def log_q(self, state: State) -> Tensor:
        """log q(h | x) per row: (R, N)."""
        out = torch.zeros_like(state[0][..., 0])
        for i, layer in enumerate(self.recognition):
            out = out + layer.log_prob(state[i + 1], state[i])
        return out

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """Importance log-weights log p(x,h) - log q(h|x) with h ~ q: (R, K, B)."""
        state, log_q = self.sample_q(x, k)
        return (self.log_p(state) - log_q).view(x.shape[0], k, x.shape[1])
