"""Wake-sleep (Hinton, Dayan, Frey & Neal, Science 1995).

Wake: sample h ~ q(h | x) once and ascend log p(x, h). Sleep: dream (x, h) ~ p and ascend
log q(h | x). This is exactly reweighted wake-sleep with K = 1 (the single normalised weight is 1)
and sleep-only q updates, which is how Bornschein & Bengio (2015) run their WS baseline; so the
class reuses methods/rws.py with those two settings fixed, and the same optimizer and scale
convention (sums over the minibatch divided by B; lr = 0.1 is the RWS code's 1e-3 at B = 100).
"""

from __future__ import annotations

from bench.models.helmholtz import HelmholtzMachine
from bench.workloads.method import register
from methods.rws import RWS


@register("ws", family="helmholtz", defaults={"lr": 0.1, "optimizer": "momentum_ema", "sleep_every": 2})
class WakeSleep(RWS):
    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, k=1, q_updates="sleep", q_baseline=False, **hparams)
