"""The terms of the wake-sleep family of updates of a Helmholtz machine, as plain functions.

Each method of ``methods/`` (ws, rws, rws_joint, bihm, nrws, nbihm) writes its own update from
these pieces, so that the file reads next to its paper. Notation (Bornschein & Bengio, "Reweighted
wake-sleep", ICLR 2015, arXiv 1406.2751; official code jbornschein/reweighted-ws): for an example x and K samples h_k ~ q(h | x),

    w_k  = p(x, h_k) / q(h_k | x)                 (unnormalised importance weights)
    w~_k = w_k / sum_k' w_k'                        (self-normalised weights, constants for the gradient)

    wake-p:   sum_k w~_k grad log p(x, h_k)       (a consistent estimate of grad log p(x))
    wake-q:   sum_k w~_k grad log q(h_k | x)      (estimates -grad KL(p(h|x) || q(h|x)))
    sleep-q:  grad log q(h | x),  (x, h) ~ p      (the classic sleep phase, Hinton et al. 1995)

Every function returns an *objective* per replica, shape (R,), to be maximised: its gradient is the
update direction. Wake terms are means over the B examples of the minibatch; the sleep term is
normalised by the caller's choice (see `sleep_q`). Tensors follow the model's layout: a leading
replica axis R, and K samples per example stored sample-major (row n = k B + b), so that
``.view(R, K, B)`` exposes the sample axis (axis 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.models.helmholtz import HelmholtzMachine, State


@dataclass
class WakeSample:
    """K samples h ~ q(h | x) per example of a minibatch x (R, B, D) and their log-probabilities.

    state: the detached state [x tiled K times, h1, ..., hL], each (R, K*B, n_i), sample-major;
    log_p: log p(x, h_k), (R, K, B), differentiable in p's parameters;
    log_q: log q(h_k | x), (R, K, B), differentiable in q's parameters;
    log_w: log w_k = log p(x, h_k) - log q(h_k | x), (R, K, B), detached."""

    state: State
    log_p: Tensor
    log_q: Tensor
    log_w: Tensor


def wake_sample(model: HelmholtzMachine, x: Tensor, k: int) -> WakeSample:
    """Draw K samples h_k ~ q(h | x) for each example of x (R, B, D) (one `model.sample_q` call,
    the only random draw here, which also scores them under q) and evaluate log p(x, h_k) on them."""
    r, b, _ = x.shape
    state, log_q = model.sample_q(x, k)
    log_p = model.log_p(state).view(r, k, b)
    log_q = log_q.view(r, k, b)
    return WakeSample(state, log_p, log_q, (log_p - log_q).detach())


def normalized_weights(log_w: Tensor) -> Tensor:
    """RWS's self-normalised importance weights w~_k = w_k / sum_k' w_k' = softmax_k(log w_k), over
    axis 1 of log_w (R, K, B); same shape. Bornschein & Bengio 2015."""
    return torch.softmax(log_w, dim=1)


def sqrt_normalized_weights(log_w: Tensor) -> Tensor:
    """BiHM's weights w~_k = sqrt(w_k) / sum_k' sqrt(w_k') = softmax_k(1/2 log w_k), over axis 1 of
    log_w (R, K, B); same shape. Bornschein, Shabanian, Fischer & Bengio, "Bidirectional Helmholtz
    machines", ICML 2016 (importance sampling of p*(x, h) = sqrt(p(x, h) q(x, h)) / Z with
    proposal q, whose weights are sqrt(p / q); official code jbornschein/bihm, bihm.py)."""
    return torch.softmax(0.5 * log_w, dim=1)


def wake_p(w: Tensor, log_p: Tensor) -> Tensor:
    """Wake-p objective per replica, (R,): mean over the B examples of sum_k w~_k log p(x, h_k),
    with weights w and log_p both (R, K, B). Its gradient in p is the wake-p update above."""
    return (w * log_p).sum(1).mean(1)


def wake_q(w: Tensor, log_q: Tensor, baseline: float = 0.0) -> Tensor:
    """Wake-q objective per replica, (R,): mean over the B examples of sum_k (w~_k - c) log q(h_k | x),
    with weights w and log_q both (R, K, B) and c = `baseline` (0 in the RWS paper; 1/K in the BiHM
    and NRWS codes, which centres the weights: sum_k (w~_k - 1/K) = 0)."""
    return ((w - baseline) * log_q).sum(1).mean(1)


def sleep_q(model: HelmholtzMachine, dreams: State, batch_size: int | None = None) -> Tensor:
    """Sleep-q objective per replica, (R,), on N dreams (x, h) ~ p (`model.sample_p(N)`, a state of
    (R, N, n_i) tensors): log q(h | x) summed over the dreams and divided by `batch_size` B (the RWS
    code's sum over its sleep_interleave x B dreams, put on the scale of the wake terms), or, with
    batch_size None, averaged over the N dreams (the NRWS authors' joint scheme)."""
    log_q = model.log_q(dreams)
    return log_q.mean(1) if batch_size is None else log_q.sum(1) / batch_size


def log_likelihood_estimate(log_w: Tensor) -> Tensor:
    """The minibatch's K-sample importance estimate of log p(x), logsumexp_k(log w_k) - log K,
    averaged over the B examples: (R,) from log_w (R, K, B). The training scalar of these methods."""
    return torch.logsumexp(log_w, dim=1).mean(1) - math.log(log_w.shape[1])


def ascend(optimizer: torch.optim.Optimizer, objective: Tensor,
           precondition: Callable[[], None] | None = None) -> None:
    """One optimizer step that increases objective (R,), a per-replica objective (replicas have
    disjoint parameters, so the step on the sum is R independent steps). `precondition`, if given,
    transforms the gradients in place between backward() and the step (the natural gradient of
    NRWS/NBiHM: bench.curvature.sbn.HelmholtzFisher)."""
    optimizer.zero_grad(set_to_none=True)
    (-objective.sum()).backward()
    if precondition is not None:
        precondition()
    optimizer.step()
