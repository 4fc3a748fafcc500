"""Optimizers by name, as the papers used them, and the learning-rate schedules and ascent step of
the Gaussian-latent methods (methods/vae.py, iwae.py, dlgm.py, ws_continuous.py) and the RBM
methods (methods/cd.py, pcd.py). All act element-wise, so replicas stay independent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError, unknown

OPTIMIZERS = ("momentum_ema", "sgd", "adam", "adagrad")
_lr_scale: Tensor | None = None  # per-replica learning-rate factors while a packed run builds its method


@contextmanager
def replica_learning_rates(scale: Tensor) -> Iterator[None]:
    """While active, make_optimizer gives replica r the learning rate lr * scale[r] (scale (R,) > 0):
    the equal-budget tuning trains a label's learning-rate grid as the replicas of one run
    (bench.claims.tuning, bench.engine.train.run_packed)."""
    global _lr_scale
    previous, _lr_scale = _lr_scale, scale
    try:
        yield
    finally:
        _lr_scale = previous


class ReplicaScaled:
    """An optimizer whose update of replica r is multiplied by scale[r]: theta_r <- theta_r +
    scale[r] * (update of the wrapped optimizer). For the four OPTIMIZERS the wrapped state (momentum,
    Adam's moments, Adagrad's sums) does not depend on the learning rate and the update is lr times a
    function of that state, so this is the optimizer at lr * scale[r], exactly up to rounding (each
    step of every parameter group, schedules included: they set the groups' lr). Parameters are
    (R, ...), replica first. Everything else (param_groups, zero_grad, state_dict) is the wrapped
    optimizer's."""

    def __init__(self, optimizer: torch.optim.Optimizer, scale: Tensor):
        self.optimizer, self.scale = optimizer, scale

    def __getattr__(self, name: str) -> Any:
        if name in ("optimizer", "scale"):  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    @torch.no_grad()
    def step(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        before = [p.clone() for p in params]
        self.optimizer.step()
        for p, b in zip(params, before):
            p.sub_(b).mul_(self.scale.to(p).view(-1, *(1,) * (p.dim() - 1))).add_(b)


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused optimizer kernels run (Adagrad's: the CPU only)


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, beta: float = 0.95,
                   beta1: float = 0.9, eps: float = 1e-8, momentum: float = 0.0) -> torch.optim.Optimizer:
    """`momentum_ema` is the RWS code's rule m <- beta*m + (1-beta)*lr*g, theta <- theta + m,
    which is torch SGD with momentum = dampening = beta (torch seeds the buffer with the first
    gradient instead of (1-beta) times it; only the first step differs). `sgd` takes momentum,
    heavy-ball m <- momentum*m + g, theta <- theta - lr*m (torch's SGD; CD/PCD, Tieleman 2008;
    0: plain SGD). `adam` takes beta1 and eps (IWAE's code: 0.99 and 1e-4; the defaults are
    torch's); `adagrad` (AEVB, DLGM) takes eps.

    Parameters on a CPU or a CUDA device get torch's fused kernel (one pass over each parameter,
    the whole update in one loop, instead of one kernel per operation and parameter): the same
    update, rounded in another order; elsewhere the default implementation. torch has no fused
    Adagrad for CUDA (torch 2.11 raises RuntimeError), so Adagrad on a GPU runs the default one.
    Inside `replica_learning_rates(scale)` the optimizer is wrapped in ReplicaScaled (a ConfigError
    when a parameter has no leading replica axis)."""
    params = list(params)
    optimizer = _make(params, name, lr, beta, beta1, eps, momentum)
    if _lr_scale is None:
        return optimizer
    r = len(_lr_scale)
    if any(p.dim() == 0 or p.shape[0] != r for p in params):
        raise ConfigError(f"per-replica learning rates need every parameter to be (R={r}, ...), replica first; "
                          f"got shapes {sorted({tuple(p.shape) for p in params})}: train these configurations "
                          f"one at a time (tuning with pack=False)")
    return ReplicaScaled(optimizer, _lr_scale)  # type: ignore[return-value]


def _make(params: list[torch.nn.Parameter], name: str, lr: float, beta: float, beta1: float, eps: float,
          momentum: float) -> torch.optim.Optimizer:
    devices = FUSED_DEVICES if name != "adagrad" else ("cpu",)
    fused = {"fused": True} if all(p.device.type in devices for p in params) else {}
    if name == "momentum_ema":
        return torch.optim.SGD(params, lr=lr, momentum=beta, dampening=beta, **fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, **fused)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999), eps=eps, **fused)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps, **fused)
    raise unknown("optimizer", name, OPTIMIZERS)


