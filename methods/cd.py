"""Contrastive divergence CD-k (Hinton, Neural Computation 14, 2002) for binary RBMs.

Per minibatch x (R, B, D): the negative particles are k block-Gibbs sweeps started at the data,
v_k ~ (p(v | h) p(h | v))^k (x), and the update ascends the CD-k estimate of the log-likelihood
gradient,

    dW = <p(h | v) v^T>_data - <p(h | v_k) v_k^T>,  db = <v>_data - <v_k>,  dc = <p(h | v)>_data - <p(h | v_k)>,

i.e. descends the free-energy gap mean F(x) - mean F(v_k) (bench.models.rbm), with expectations
over hidden units taken exactly (Hinton's practical guide, Sec. 3). The step is SGD with momentum,
its rate decaying linearly to 0 over ``anneal_updates`` updates (0: constant; bench.nn.optim:
make_optimizer's `sgd`, ascent_step with the `linear` schedule).
Returns the batch's free-energy gap as 'free_energy_gap'.
"""

from __future__ import annotations

from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.rbm import RBM
from bench.nn.optim import ascent_step, check_schedule, make_optimizer
from bench.workloads.method import Method, register


@register("cd", family="rbm", defaults={"lr": 0.3, "k": 1, "momentum": 0.0, "anneal_updates": 0})
class ContrastiveDivergence(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: RBM

    def __init__(self, model: RBM, **hparams):
        super().__init__(model, **hparams)
        if self.k < 1:
            raise ConfigError(f"k={self.k!r} in method 'cd': the number of Gibbs sweeps must be >= 1")
        self.schedule = "linear" if self.anneal_updates else "constant"
        check_schedule(self.schedule, anneal_updates=self.anneal_updates)
        self.opt = make_optimizer(model.parameters(), "sgd", self.lr, momentum=self.momentum)
        self.updates = 0

    def step(self, x: Tensor) -> dict[str, Tensor]:
        gap = self.model.free_energy_gap(x, self.model.gibbs(x, self.k))
        ascent_step(self.opt, -gap, x.shape[1], lr=self.lr, schedule=self.schedule, updates=self.updates,
                    anneal_updates=self.anneal_updates)
        self.updates += 1
        return {"free_energy_gap": gap.detach()}
