"""Optimizers by name, as the papers used them. All act element-wise, so replicas stay independent."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench.errors import unknown

OPTIMIZERS = ("momentum_ema", "sgd", "adam")


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, beta: float = 0.95) -> torch.optim.Optimizer:
    """`momentum_ema` is the RWS code's rule m <- beta*m + (1-beta)*lr*g, theta <- theta + m,
    which is torch SGD with momentum = dampening = beta (torch seeds the buffer with the first
    gradient instead of (1-beta) times it; only the first step differs)."""
    params = list(params)
    if name == "momentum_ema":
        return torch.optim.SGD(params, lr=lr, momentum=beta, dampening=beta)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise unknown("optimizer", name, OPTIMIZERS)
