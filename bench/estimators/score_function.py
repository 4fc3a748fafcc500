"""Score-function (REINFORCE) estimates of the gradient of E_q[f(theta)] with per-coordinate
control variates, as used by black-box VI (Ranganath, Gerrish & Blei 2014, "Black box variational
inference", AISTATS, eqs 3 and 9-10) and by QBVI (Magris, Shabani & Iosifidis 2022, arXiv
2205.11568; the authors' VBLab QBVI.m).

For draws theta_s ~ q_lambda (s = 1..S) and scores h_s = d log q_lambda(theta_s) / d lambda,

    grad_lambda E_q[f] = E_q[h f] ~ mean_s h_s (f_s - c),

unbiased for any c independent of the draws because E_q[h] = 0. The control variate
c_i = Cov(h_i f, h_i) / Var(h_i) per coordinate i minimises the variance of h_i (f - c_i); as in
the reference code it is estimated from the previous step's draws (the first step uses c = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor


def control_variate(f: Tensor, scores: Tensor) -> Tensor:
    """c = Cov(h f, h) / Var(h) per coordinate over the S draws: f (R, S), scores h (R, S, P) -> (R, P)
    (0 where h does not vary). The reference code computes it from one step's draws and applies it
    to the next step's, which keeps the estimate unbiased."""
    if f.shape[1] < 2:
        raise ValueError("a control variate needs at least 2 draws per step")
    hf = scores * f.unsqueeze(-1)
    cov = ((hf - hf.mean(1, keepdim=True)) * (scores - scores.mean(1, keepdim=True))).mean(1)
    var = scores.var(1, unbiased=False)
    return torch.where(var > 0, cov / var.clamp_min(torch.finfo(var.dtype).tiny), torch.zeros_like(var))


def score_function_gradient(f: Tensor, scores: Tensor, c: Tensor | None = None) -> Tensor:
    """mean_s scores_s (f_s - c): f (R, S) values of the function at the draws theta_s ~ q, scores
    (R, S, P) the score of each draw per variational parameter, c (R, P) a control variate
    independent of these draws (None: 0) -> (R, P), unbiased for grad E_q[f]."""
    f = f.unsqueeze(-1)
    return (scores * (f if c is None else f - c.unsqueeze(1))).mean(1)


def gaussian_scores(theta: Tensor, mu: Tensor, precision: Tensor) -> tuple[Tensor, Tensor]:
    """Scores of q = N(mu, Sigma) at theta (R, S, P), mu (R, P), Sigma = precision^-1: (d log q / d mu
    = precision (theta - mu) (R, S, P), d log q / d Sigma = (precision (theta - mu) (theta - mu)^T
    precision - precision) / 2). A diagonal precision (R, P) gives that score's diagonal, (R, S, P),
    i.e. d log q / d variance; a full one (R, P, P) the symmetric matrix (R, S, P, P) (Magris et al.
    2022, and Ranganath et al. 2014 Sec. 2, for the Gaussian log-density's derivatives)."""
    e = theta - mu.unsqueeze(1)
    if precision.dim() == 3:
        pe = e @ precision  # precision is symmetric: (precision e)^T
        return pe, 0.5 * (pe.unsqueeze(-1) * pe.unsqueeze(-2) - precision.unsqueeze(1))
    p = precision.unsqueeze(1)
    return p * e, 0.5 * (p.square() * e.square() - p)