# --------------------------------------------------------------------------- learning-rate schedules
SCHEDULES = ("constant", "iwae")  # the Gaussian-latent methods' `schedule` choices
ALL_SCHEDULES = (*SCHEDULES, "linear")  # and CD/PCD's linear annealing (their anneal_updates)


def iwae_learning_rate(lr: float, epoch: float) -> float:
    """Burda et al.'s schedule (IWAE, ICLR 2016, Sec. 5; yburda/iwae ``checkpoint1to8``): stage
    i = 0..7 lasts 3^i epochs (3280 in all) at lr * round(10^(1 - i/7), 1) / 10; the last stage's
    rate holds after it. ``epoch`` counts (fractional) passes over the training set."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return lr * round(10.0 ** (1 - stage / 7), 1) / 10


def linear_learning_rate(lr: float, update: int, anneal_updates: int) -> float:
    """lr * max(0, 1 - update / anneal_updates) for update t = 0, 1, ...: a rate that decays
    linearly to 0 over ``anneal_updates`` updates and stays there (Tieleman, ICML 2008, trains RBMs
    by CD and PCD with such a schedule)."""
    return lr * max(0.0, 1.0 - update / anneal_updates)


def check_schedule(schedule: str, epoch_size: int = 0, anneal_updates: int = 0) -> None:
    """Validate a learning-rate schedule name (ALL_SCHEDULES: 'constant', 'iwae' or 'linear');
    'iwae' counts examples, so it needs ``epoch_size`` > 0, the number of training examples;
    'linear' needs ``anneal_updates`` > 0. Raises ConfigError."""
    if schedule not in ALL_SCHEDULES:
        raise ConfigError(f"schedule {schedule!r}; use one of {ALL_SCHEDULES}")
    if schedule == "iwae" and epoch_size <= 0:
        raise ConfigError("schedule 'iwae' needs epoch_size, the number of training examples")
    if schedule == "linear" and anneal_updates <= 0:
        raise ConfigError(f"schedule 'linear' needs anneal_updates > 0, the number of updates over which the "
                          f"rate decays to 0; got {anneal_updates!r}")


def ascent_step(opt: torch.optim.Optimizer, objective: Tensor, batch_size: int, *, lr: float,
                schedule: str = "constant", examples: int = 0, epoch_size: int = 0, updates: int = 0,
                anneal_updates: int = 0, weight_decay: float = 0.0, decayed: Iterable[Tensor] = ()) -> None:
    """One optimizer step that *ascends* ``objective`` (R,), per replica the sum over a minibatch of
    ``batch_size`` examples of the per-example bound, minus the weight-decay prior on ``decayed``
    (the generative parameters theta, each with the replica axis first):

        objective - weight_decay * batch_size / 2 * ||theta||^2,

    i.e. for weight_decay = 1/N the per-example share of AEVB's N(0, I) prior on theta (Kingma &
    Welling 2014, Sec. 5) or of the DLGM's Gaussian prior (kappa = N * weight_decay; Rezende et al.
    2014). With ``schedule`` 'iwae' the learning rate is first set to
    ``iwae_learning_rate(lr, examples / epoch_size)``, ``examples`` the number of training examples
    seen before this step; with 'linear', to ``linear_learning_rate(lr, updates, anneal_updates)``,
    ``updates`` the number of steps before this one; 'constant' leaves the optimizer's rate alone."""
    if schedule != "constant":
        rate = (iwae_learning_rate(lr, examples / epoch_size) if schedule == "iwae"
                else linear_learning_rate(lr, updates, anneal_updates))
        for group in opt.param_groups:
            group["lr"] = rate
    if weight_decay:
        decay = sum(p.square().flatten(1).sum(1) for p in decayed)
        objective = objective - 0.5 * weight_decay * batch_size * decay
    opt.zero_grad(set_to_none=True)
    (-objective.sum()).backward()
    opt.step()
