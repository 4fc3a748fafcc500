"""Replica-axis dense layers: every parameter has a leading replica axis R, inputs are (R, ..., in).

``ReplicaLinear`` is one affine map per replica (a batched matmul); ``ReplicaMLP`` a stack of them
with an activation after every layer (the deterministic trunk of a Gaussian-latent layer,
bench/models/vae.py). Replicas never mix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"tanh": torch.tanh, "elu": F.elu}
INITS = ("glorot_uniform", "normal")


class ReplicaLinear(nn.Module):
    """y = x W^T + b per replica; x (R, ..., in) -> (R, ..., out). weight (R, out, in), bias (R, out).

    init 'glorot_uniform': U(+-sqrt(6 / (in + out))), biases 0 (IWAE's nnet.py);
    init 'normal': N(0, 0.01^2) for weights and biases (AEVB, Sec. 5: "initialized by random
    sampling from N(0, 0.01)", read as a standard deviation of 0.01)."""

    def __init__(self, n_in: int, n_out: int, gens: list[torch.Generator], init: str):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init {init!r}; use one of {INITS}")
        if init == "glorot_uniform":
            a = math.sqrt(6.0 / (n_in + n_out))
            w = [a * (2 * torch.rand(n_out, n_in, generator=g) - 1) for g in gens]
            b = [torch.zeros(n_out) for _ in gens]
        else:
            w = [0.01 * torch.randn(n_out, n_in, generator=g) for g in gens]
            b = [0.01 * torch.randn(n_out, generator=g) for g in gens]
        self.weight = nn.Parameter(torch.stack(w))
        self.bias = nn.Parameter(torch.stack(b))

    def forward(self, x: Tensor) -> Tensor:
        r, n_in = x.shape[0], x.shape[-1]
        flat = x.reshape(r, -1, n_in)
        out = torch.baddbmm(self.bias.unsqueeze(1), flat, self.weight.transpose(1, 2))
        return out.view(*x.shape[:-1], -1)


class ReplicaMLP(nn.Module):
    """sizes[0] -> sizes[1] -> ... with the activation after every layer (the deterministic
    trunk of a stochastic layer; heads are added by the caller)."""

    def __init__(self, sizes: list[int], gens: list[torch.Generator], init: str, activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        self.act = ACTIVATIONS[activation]
        self.linears = nn.ModuleList(ReplicaLinear(a, b, gens, init) for a, b in zip(sizes, sizes[1:]))
        self.n_out = sizes[-1]

    def forward(self, h: Tensor) -> Tensor:
        for linear in self.linears:
            h = self.act(linear(h))
        return h
