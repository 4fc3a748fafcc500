"""Optimizers by name, as the papers used them, and the learning-rate schedule and ascent step of
the Gaussian-latent methods (methods/vae.py, iwae.py, dlgm.py, ws_continuous.py). All act
element-wise, so replicas stay independent."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from bench.core.errors import unknown

OPTIMIZERS = ("momentum_ema", "sgd", "adam", "adagrad")


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused optimizer kernels run


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, beta: float = 0.95,
                   beta1: float = 0.9, eps: float = 1e-8) -> torch.optim.Optimizer:
    """`momentum_ema` is the RWS code's rule m <- beta*m + (1-beta)*lr*g, theta <- theta + m,
    which is torch SGD with momentum = dampening = beta (torch seeds the buffer with the first
    gradient instead of (1-beta) times it; only the first step differs). `adam` takes beta1 and
    eps (IWAE's code: 0.99 and 1e-4; the defaults are torch's); `adagrad` (AEVB, DLGM) takes eps.

    Parameters on a CPU or a CUDA device get torch's fused kernel (one pass over each parameter,
    the whole update in one loop, instead of one kernel per operation and parameter): the same
    update, rounded in another order; elsewhere the default implementation."""
    params = list(params)
    fused = {"fused": True} if all(p.device.type in FUSED_DEVICES for p in params) else {}
    if name == "momentum_ema":
        return torch.optim.SGD(params, lr=lr, momentum=beta, dampening=beta, **fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), eps=eps, **fused)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps, **fused)
    raise unknown("optimizer", name, OPTIMIZERS)


# --------------------------------------------------------------------------- Gaussian-latent methods
SCHEDULES = ("constant", "iwae")


def iwae_learning_rate(lr: float, epoch: float) -> float:
    """Burda et al.'s schedule (IWAE, ICLR 2016, Sec. 5; yburda/iwae ``checkpoint1to8``): stage
    i = 0..7 lasts 3^i epochs (3280 in all) at lr * round(10^(1 - i/7), 1) / 10; the last stage's
    rate holds after it. ``epoch`` counts (fractional) passes over the training set."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return lr * round(10.0 ** (1 - stage / 7), 1) / 10


def check_schedule(schedule: str, epoch_size: int) -> None:
    """Validate a learning-rate schedule name ('constant' or 'iwae'); 'iwae' counts examples, so it
    needs ``epoch_size``, the number of training examples."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r}; use one of {SCHEDULES}")
    if schedule == "iwae" and epoch_size <= 0:
        raise ValueError("schedule 'iwae' needs epoch_size, the number of training examples")


def ascent_step(opt: torch.optim.Optimizer, objective: Tensor, batch_size: int, *, lr: float,
                schedule: str = "constant", examples: int = 0, epoch_size: int = 0,
                weight_decay: float = 0.0, decayed: Iterable[Tensor] = ()) -> None:
    """One optimizer step that *ascends* ``objective`` (R,), per replica the sum over a minibatch of
    ``batch_size`` examples of the per-example bound, minus the weight-decay prior on ``decayed``
    (the generative parameters theta, each with the replica axis first):

        objective - weight_decay * batch_size / 2 * ||theta||^2,

    i.e. for weight_decay = 1/N the per-example share of AEVB's N(0, I) prior on theta (Kingma &
    Welling 2014, Sec. 5) or of the DLGM's Gaussian prior (kappa = N * weight_decay; Rezende et al.
    2014). With ``schedule`` 'iwae' the learning rate is first set to
    ``iwae_learning_rate(lr, examples / epoch_size)``, ``examples`` the number of training examples
    seen before this step; 'constant' leaves the optimizer's rate alone."""
    if schedule == "iwae":
        for group in opt.param_groups:
            group["lr"] = iwae_learning_rate(lr, examples / epoch_size)
    if weight_decay:
        decay = sum(p.square().flatten(1).sum(1) for p in decayed)
        objective = objective - 0.5 * weight_decay * batch_size * decay
    opt.zero_grad(set_to_none=True)
    (-objective.sum()).backward()
    opt.step()
