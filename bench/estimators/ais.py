"""Annealed importance sampling (AIS) of an RBM's log partition function (Neal 2001; Salakhutdinov &
Murray, ICML 2008, Sec. 3-4).

The chain anneals from the base-rate model p_A(v) = prod_d Bernoulli(v_d; sigmoid(a_d)) (the RBM's
``base_rate`` logits a, from the training pixel means; its hidden units decoupled, so
log Z_A = sum_d softplus(a_d) + H log 2) to the RBM through the unnormalised marginals

    log p*_beta(v) = (1 - beta) a.v + beta b.v + sum_j softplus(beta (c_j + W_j.v)),

0 = beta_0 < beta_1 < ... < beta_K = 1. A run draws v_1 ~ p_A, adds log p*_k(v_k) - log p*_{k-1}(v_k)
to its log-weight and moves v_k -> v_{k+1} by one Gibbs sweep that leaves p_beta_k invariant
(h ~ sigmoid(beta_k (c + W v)), v ~ sigmoid((1 - beta_k) a + beta_k (b + W^T h))). With M runs,

    log Z^ = log Z_A + logsumexp_m(log w_m) - log M,

an unbiased estimate of Z (hence, by Jensen, a stochastic lower bound of log Z in expectation).
Log-weights are accumulated in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.models.rbm import RBM
from bench.nn.bernoulli import sample_bernoulli

# Salakhutdinov & Murray's schedule, spacing 1e-3 on [0, 0.5], 1e-4 on [0.5, 0.9], 1e-5 on [0.9, 1]
# (Salakhutdinov's RBM_AIS code: beta = [0:1/1000:0.5 0.5:1/10000:0.9 0.9:1/100000:1.0]), 14,500 steps
PAPER_BETAS = 14_500
SEGMENTS = ((0.5, 500), (0.9, 4_000), (1.0, 10_000))  # (segment end, steps in it)


def salakhutdinov_murray_betas(n: int = PAPER_BETAS) -> Tensor:
    """n + 1 inverse temperatures 0 = beta_0 < ... < beta_n = 1, float64, spaced uniformly within
    Salakhutdinov & Murray's three segments [0, 0.5], [0.5, 0.9], [0.9, 1] with their shares
    1 : 8 : 20 of the steps (n = 14,500 is their schedule). Raises ValueError for n < 3."""
    if n < len(SEGMENTS):
        raise ValueError(f"an AIS schedule needs at least {len(SEGMENTS)} intermediate distributions; got {n}")
    total = sum(count for _, count in SEGMENTS)
    counts = [max(1, round(n * count / total)) for _, count in SEGMENTS]
    counts[-1] = n - sum(counts[:-1])
    parts, start = [torch.zeros(1, dtype=torch.float64)], 0.0
    for (end, _), count in zip(SEGMENTS, counts):
        parts.append(torch.linspace(start, end, count + 1, dtype=torch.float64)[1:])
        start = end
    return torch.cat(parts)


@torch.no_grad()
def ais_log_partition(model: RBM, runs: int, betas: Tensor) -> tuple[Tensor, Tensor]:
    """AIS estimate of log Z per replica and its standard deviation over runs.

    model: an RBM whose ``base_rate`` holds the base-rate logits; runs: M independent AIS runs per
    replica; betas: (K + 1,) increasing from 0 to 1 (e.g. `salakhutdinov_murray_betas`).
    Returns (log_z, log_z_sd), each (R,) float64: log_z_sd is the delta-method standard deviation
    of log Z^, std_m(w_m) / (sqrt(M) mean_m(w_m)), so log_z +- 3 log_z_sd is Salakhutdinov &
    Murray's +-3 sigma interval. Raises ValueError if betas do not run from 0 to 1."""
    if betas.ndim != 1 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0 or bool((betas.diff() <= 0).any()):
        raise ValueError("betas must increase strictly from 0 to 1")
    r = model.replicas
    a = model.base_rate.unsqueeze(1)  # (R, 1, D)
    v = sample_bernoulli(a.expand(r, runs, -1).contiguous())
    log_w = torch.zeros(r, runs, dtype=torch.float64, device=v.device)
    drift = (model.visible_bias.unsqueeze(1) - a).transpose(1, 2)  # (R, D, 1): d/d beta of the visible term
    previous = 0.0
    for beta in betas[1:].tolist():
        x = model.hidden_logits(v)  # (R, M, H)
        log_w += (beta - previous) * (v @ drift).squeeze(-1).double()
        log_w += (F.softplus(beta * x) - F.softplus(previous * x)).sum(-1, dtype=torch.float64)
        if beta < 1.0:
            h = sample_bernoulli(beta * x)
            v = sample_bernoulli((1 - beta) * a + beta * model.visible_logits(h))
        previous = beta
    log_z_base = F.softplus(model.base_rate).sum(-1, dtype=torch.float64) + model.layers[1] * math.log(2.0)
    log_mean_w = torch.logsumexp(log_w, dim=1) - math.log(runs)
    w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values)
    sd = w.std(dim=1) / (w.mean(dim=1) * math.sqrt(runs)) if runs > 1 else torch.full_like(log_mean_w, math.nan)
    return log_z_base + log_mean_w, sd
