"""Natural bidirectional Helmholtz machine (Varady, Volpi, Malago & Ay, arXiv 2008.06687; authors'
code rist-ro/argo, NaturalBidirectionalOptimizer).

BiHM's update (methods/bihm.py) with every layer's gradient replaced by its damped natural
gradient, exactly as in NRWS (methods/nrws.py). Every step:

1. wake: K samples h_k ~ q(h | x) per example, w~_k = softmax_k(1/2 (log p(x, h_k) - log q(h_k | x)))
   (BiHM's sqrt(p/q) weights);
2. g = the gradient of wake-p + wake-q with the 1/K baseline, no sleep phase:
       sum_k w~_k grad log p(x, h_k) + sum_k (w~_k - 1/K) grad log q(h_k | x);
3. every `fisher_every` steps, refit the Fisher blocks on the same samples as NRWS -- K x B
   ancestral samples for p, the wake samples for q (bench.curvature.sbn.HelmholtzFisher);
4. one SGD step along the damped natural gradient P(g) (lr 0.02 = the code's 0.01 with its +-1
   coding, see methods/nrws.py).

Evaluation adds BiHM's metrics ('ll_star', 'log_z2', 'll_star_exact'; see methods/bihm.py).
"""

from __future__ import annotations

from torch import Tensor

from bench.curvature.sbn import HelmholtzFisher
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


@register("nbihm", family="helmholtz", defaults={
    "k": 5, "lr": 0.02, "optimizer": "sgd", "z_samples": 10000, "damping": 0.01, "fisher_every": 5, "clip": 1e-3,
}, choices={"optimizer": OPTIMIZERS}, tunable=("lr", "damping"))
class NBiHM(Method):
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)
        self.fisher = HelmholtzFisher(model, self.k, self.damping, self.fisher_every, self.clip)
        self.updates = 0

    def step(self, x: Tensor) -> dict[str, Tensor]:
        wake = wake_sample(self.model, x, self.k)
        w = sqrt_normalized_weights(wake.log_w)  # softmax_k(1/2 log w_k)
        objective = wake_p(w, wake.log_p) + wake_q(w, wake.log_q, baseline=1.0 / self.k)
        ascend(self.opt, objective, precondition=lambda: self.fisher.precondition(wake.state, self.updates))
        self.updates += 1
        return {"ll_k": log_likelihood_estimate(wake.log_w)}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """log Z^2, log p*(x) and, for toy networks, the exact log p*(x) (bench.estimators.sbn.bihm_metrics)."""
        return bihm_metrics(self.model, x, k, self.z_samples)
