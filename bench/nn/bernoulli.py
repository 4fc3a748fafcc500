"""Sigmoid-belief-network layers with a leading replica axis.

Every tensor is laid out ``(R, N, features)``: R independent replicas (seeds) of the same
architecture train in lock-step with batched matmuls (DESIGN.md, rule 2). Units are coded 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.nn import noise
from bench.nn.linear import replica_affine


def bernoulli_log_prob(y: Tensor, logits: Tensor) -> Tensor:
    """Sum over the last axis of log Bernoulli(y | sigmoid(logits)) = y.l - sum softplus(l).

    y and logits broadcast against each other (logits (R, 1, B, n) against K samples y (R, K, B, n)
    scores every sample with one softplus per example); the result has their broadcast shape less
    the last axis. Stable for large |logits|; ``vecdot`` for y.l is a fused multiply-sum whose
    backward is two element-wise products (an einsum's is a batched matmul per row, several times
    slower), and the softplus dominates importance-sampled evaluation."""
    return torch.linalg.vecdot(y, logits) - F.softplus(logits).sum(-1)


def sample_bernoulli(logits: Tensor, shape: Sequence[int] | None = None) -> Tensor:
    """0/1 samples of Bernoulli(sigmoid(logits)), (R, ...) with replicas first, each replica's from
    its own noise (bench.nn.noise); `shape` (default logits.shape) draws more samples than logits
    has rows, logits broadcasting against it (K samples per example from (R, 1, B, n) logits).
    Detached: a sample carries no gradient. `rand < p` (not torch.bernoulli) so that NaN logits
    never raise mid-run: divergence is detected and recorded by the training loop instead."""
    u = noise.rand(logits.shape if shape is None else shape, logits)
    return (u < torch.sigmoid(logits.detach())).to(logits.dtype)


class SBNLayer(nn.Module):
    """Conditional factorial Bernoulli p(y | x) = prod_i sigmoid(w_i . x + b_i)^y_i (...)^(1-y_i).

    weight: (R, out, in), bias: (R, out).
    init: 'rws' = uniform(+-sqrt(6/(in+out)))/in (Bornschein & Bengio's default_weights),
          'glorot_normal' = N(0, 2/(in+out)) truncated at 2 std (TF1 default, used by rist-ro/argo).
    """

    def __init__(self, n_in: int, n_out: int, seeds: list[int], init: str = "rws", bias: float = -1.0):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        weights = [self._init_weight(n_in, n_out, init, g) for g in noise.replica_generators(seeds)]
        self.weight = nn.Parameter(torch.stack(weights))
        self.bias = nn.Parameter(torch.full((len(seeds), n_out), float(bias)))

    @staticmethod
    def _init_weight(n_in: int, n_out: int, init: str, g: torch.Generator) -> Tensor:
        if init == "rws":
            scale = math.sqrt(6.0 / (n_in + n_out))
            return scale * (2 * torch.rand(n_out, n_in, generator=g) - 1) / n_in
        if init == "glorot_normal":
            std = math.sqrt(2.0 / (n_in + n_out))
            return std * torch.fmod(torch.randn(n_out, n_in, generator=g), 2.0)
        raise ValueError(f"unknown init {init!r}; use 'rws' or 'glorot_normal'")

    def logits(self, x: Tensor) -> Tensor:
        """(R, N, in) -> (R, N, out)."""
        return replica_affine(x, self.weight, self.bias)

    def log_prob(self, y: Tensor, x: Tensor) -> Tensor:
        """log p(y | x) summed over units: (R, N)."""
        return bernoulli_log_prob(y, self.logits(x))

    def sample(self, x: Tensor) -> Tensor:
        return sample_bernoulli(self.logits(x))


class BernoulliPrior(nn.Module):
    """Factorial Bernoulli top prior p(h) = prod_i sigmoid(b_i)^h_i (...)^(1-h_i); bias: (R, n)."""

    def __init__(self, n: int, replicas: int, bias: float = -1.0):
        super().__init__()
        self.n_out = n
        self.bias = nn.Parameter(torch.full((replicas, n), float(bias)))

    def logits(self, n_samples: int) -> Tensor:
        return self.bias.unsqueeze(1).expand(-1, n_samples, -1)

    def log_prob(self, h: Tensor) -> Tensor:
        return bernoulli_log_prob(h, self.logits(h.shape[1]))

    def sample(self, n_samples: int) -> Tensor:
        return sample_bernoulli(self.logits(n_samples))
