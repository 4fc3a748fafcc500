"""Reweighted wake-sleep with the joint phase scheme of the NRWS authors' code (Varady, Volpi,
Malago & Ay, arXiv 2008.06687; rist-ro/argo, ReweightedWakeSleepOptimizer): the RWS baseline of
the NRWS paper.

Every step draws K samples h_k ~ q(h | x) per example of the minibatch and K x B dreams
(x', h') ~ p, and makes ONE update of

    wake-p + 1/2 wake-q + 1/2 sleep-q:
        sum_k w~_k grad log p(x, h_k)
      + 1/2 sum_k (w~_k - c) grad log q(h_k | x)       (c = 1/K with `q_baseline`, else 0)
      + 1/2 mean over the dreams of grad log q(h' | x'),

with w~_k = softmax_k(log p(x, h_k) - log q(h_k | x)), from that single draw (the wake terms are
means over the B examples). Bornschein & Bengio's alternating scheme, a separate sleep-q update
every few steps, is ``rws`` (methods/rws.py). Defaults are those of the NRWS paper's baselines:
K = 5, the 1/K baseline, plain SGD at NRWS's step size (lr 0.02 = the authors' 0.01 with their
+-1 unit coding, see methods/nrws.py).
"""

from __future__ import annotations

from torch import Tensor

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


@register("rws_joint", family="helmholtz", defaults={"k": 5, "lr": 0.02, "optimizer": "sgd", "q_baseline": True},
          choices={"optimizer": OPTIMIZERS})
class RWSJoint(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        b = x.shape[1]
        wake = wake_sample(self.model, x, self.k)
        w = normalized_weights(wake.log_w)
        wake_q_term = wake_q(w, wake.log_q, baseline=1.0 / self.k if self.q_baseline else 0.0)
        sleep_q_term = sleep_q(self.model, self.model.sample_p(self.k * b))  # mean over K x B dreams
        ascend(self.opt, wake_p(w, wake.log_p) + (wake_q_term + sleep_q_term) / 2)
        return {"ll_k": log_likelihood_estimate(wake.log_w)}
