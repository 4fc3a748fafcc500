"""Natural reweighted wake-sleep (Varady, Volpi, Malago & Ay, arXiv 2008.06687; Neural Networks 2022).

RWS with the joint phase scheme of the authors' code (methods/rws_joint.py) in which every layer's
gradient g is replaced by the damped natural gradient P(g_i) = (1 + a)(F_i + a I)^{-1} g_i of each
unit i, with F_i the exact Fisher block of the unit's conditional Bernoulli,
F_i = E[s_i (1 - s_i) x~ x~^T] (bench/curvature/sbn.py). Every step:

1. wake: K samples h_k ~ q(h | x) per example, w~_k = softmax_k(log p(x, h_k) - log q(h_k | x));
2. sleep: K x B dreams (x', h') ~ p;
3. g = the gradient of wake-p + 1/2 wake-q + 1/2 sleep-q (with the 1/K baseline on wake-q):
       sum_k w~_k grad log p(x, h_k) + 1/2 sum_k (w~_k - 1/K) grad log q(h_k | x)
       + 1/2 mean over the dreams of grad log q(h' | x');
4. every `fisher_every` steps, refit the Fisher blocks (bench.curvature.sbn.HelmholtzFisher);
5. one SGD step along P(g).

The Fisher of the joint SBN is exactly block-diagonal over units, so no structural approximation
is made. Which samples estimate which block follows the authors' code (rist-ro/argo,
NaturalReweightedWakeSleepOptimizerAlternate / NaturalWakeSleepOptimizer):

* generative layers (and the top prior): the model's own ancestral samples, K x B dreams;
* recognition layers: the wake samples from the data (for wake-q and sleep-q alike);
* unweighted rows, no running average; refreshed every `fisher_every` steps (the code's
  `k_step_update`; 0 = every step) and reused in between;
* constant damping a (`damping`, 0.01 in the MNIST configs); above a = 10 the code uses the raw
  gradient, and so do we. The step rule is plain SGD with a constant learning rate.

Where we differ, and why:
* Units are coded 0/1 here, +-1 in the code. The code's hand-written gradients are 2 x the score
  while its Fisher is that of the score, so its step is 2 x lr x the natural gradient: our default
  lr = 0.02 is its 0.01. The undamped natural gradient is invariant to the affine re-coding; with
  a = 0.01 the damping acts slightly differently in the two codings.
* The bottom recognition layer's Fisher is computed on the B distinct examples instead of their
  K copies: the matrix is identical, the Woodbury system K times smaller.
* Probabilities are clamped to [clip, 1 - clip] only inside the Fisher (the code's clip_probs,
  1e-3 in the NRWS configs, also clamps the model's likelihoods).
"""

from __future__ import annotations

from torch import Tensor

from bench.curvature.sbn import HelmholtzFisher
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


@register("nrws", family="helmholtz", defaults={
    "k": 5, "lr": 0.02, "optimizer": "sgd", "q_baseline": True, "damping": 0.01, "fisher_every": 5, "clip": 1e-3,
}, choices={"optimizer": OPTIMIZERS}, tunable=("lr", "damping"))
class NRWS(Method):
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)
        self.fisher = HelmholtzFisher(model, self.k, self.damping, self.fisher_every, self.clip)
        self.updates = 0

    def step(self, x: Tensor) -> dict[str, Tensor]:
        b = x.shape[1]
        wake = wake_sample(self.model, x, self.k)
        w = normalized_weights(wake.log_w)
        wake_q_term = wake_q(w, wake.log_q, baseline=1.0 / self.k if self.q_baseline else 0.0)
        sleep_q_term = sleep_q(self.model, self.model.sample_p(self.k * b))  # mean over K x B dreams
        objective = wake_p(w, wake.log_p) + (wake_q_term + sleep_q_term) / 2
        ascend(self.opt, objective, precondition=lambda: self.fisher.precondition(wake.state, self.updates))
        self.updates += 1
        return {"ll_k": log_likelihood_estimate(wake.log_w)}
