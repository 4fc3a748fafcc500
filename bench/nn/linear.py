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


class _ReplicaAffine(torch.autograd.Function):
    """x W^T + b per replica with autograd's numbers and a weight gradient laid out like W."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return (torch.bmm(grad, weight) if need_x else None,
                torch.bmm(grad.transpose(1, 2), x) if need_w else None,
                grad.sum(1) if need_b else None)


def replica_affine(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x W^T + b for each replica: x (R, N, in), weight (R, out, in), bias (R, out) -> (R, N, out).

    The values and gradients are autograd's for ``torch.baddbmm(bias.unsqueeze(1), x,
    weight.transpose(1, 2))`` (the same products and sums), but the weight's gradient is formed
    as grad^T x, contiguous like W, where autograd forms x^T grad and hands W its transpose: a fused
    optimizer then copied that to a contiguous array on every step, about a tenth of an RWS step on
    784-200-200-10 at B = 20 on a CPU (bench/perf/lean.py). Once differentiable (no double backward)."""
    return _ReplicaAffine.apply(x, weight, bias)


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
        out = replica_affine(flat, self.weight, self.bias)
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
