"""Curvature of MLP objectives, shared by K-FAC, FOOF and exact natural gradient (methods/kfac.py,
methods/foof.py, methods/ngd.py), and the first-order step of their baselines (methods/sgd.py,
methods/adam.py). Every tensor has the replica axis first; nothing is shared between replicas
(each has its own statistics, traces, damping and solves).

Notation (Martens & Grosse 2015, Sec. 2-3): layer l reads a~_l = [a_l; 1] (the homogeneous
coordinate only when the layer has biases) and produces s_l; its gradient block is
V_l = [dh/dW_l, dh/db_l], shape (R, out, in+1). For targets t drawn from the model's predictive,
g_l = d(-log p(t | x))/ds_l per example, and the Fisher (= the generalised Gauss-Newton matrix for
the canonical-link losses of bench.models.mlp) of layer l is E[vec(g a~^T) vec(g a~^T)^T], which
K-FAC approximates by A_l (x) G_l with A_l = E[a~ a~^T] and G_l = E[g g^T]. With column-stacking
vec, (A (x) G) vec(V) = vec(G V A), so the K-FAC step is G^-1 V A^-1 and FOOF's is V A^-1.

Factorisations run in float64 (the factors of a 1000-unit layer span many decades).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call, jvp, vmap

from bench.models.mlp import MLP


# --------------------------------------------------------------------------- gradient blocks
def flat_params(model: MLP) -> list[torch.nn.Parameter]:
    """The parameters in block order: W_1 [, b_1], W_2 [, b_2], ..."""
    return [p for layer in model.layer_params() for p in layer]


def to_blocks(model: MLP, flat: list[Tensor]) -> list[Tensor]:
    """[W_l, b_l]-ordered tensors (flat_params order) -> per-layer blocks [W_l, b_l] (R, out, in+1)."""
    out, i = [], 0
    for layer in model.layer_params():
        parts = flat[i:i + len(layer)]
        i += len(layer)
        out.append(parts[0] if len(parts) == 1 else torch.cat([parts[0], parts[1].unsqueeze(-1)], -1))
    return out


def from_blocks(model: MLP, blocks: list[Tensor]) -> list[Tensor]:
    """Inverse of to_blocks."""
    flat = []
    for block in blocks:
        flat += [block] if not model.has_bias else [block[..., :-1], block[..., -1]]
    return flat


def objective_gradient(model: MLP, x: Tensor, y: Tensor | None) -> tuple[Tensor, list[Tensor], Statistics]:
    """h per replica (R,) on the minibatch, dh/dtheta as blocks, and the layer inputs of the
    same forward pass, which FOOF reuses for its statistics."""
    inputs, pre = model.forward_layers(x)
    h = model.objective(x, y, z=pre[-1])
    grads = torch.autograd.grad(h.sum(), flat_params(model))
    return h.detach(), to_blocks(model, list(grads)), layer_inputs(model, inputs)


def first_order_step(model: MLP, opt: torch.optim.Optimizer, x: Tensor, y: Tensor | None) -> Tensor:
    """One step of a torch optimizer over model.parameters() (SGD, Adam: element-wise, so the
    replicas stay independent) down the minibatch objective
    h(theta) = mean_n -log p(t_n | x_n) + l2/2 ||theta||^2 on x (R, B, D) (labels y (R, B) or None
    for an autoencoder); returns h per replica (R,), detached."""
    opt.zero_grad(set_to_none=True)
    h = model.objective(x, y)
    h.sum().backward()  # replicas have disjoint parameters: each gets its own gradient
    opt.step()
    return h.detach()


@torch.no_grad()
def apply_update(model: MLP, delta: list[Tensor]) -> None:
    """theta <- theta + delta, delta given as blocks."""
    for p, d in zip(flat_params(model), from_blocks(model, delta)):
        p.add_(d)


# --------------------------------------------------------------------------- statistics
@dataclass
class Statistics:
    """Per layer: inputs a~ (R, m, in[+1]) and, when sampled, output gradients g (R, m, out)."""

    inputs: list[Tensor]
    grads: list[Tensor] | None = None


def _homogeneous(model: MLP, a: Tensor) -> Tensor:
    return torch.cat([a, a.new_ones(a.shape[:-1] + (1,))], -1) if model.has_bias else a


def layer_inputs(model: MLP, inputs: list[Tensor]) -> Statistics:
    """Statistics from a forward pass already made (FOOF needs no backward pass of its own)."""
    return Statistics([_homogeneous(model, a.detach()) for a in inputs])


def sampled_statistics(model: MLP, x: Tensor) -> Statistics:
    """a~ and g on x (R, m, D) with one target per case drawn from the model's predictive (the true
    Fisher, not the empirical one): one forward and one backward pass of sum_n -log p(t_n | x_n),
    whose gradient in s_l is g_{l,n} for every example n at once."""
    inputs, pre = model.forward_layers(x)
    t = model.sample(pre[-1].detach())
    grads = torch.autograd.grad(model.nll(pre[-1], t).sum(), pre)
    return Statistics(layer_inputs(model, inputs).inputs, [g.detach() for g in grads])


def second_moment(v: Tensor) -> Tensor:
    """E[v v^T] over the examples of v (R, m, d): (R, d, d)."""
    return torch.bmm(v.transpose(1, 2), v) / v.shape[1]


class RunningAverage:
    """Exponential average of a list of tensors with weight eps = min(1 - 1/t, decay) on the old
    value at the t-th update (Martens & Grosse, Sec. 5), so early estimates are plain means."""

    def __init__(self, decay: float):
        self.decay, self.updates, self.value = decay, 0, None

    def update(self, new: list[Tensor]) -> list[Tensor]:
        self.updates += 1
        eps = min(1.0 - 1.0 / self.updates, self.decay)
        self.value = new if self.value is None else [eps * old + (1 - eps) * n for old, n in zip(self.value, new)]
        return self.value


# --------------------------------------------------------------------------- damped inverses
def cholesky(m: Tensor) -> Tensor:
    """Cholesky factors of a batch of matrices (R, n, n); a replica whose factorisation fails (its
    matrix is not numerically positive definite: too little damping, NaN statistics) gets NaN
    factors, so its step is NaN and the engine marks that replica diverged, never a wrong inverse
    or an exception for every replica."""
    factor, info = torch.linalg.cholesky_ex(m)
    return torch.where((info != 0).view(-1, 1, 1), torch.full_like(factor, float("nan")), factor)


def damped_inverse(m: Tensor, damping: Tensor) -> Tensor:
    """(M + d_r I)^-1 for M (R, n, n) symmetric PSD and d (R,) > 0, by a float64 Cholesky."""
    md = m.double() + damping.double().view(-1, 1, 1) * torch.eye(m.shape[-1], dtype=torch.float64, device=m.device)
    return torch.cholesky_inverse(cholesky(md)).to(m.dtype)


def pi_correction(a: Tensor, g: Tensor) -> Tensor:
    """pi = sqrt((tr A / dim A) / (tr G / dim G)) per replica (Martens & Grosse, Sec. 6.3), the
    split of the damping between the factors that makes it invariant to their relative scale."""
    mean_a = a.diagonal(dim1=-2, dim2=-1).mean(-1)
    mean_g = g.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(g.dtype).tiny)
    return (mean_a / mean_g).sqrt()


def kfac_inverses(a: Tensor, g: Tensor, gamma: Tensor) -> tuple[Tensor, Tensor]:
    """Factored Tikhonov damping: ((A + pi gamma I)^-1, (G + gamma/pi I)^-1), gamma (R,)."""
    pi = pi_correction(a, g)
    return damped_inverse(a, pi * gamma), damped_inverse(g, gamma / pi)


def precondition(v: Tensor, a_inv: Tensor, g_inv: Tensor | None = None) -> Tensor:
    """G^-1 V A^-1 (K-FAC), or V A^-1 when g_inv is None (FOOF)."""
    v = torch.bmm(v, a_inv)
    return v if g_inv is None else torch.bmm(g_inv, v)


# --------------------------------------------------------------------------- exact Fisher
def natural_gradient(stats: Statistics, v: list[Tensor], damping: float) -> list[Tensor]:
    """(F + lambda I)^-1 v, exactly, for the Fisher of the whole network estimated on the m sampled
    cases of `stats`: F = (1/m) sum_n u_n u_n^T with u_n = [vec(g_{l,n} a~_{l,n}^T)]_l.

    Woodbury in the m-dimensional sample space (Benzing's `natural` optimizer):
    (F + lambda I)^-1 v = (v - U (lambda m I + U^T U)^-1 U^T v) / lambda, U = [u_1 ... u_m]. The
    per-example gradients are never formed: u_n^T u_k = sum_l (g_n . g_k)(a~_n . a~_k),
    u_n^T v = sum_l g_n^T V_l a~_n and U z = [sum_n z_n g_n a~_n^T]_l."""
    a, g = stats.inputs, stats.grads
    m = a[0].shape[1]
    gram = sum(torch.bmm(gl, gl.transpose(1, 2)) * torch.bmm(al, al.transpose(1, 2)) for al, gl in zip(a, g))
    utv = sum((gl * torch.bmm(al, vl.transpose(1, 2))).sum(-1) for al, gl, vl in zip(a, g, v))  # (R, m)
    system = gram.double() + damping * m * torch.eye(m, dtype=torch.float64, device=gram.device)
    z = torch.cholesky_solve(utv.double().unsqueeze(-1), cholesky(system)).squeeze(-1).to(utv.dtype)
    return [(vl - torch.bmm((gl * z.unsqueeze(-1)).transpose(1, 2), al)) / damping for al, gl, vl in zip(a, g, v)]


def ggn_gram(model: MLP, x: Tensor, directions: list[list[Tensor]]) -> Tensor:
    """M_ij = d_i^T F d_j per replica, (R, k, k), for k directions given as blocks, with the
    exact Fisher/GGN of the minibatch x: F = (1/B) sum_n J_n^T H_n J_n. J d is a forward-mode
    Jacobian-vector product (torch.func.jvp, vmapped over the k directions, sharing the primal)."""
    name_of = {id(p): name for name, p in model.named_parameters()}
    keys = [name_of[id(p)] for p in flat_params(model)]
    params = tuple(p.detach() for p in flat_params(model))

    def output(*ps: Tensor) -> Tensor:
        return functional_call(model, dict(zip(keys, ps)), (x,))

    flat = [from_blocks(model, d) for d in directions]
    tangents = [torch.stack([d[i] for d in flat]) for i in range(len(params))]
    z, jd = vmap(lambda *t: jvp(output, params, t), out_dims=(None, 0))(*tangents)  # jd: (k, R, B, out)
    k = len(directions)
    rows = [torch.stack([model.output_metric(z, jd[i], jd[j]).mean(1) for j in range(k)], -1) for i in range(k)]
    return torch.stack(rows, -2)


def inner(u: list[Tensor], v: list[Tensor]) -> Tensor:
    """Per-replica inner product of two parameter lists (e.g. blocks): (R,)."""
    return sum((a * b).flatten(1).sum(1) for a, b in zip(u, v))
