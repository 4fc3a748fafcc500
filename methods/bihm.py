"""Bidirectional Helmholtz machines (Bornschein, Shabanian, Fischer & Bengio, ICML 2016).

The model is p*(x, h) = sqrt(p(x, h) q(x, h)) / Z. Training (official code jbornschein/bihm,
src/helmholtz/bihm.py, and the NRWS authors' BidirectionalReweightedWakeSleepOptimizer) is RWS
with *half* log-weights: w~_k = softmax_k(1/2 (log p(x, h_k) - log q(h_k | x))), h_k ~ q; p is
updated with w~ and q with (w~ - 1/K) (a baseline); there is no sleep phase and no -grad log Z term.
Defaults follow the BiHM code: Adam, lr 1e-3, K = 10.

Evaluation adds, beside the harness's 'll' (IS estimate of the directed model's log p(x)):
* 'll_star': log p*(x) = log p~*(x) - log Z^2, with log p~*(x) = 2 [logsumexp_k(1/2 log w_k) - log K]
  (the code's `log_psx`) and Z^2 estimated from `z_samples` dreams (bench.estimators.bihm_log_z2);
* 'log_z2': that estimate (Z^2 <= 1, so log p*(x) >= log p~*(x));
* 'll_star_exact': exact log p*(x) by enumeration, for the toy networks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.sbn import (
    MAX_ENUMERATED_HIDDEN,
    bihm_log_likelihood,
    bihm_log_z2,
    exact_bihm_log_likelihood,
)
from bench.models.helmholtz import HelmholtzMachine
from bench.workloads.method import register
from methods.rws import RWS


@register("bihm", family="helmholtz", defaults={"k": 10, "lr": 1e-3, "optimizer": "adam", "z_samples": 10000})
class BiHM(RWS):
    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, q_updates="wake", q_baseline=True, sleep_every=1, **hparams)

    def importance_weights(self, log_w: Tensor) -> Tensor:
        return torch.softmax(0.5 * log_w, dim=1)

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        out = {}
        log_z2 = bihm_log_z2(self.model, self.z_samples)
        out["log_z2"] = log_z2
        out["ll_star"] = bihm_log_likelihood(self.model, x, k, log_z2).mean(1)
        if x.shape[-1] + sum(self.model.layers[1:]) <= MAX_ENUMERATED_HIDDEN + 4:
            out["ll_star_exact"] = exact_bihm_log_likelihood(self.model, x).mean(1)
        return out
