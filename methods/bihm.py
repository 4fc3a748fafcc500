"""Bidirectional Helmholtz machines (Bornschein, Shabanian, Fischer & Bengio, ICML 2016).

The model is p*(x, h) = sqrt(p(x, h) q(x, h)) / Z. Training (official code jbornschein/bihm,
src/helmholtz/bihm.py, and the NRWS authors' BidirectionalReweightedWakeSleepOptimizer) is RWS
with *half* log-weights: w~_k = softmax_k(1/2 (log p(x, h_k) - log q(h_k | x))), h_k ~ q; p is
updated with w~ and q with (w~ - 1/K) (a baseline); there is no sleep phase and no -grad log Z term.
Every step is therefore ONE update of

    wake-p + wake-q:  sum_k w~_k grad log p(x, h_k) + sum_k (w~_k - 1/K) grad log q(h_k | x).

Defaults follow the BiHM code: Adam, lr 1e-3, K = 10.

Evaluation adds, beside the harness's 'll' (IS estimate of the directed model's log p(x)):
* 'll_star': log p*(x) = log p~*(x) - log Z^2, with log p~*(x) = 2 [logsumexp_k(1/2 log w_k) - log K]
  (the code's `log_psx`) and Z^2 estimated from `z_samples` dreams (bench.estimators.bihm_log_z2);
* 'log_z2': that estimate (Z^2 <= 1, so log p*(x) >= log p~*(x));
* 'll_star_exact': exact log p*(x) by enumeration, for the 3x3 lines toy (bench.estimators.sbn.bihm_metrics).
"""

from __future__ import annotations

from torch import Tensor

from bench.estimators.sbn import bihm_metrics
from bench.estimators.wake_sleep import (
    ascend,
    log_likelihood_estimate,
    sqrt_normalized_weights,
    wake_p,
    wake_q,
    wake_sample,
)
from bench.models.helmholtz import HelmholtzMachine
from bench.nn.optim import OPTIMIZERS, make_optimizer
from bench.workloads.method import Method, register


@register("bihm", family="helmholtz", defaults={"k": 10, "lr": 1e-3, "optimizer": "adam", "z_samples": 10000},
          choices={"optimizer": OPTIMIZERS})
class BiHM(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        wake = wake_sample(self.model, x, self.k)
        w = sqrt_normalized_weights(wake.log_w)  # softmax_k(1/2 log w_k)
        ascend(self.opt, wake_p(w, wake.log_p) + wake_q(w, wake.log_q, baseline=1.0 / self.k))
        return {"ll_k": log_likelihood_estimate(wake.log_w)}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """log Z^2, log p*(x) and, for toy networks, the exact log p*(x) (bench.estimators.sbn.bihm_metrics)."""
        return bihm_metrics(self.model, x, k, self.z_samples)
