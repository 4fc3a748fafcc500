"""Wake-sleep (Hinton, Dayan, Frey & Neal, Science 1995).

* Wake: sample h ~ q(h | x) once per example and ascend log p(x, h) (p only).
* Sleep: dream (x, h) ~ p and ascend log q(h | x) (q only), every `sleep_every` steps with
  `sleep_every` x B dreams, sharing the optimizer state with the wake updates.

This is reweighted wake-sleep (methods/rws.py) with K = 1 -- the single normalised weight is 1 --
and sleep-only q updates, which is how Bornschein & Bengio (2015) run their WS baseline; the
optimizer and the scale convention are theirs too (sums over the minibatch divided by B; lr = 0.1
is the RWS code's 1e-3 at B = 100).
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
    wake_sample,
)
from bench.models.helmholtz import HelmholtzMachine
from bench.nn.optim import OPTIMIZERS, make_optimizer
from bench.workloads.method import Method, register


@register("ws", family="helmholtz", defaults={"lr": 0.1, "optimizer": "momentum_ema", "sleep_every": 2},
          choices={"optimizer": OPTIMIZERS})
class WakeSleep(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        if self.sleep_every < 1:
            raise ConfigError(f"sleep_every={self.sleep_every!r} in method 'ws': it must be >= 1 "
                              f"(one sleep update every that many steps)")
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)
        self.updates = 0

    def step(self, x: Tensor) -> dict[str, Tensor]:
        b = x.shape[1]
        wake = wake_sample(self.model, x, 1)  # one h ~ q(h | x) per example
        ascend(self.opt, wake_p(normalized_weights(wake.log_w), wake.log_p))  # the weight is 1: log p(x, h)
        self.updates += 1
        if self.updates % self.sleep_every == 0:
            dreams = self.model.sample_p(self.sleep_every * b)
            ascend(self.opt, sleep_q(self.model, dreams, batch_size=b))
        return {"ll_k": log_likelihood_estimate(wake.log_w)}
