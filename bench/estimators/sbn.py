"""Exact and bidirectional log-likelihoods of sigmoid belief networks (Helmholtz machines):

* exact enumeration of log p(x) for tiny networks, the reference the IS estimator is tested
  against and the metric of the toy claims;
* BiHM's (Bornschein et al. 2016) log p*(x) = log p~*(x) - log Z^2, estimated and exact.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from bench.estimators.importance import importance_log_likelihood
from bench.models.helmholtz import HelmholtzMachine


def _all_states(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype, device=device)


def _joint_chunks(model: HelmholtzMachine, x: Tensor, chunk: int):
    """Yield log p(x, h) of every example in x (R, U, D) with every hidden configuration h of a
    chunk of the 2^(h1+...+hL) joint states: (R, U, S) per chunk. log p(x, h) = c(h) + log p(x | h1),
    where c(h) does not depend on x, and the data term is one matmul."""
    sizes = model.layers[1:]
    n_hidden = sum(sizes)
    if n_hidden > MAX_ENUMERATED_HIDDEN:
        raise ValueError(f"exact enumeration over {n_hidden} hidden units is too large (max {MAX_ENUMERATED_HIDDEN})")
    states = _all_states(n_hidden, x.dtype, x.device)
    for block in states.split(chunk):
        hs = list(block.unsqueeze(0).expand(model.replicas, -1, -1).split(sizes, dim=-1))
        c = model.prior.log_prob(hs[-1])
        for i in range(1, len(model.generative)):
            c = c + model.generative[i].log_prob(hs[i - 1], hs[i])
        logits = model.generative[0].logits(hs[0])  # (R, S, D)
        data_term = x @ logits.transpose(1, 2) - torch.nn.functional.softplus(logits).sum(-1).unsqueeze(1)
        yield hs, (data_term + c.unsqueeze(1)).double()


MAX_ENUMERATED_HIDDEN = 20


@torch.no_grad()
def exact_log_likelihood(model: HelmholtzMachine, x: Tensor, chunk: int = 4096) -> Tensor:
    """Exact log p(x) = logsumexp over all hidden configurations of log p(x, h): (R, B) float64.

    Cost is 2^(h1+...+hL) joint states per distinct example, so this is for tiny networks only
    (tests and the toy claims, whose data have few distinct images: those are evaluated once)."""
    r, b, d = x.shape
    distinct, inverse = torch.unique(x.reshape(-1, d), dim=0, return_inverse=True)
    xu = distinct.unsqueeze(0).expand(r, -1, -1)
    acc = None
    for _, joint in _joint_chunks(model, xu, chunk):
        part = torch.logsumexp(joint, dim=-1)
        acc = part if acc is None else torch.logaddexp(acc, part)
    return acc.gather(1, inverse.view(r, b))


# --------------------------------------------------------------------------- bidirectional Helmholtz machines
# BiHM (Bornschein et al. 2016) models p*(x, h) = sqrt(p(x, h) q(x, h)) / Z. Marginally
# p*(x) = p~*(x) / Z^2 with p~*(x) = (sum_h sqrt(p(x, h) q(h | x)))^2 <= p(x), so Z^2 <= 1 and
# Z^2 = sum_x p~*(x) = E_{(x,h)~p}[ sqrt(q(h|x) / p(x,h)) * sum_h' sqrt(p(x,h') q(h'|x)) ].


@torch.no_grad()
def bihm_log_z2(model: HelmholtzMachine, n: int, k_inner: int = 1, max_rows: int = 50_000) -> Tensor:
    """Estimate of log Z^2 per replica (R,) float64 from n dreams (x, h) ~ p, each with k_inner
    samples h' ~ q(.|x) for the inner sum (the BiHM code's `estimate_log_z2` uses k_inner = 1).
    The mean over dreams is unbiased for Z^2; its log is consistent."""
    terms = []
    per_chunk = max(1, max_rows // (k_inner + 1))
    for start in range(0, n, per_chunk):
        dreams = model.sample_p(min(per_chunk, n - start))
        outer = 0.5 * (model.log_q(dreams) - model.log_p(dreams))  # log sqrt(q(h|x) / p(x,h))
        inner = importance_log_likelihood(model.log_weights, dreams[0], k_inner, scale=0.5)  # log p~*(x)
        terms.append(outer.double() + 0.5 * inner)  # log of sqrt(q/p) * sqrt(p~*(x))
    logs = torch.cat(terms, dim=1)
    return torch.logsumexp(logs, dim=1) - torch.log(torch.tensor(float(logs.shape[1]), dtype=torch.float64))


@torch.no_grad()
def bihm_log_likelihood(model: HelmholtzMachine, x: Tensor, k: int, log_z2: Tensor) -> Tensor:
    """Estimate of log p*(x) = log p~*(x) - log Z^2: (R, B) float64. log p~*(x) is estimated by
    2 [logsumexp_k(1/2 log w_k) - log K] with h_k ~ q (the BiHM code's `log_psx`)."""
    return importance_log_likelihood(model.log_weights, x, k, scale=0.5) - log_z2.unsqueeze(1)


def _log_q_all_states(model: HelmholtzMachine, x: Tensor, hs: list[Tensor]) -> Tensor:
    """log q(h | x) for every example of x (R, U, D) and every joint state in hs: (R, U, S)."""
    logits = model.recognition[0].logits(x)  # (R, U, h1)
    out = logits @ hs[0].transpose(1, 2) - torch.nn.functional.softplus(logits).sum(-1).unsqueeze(-1)
    for i in range(1, len(model.recognition)):  # upper layers do not depend on x
        out = out + model.recognition[i].log_prob(hs[i], hs[i - 1]).unsqueeze(1)
    return out.double()


@torch.no_grad()
def exact_bihm_log_likelihood(model: HelmholtzMachine, x: Tensor, chunk: int = 4096) -> Tensor:
    """Exact log p*(x) = log p~*(x) - log sum_x' p~*(x') by enumerating every image and every
    hidden configuration: (R, B) float64. Tiny models only (2^D images x 2^H hidden states)."""
    r, b, d = x.shape
    if d + sum(model.layers[1:]) > 24:
        raise ValueError(f"exact BiHM enumeration over {d} visible + {sum(model.layers[1:])} hidden units is too large")
    images = _all_states(d, x.dtype, x.device).unsqueeze(0).expand(r, -1, -1)
    acc = None
    for hs, joint in _joint_chunks(model, images, chunk):
        part = torch.logsumexp(0.5 * (joint + _log_q_all_states(model, images, hs)), dim=-1)
        acc = part if acc is None else torch.logaddexp(acc, part)
    log_pt = 2 * acc  # log p~*(x) for every image: (R, 2^D)
    log_z2 = torch.logsumexp(log_pt, dim=1, keepdim=True)
    index = (x.long() * (2 ** torch.arange(d - 1, -1, -1, device=x.device))).sum(-1)  # row of each x in `images`
    return (log_pt - log_z2).gather(1, index)


@torch.no_grad()
def bihm_metrics(model: HelmholtzMachine, x: Tensor, k: int, z_samples: int) -> dict[str, Tensor]:
    """BiHM's evaluation on x (R, B, D), per replica (R,): 'log_z2' (from `z_samples` dreams),
    'll_star' = log p*(x) with k samples, and 'll_star_exact' by enumeration where images and hidden
    states together number at most 2^MAX_ENUMERATED_HIDDEN (the 3x3 lines toy: 2^16; not the 4x4
    bars, whose 2^24 cost about 2 s per evaluation of 5 replicas on a CPU core, and whose claims
    judge the directed model's exact log p(x))."""
    log_z2 = bihm_log_z2(model, z_samples)
    out = {"log_z2": log_z2, "ll_star": bihm_log_likelihood(model, x, k, log_z2).mean(1)}
    if x.shape[-1] + sum(model.layers[1:]) <= MAX_ENUMERATED_HIDDEN:
        out["ll_star_exact"] = exact_bihm_log_likelihood(model, x).mean(1)
    return out
