"""Natural reweighted wake-sleep (Varady, Volpi, Malago & Ay, arXiv 2008.06687; Neural Networks 2022).

RWS in which every layer's gradient g (wake-p, wake-q, sleep-q) is replaced by the damped natural
gradient P(g_i) = (1 + a)(F_i + a I)^{-1} g_i of each unit i, with F_i the exact Fisher block of
the unit's conditional Bernoulli, F_i = E[s_i (1 - s_i) x~ x~^T] (bench/fisher.py). The Fisher of
the joint SBN is exactly block-diagonal over units, so no structural approximation is made.
Which samples estimate which block follows the authors' code (rist-ro/argo,
NaturalReweightedWakeSleepOptimizerAlternate / NaturalWakeSleepOptimizer):

* generative layers (and the top prior): the model's own ancestral samples, K x B dreams;
* recognition layers: the wake samples from the data (for wake-q and sleep-q alike);
* unweighted rows, no running average; refreshed every `fisher_every` steps (the code's
  `k_step_update`; 0 = every step) and reused in between;
* constant damping a (`damping`, 0.01 in the MNIST configs); above a = 10 the code uses the raw
  gradient, and so do we. The step rule is plain SGD with a constant learning rate.
* phases as in the code: every step one update of wake-p + 1/2 wake-q + 1/2 sleep-q from a single
  draw (`sleep_every = 0`, see methods/rws.py), with the 1/K baseline on the wake-q weights.

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

import torch
from torch import Tensor

from bench.curvature.sbn import LayerFisher, PriorFisher
from bench.models.helmholtz import HelmholtzMachine
from bench.workloads.method import register
from methods.rws import RWS

MAX_DAMPING = 10.0  # the authors' code falls back to the raw gradient above this damping


class NaturalGradient:
    """Mixin for RWS-family methods: precondition() swaps each SBN layer's gradient for its
    damped natural gradient, with the Fisher blocks refit every `fisher_every` updates."""

    model: HelmholtzMachine
    damping: float
    fisher_every: int
    clip: float
    k: int
    updates: int

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        self._fishers: tuple[list[LayerFisher], list[LayerFisher], PriorFisher] | None = None
        self._fitted_at = -1

    @torch.no_grad()
    def _fit(self, state: list[Tensor]) -> tuple[list[LayerFisher], list[LayerFisher], PriorFisher]:
        m, b = self.model, state[0].shape[1] // self.k
        dreams = m.sample_p(self.k * b)
        fit = lambda layer, parents: LayerFisher.fit(  # noqa: E731
            parents, torch.sigmoid(layer.logits(parents)), self.damping, clip=self.clip, reuse=max(self.fisher_every, 1))
        generative = [fit(layer, dreams[i + 1]) for i, layer in enumerate(m.generative)]
        recognition = [fit(layer, state[i][:, :b] if i == 0 else state[i]) for i, layer in enumerate(m.recognition)]
        return generative, recognition, PriorFisher.fit(m.prior.bias, self.damping, clip=self.clip)

    def precondition(self, state: list[Tensor]) -> None:
        if self.damping > MAX_DAMPING:
            return
        if self._fishers is None or (self._fitted_at != self.updates
                                     and self.updates % max(self.fisher_every, 1) == 0):
            self._fishers, self._fitted_at = self._fit(state), self.updates
        generative, recognition, prior = self._fishers
        for layer, fisher in zip([*self.model.generative, *self.model.recognition], [*generative, *recognition]):
            if layer.weight.grad is not None:  # a sleep-only update leaves p's gradients empty
                nat_w, nat_b = fisher.apply(layer.weight.grad, layer.bias.grad)
                layer.weight.grad.copy_(nat_w)
                layer.bias.grad.copy_(nat_b)
        if self.model.prior.bias.grad is not None:
            self.model.prior.bias.grad.copy_(prior.apply(self.model.prior.bias.grad))


NATURAL_DEFAULTS = {"damping": 0.01, "fisher_every": 5, "clip": 1e-3}


@register("nrws", family="helmholtz", defaults={
    "k": 5, "lr": 0.02, "optimizer": "sgd", "q_updates": "wake+sleep", "sleep_every": 0, "q_baseline": True,
    **NATURAL_DEFAULTS,
})
class NRWS(NaturalGradient, RWS):
    pass
