"""Reweighted wake-sleep (Bornschein & Bengio, ICLR 2015, arXiv 1406.2751), with alternating phases.

For each example x, K samples h_k ~ q(h | x) give self-normalised importance weights
w~_k = softmax_k(log p(x, h_k) - log q(h_k | x)) (constants for the gradient). Every step makes

* one wake update, of p and (with `q_updates` "wake+sleep" or "wake") of q, from those samples:
    wake-p:  sum_k w~_k grad log p(x, h_k)            (a consistent estimate of grad log p(x)),
    wake-q:  sum_k (w~_k - c) grad log q(h_k | x)     (c = 1/K with `q_baseline`, else 0, as in the paper);
* and every `sleep_every` steps (with `q_updates` "wake+sleep" or "sleep") one more update, sleep-q:
    grad log q(h | x) on `sleep_every` x B dreams (x, h) ~ p (the code's `sleep_interleave`),
  sharing the optimizer state with the wake updates.

`q_updates` "wake+sleep" is the paper's default; "sleep" with K = 1 is classic wake-sleep (ws.py).
The phase scheme of the NRWS authors' code -- one update of wake-p + 1/2 wake-q + 1/2 sleep-q per
step, from a single draw -- is another method, ``rws_joint`` (methods/rws_joint.py).

Scale convention: the official code (jbornschein/reweighted-ws, learning/models/rws.py and
learning/training.py) *sums* the gradients over the minibatch (and over the dreams) and uses
lr = 1e-3 with the momentum rule m <- 0.95 m + 0.05 lr g. We divide those sums by the batch size
B, so our default lr = 0.1 is the paper's 1e-3 at its B = 100.
"""

from __future__ import annotations

from torch import Tensor

from bench.core.errors import ConfigError
from bench.estimators.wake_sleep import (
    ascend,
    log_likelihood_estimate,
    normalized_weights,
    sleep_q,
    wake_p,
    wake_q,
    wake_sample,
)
from bench.models.helmholtz import HelmholtzMachine
from bench.nn.optim import OPTIMIZERS, make_optimizer
from bench.workloads.method import Method, register

Q_UPDATES = ("wake+sleep", "wake", "sleep")


@register(
    "rws",
    family="helmholtz",
    defaults={
        "k": 10,
        "lr": 0.1,
        "optimizer": "momentum_ema",
        "q_updates": "wake+sleep",
        "sleep_every": 2,
        "q_baseline": False,
    },
    choices={"optimizer": OPTIMIZERS, "q_updates": Q_UPDATES},
)
class RWS(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        if self.q_updates not in Q_UPDATES:
            raise ValueError(f"q_updates={self.q_updates!r}; use one of {Q_UPDATES}")
        if self.sleep_every < 1:
            raise ConfigError(
                f"sleep_every={self.sleep_every!r} in method 'rws': it must be >= 1 (one sleep-q update every "
                f"that many steps); for the NRWS authors' joint phase scheme (one wake-p + 1/2 wake-q + 1/2 sleep-q "
                f"update per step) use method 'rws_joint'")
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)
        self.updates = 0

    def step(self, x: Tensor) -> dict[str, Tensor]:
        b = x.shape[1]
        wake = wake_sample(self.model, x, self.k)
        w = normalized_weights(wake.log_w)
        objective = wake_p(w, wake.log_p)
        if "wake" in self.q_updates:
            objective = objective + wake_q(w, wake.log_q, baseline=1.0 / self.k if self.q_baseline else 0.0)
        ascend(self.opt, objective)
        self.updates += 1
        if "sleep" in self.q_updates and self.updates % self.sleep_every == 0:
            dreams = self.model.sample_p(self.sleep_every * b)
            ascend(self.opt, sleep_q(self.model, dreams, batch_size=b))
        return {"ll_k": log_likelihood_estimate(wake.log_w)}
