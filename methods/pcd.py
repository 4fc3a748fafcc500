"""Persistent contrastive divergence PCD (Tieleman, ICML 2008; Younes 1989's stochastic
approximation) for binary RBMs.

The negative particles are persistent Markov chains, one set of B chains per replica (B the
minibatch size), started at the first minibatch and moved by k block-Gibbs sweeps per update
under the current parameters; they are never reset to the data. The update ascends

    dW = <p(h | v) v^T>_data - <p(h | v~) v~^T>_chains  (likewise for the biases),

i.e. descends mean F(x) - mean F(v~) (bench.models.rbm), by SGD with momentum whose rate decays
linearly to 0 over ``anneal_updates`` updates (0: constant), the optimiser of methods/cd.py.
Returns the batch's free-energy gap as 'free_energy_gap'.
"""

from __future__ import annotations

from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.rbm import RBM
from bench.nn.optim import ascent_step, check_schedule, make_optimizer
from bench.workloads.method import Method, register


@register("pcd", family="rbm", defaults={"lr": 0.3, "k": 1, "momentum": 0.0, "anneal_updates": 0})
class PersistentContrastiveDivergence(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: RBM

    def __init__(self, model: RBM, **hparams):
        super().__init__(model, **hparams)
        if self.k < 1:
            raise ConfigError(f"k={self.k!r} in method 'pcd': the number of Gibbs sweeps must be >= 1")
        self.schedule = "linear" if self.anneal_updates else "constant"
        check_schedule(self.schedule, anneal_updates=self.anneal_updates)
        self.opt = make_optimizer(model.parameters(), "sgd", self.lr, momentum=self.momentum)
        self.updates = 0
        self.chains: Tensor | None = None  # (R, B, D) fantasy particles

    def step(self, x: Tensor) -> dict[str, Tensor]:
        self.chains = self.model.gibbs(x if self.chains is None else self.chains, self.k)
        gap = self.model.free_energy_gap(x, self.chains)
        ascent_step(self.opt, -gap, x.shape[1], lr=self.lr, schedule=self.schedule, updates=self.updates,
                    anneal_updates=self.anneal_updates)
        self.updates += 1
        return {"free_energy_gap": gap.detach()}
