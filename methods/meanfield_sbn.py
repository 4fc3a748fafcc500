"""Mean-field learning of a sigmoid belief network (Saul, Jaakkola & Jordan 1996; Jordan et al. 1999).

Variational EM on the generative SBN of a HelmholtzMachine (the same model ``ws`` and ``rws`` train;
its recognition network is not used): for every minibatch,

* E-step: per example, the factorised posterior mu and the bound parameters xi from ``iterations``
  damped parallel sweeps of the mean-field equations (bench/meanfield.py, Saul et al.'s xi-bound);
* M-step: one optimiser step along the gradient of the mean-field bound L(mu, xi; theta) in the
  generative parameters theta at that (mu, xi) (the batch mean, as in methods/rws.py).

The step returns the batch's bound as 'bound'. Evaluation (the harness's IS protocol with this
method's own proposal, since it trains no recognition network): per evaluated example, the E-step
is run to the same number of sweeps, and

* 'll'   = log (1/K) sum_k p(x, h_k) / q_MF(h_k), h_k ~ q_MF = prod_i Bernoulli(mu_i), the
  importance-sampled log-likelihood with the example's mean-field posterior as proposal (a
  stochastic lower bound like every IS estimate; comparable with ws/rws at the same K, whose
  proposal is their recognition network);
* 'mf_bound' = the mean-field bound itself (Saul et al.'s reported quantity).

Choices the papers leave open: the optimiser (Saul et al. use gradient ascent; we expose the
harness's optimisers, default Adam lr 1e-3), mu and xi start at 1/2 for every example (no
persistent posteriors across epochs), and 20 sweeps (the research notes' quick setup; on random 112-24-8
nets the bound after 20 sweeps was within 2e-3 nat of its value after 100, and 10 sweeps left ~0.02).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.meanfield import bound, infer, sample_log_weights
from bench.models.helmholtz import HelmholtzMachine
from bench.nn.optim import OPTIMIZERS, make_optimizer
from bench.workloads.method import LogWeightFn, Method, register

EVAL_CHUNK = 250  # examples per E-step at evaluation, bounding the (R, B, C, P) tensors


@register("meanfield_sbn", family="helmholtz", defaults={"lr": 1e-3, "optimizer": "adam", "iterations": 20},
          choices={"optimizer": OPTIMIZERS})
class MeanFieldSBN(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: HelmholtzMachine

    def __init__(self, model: HelmholtzMachine, **hparams):
        super().__init__(model, **hparams)
        self.opt = make_optimizer(model.p_parameters(), self.optimizer, self.lr)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        state = infer(self.model, x, self.iterations)
        objective = bound(self.model, x, state).mean(1)
        self.opt.zero_grad(set_to_none=True)
        (-objective.sum()).backward()
        self.opt.step()
        return {"bound": objective.detach()}

    def proposal(self, x: Tensor) -> list[tuple[Tensor, LogWeightFn]]:
        """Per chunk of EVAL_CHUNK examples, each example packed with its mean-field posterior mu
        (so the IS estimator's chunking keeps them aligned) and the log-weights of q_MF."""
        sizes = self.model.layers

        def log_weights(packed: Tensor, kc: int) -> Tensor:
            xp, *mu = packed.split(sizes, dim=-1)
            return sample_log_weights(self.model, xp, mu, kc)

        return [(torch.cat([xs, *infer(self.model, xs, self.iterations).mu], dim=-1), log_weights)
                for xs in x.split(EVAL_CHUNK, dim=1)]

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """'mf_bound': the mean-field bound at the E-step's fixed point (Saul et al.'s reported quantity)."""
        mf = [bound(self.model, xs, infer(self.model, xs, self.iterations)) for xs in x.split(EVAL_CHUNK, dim=1)]
        return {"mf_bound": torch.cat(mf, 1).mean(1)}
