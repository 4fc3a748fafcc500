"""Optimizers by name, as the papers used them. All act element-wise, so replicas stay independent."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from bench.core.errors import unknown

OPTIMIZERS = ("momentum_ema", "sgd", "adam", "adagrad")


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, beta: float = 0.95,
                   beta1: float = 0.9, eps: float = 1e-8) -> torch.optim.Optimizer:
    """`momentum_ema` is the RWS code's rule m <- beta*m + (1-beta)*lr*g, theta <- theta + m,
    which is torch SGD with momentum = dampening = beta (torch seeds the buffer with the first
    gradient instead of (1-beta) times it; only the first step differs). `adam` takes beta1 and
    eps (IWAE's code: 0.99 and 1e-4; the defaults are torch's); `adagrad` (AEVB, DLGM) takes eps."""
    params = list(params)
    if name == "momentum_ema":
        return torch.optim.SGD(params, lr=lr, momentum=beta, dampening=beta)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), eps=eps)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps)
    raise unknown("optimizer", name, OPTIMIZERS)
