"""Auto-encoding variational Bayes (Kingma & Welling, ICLR 2014): the reparameterised ELBO.

Per example, z_k = mu(x) + sigma(x) * eps_k, eps_k ~ N(0, I), and the step ascends

* kl 'analytic' (AEVB's estimator B, eq. 7, which the paper's experiments use):
  (1/k) sum_k log p(x | z_k) - KL(q(z | x) || p(z)), for one stochastic layer (or the DLGM);
* kl 'sampled' (estimator A, eq. 6; Burda et al.'s "VAE with k samples"): (1/k) sum_k log w_k,
  log w = log p(x, z) - log q(z | x), for any depth.

IWAE (methods/iwae.py), the DLGM (methods/dlgm.py) and continuous wake-sleep
(methods/ws_continuous.py) train the same models with the same optimiser, schedule and weight
decay (bench.nn.optim). Choices the papers leave to the implementation, and ours:

* The step ascends the *sum* of the per-example bounds over the minibatch (IWAE's code sums, which
  fixes what Adam's eps = 1e-4 means; AEVB's Adagrad is scale-free up to its eps), minus
  ``weight_decay`` * B/2 * ||theta||^2 on the generative parameters theta: with weight_decay = 1/N
  this is AEVB's N(0, I) prior on theta (and the DLGM's Gaussian prior, kappa = N * weight_decay).
  One step is ``bench.nn.optim.ascent_step``.
* Optimisers (bench.nn.optim.make_optimizer): 'adagrad' (AEVB, DLGM) or 'adam' with ``beta1`` and
  ``eps`` (IWAE's code: beta1 0.99, eps 1e-4; its second moments start at 1 rather than 0, which we
  do not copy: torch's Adam).
* ``schedule: iwae``: lr * round(10^(1 - i/7), 1)/10 for 3^i epochs, i = 0..7 (IWAE's
  ``checkpoint1to8``, 3280 epochs; ``bench.nn.optim.iwae_learning_rate``); the method counts
  examples, so it needs ``epoch_size`` (the number of training examples). 'constant' keeps lr.
* ``gap_examples`` > 0 adds Cremer et al.'s amortization-gap decomposition on the first
  ``gap_examples`` evaluated examples, with ``gap_steps`` Adam steps of local optimisation
  (bench.estimators.amortization), to every evaluation.

The training bound is returned from ``step`` as 'bound' (per replica, mean over the minibatch).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bench.estimators.amortization import amortization_gap_metrics
from bench.models.vae import GaussianLatentModel
from bench.nn.optim import OPTIMIZERS, SCHEDULES, ascent_step, check_schedule, make_optimizer
from bench.workloads.method import Method, register

KL_ESTIMATORS = ("analytic", "sampled")


@register("vae", family="vae", defaults={
    "k": 1, "kl": "analytic", "optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "eps": 1e-8, "weight_decay": 0.0,
    "schedule": "constant", "epoch_size": 0, "gap_examples": 0, "gap_steps": 0,
}, choices={"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "kl": KL_ESTIMATORS})
class VAE(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: GaussianLatentModel

    def __init__(self, model: GaussianLatentModel, **hparams: Any):
        super().__init__(model, **hparams)
        check_schedule(self.schedule, self.epoch_size)
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr, beta1=self.beta1, eps=self.eps)
        if self.kl not in KL_ESTIMATORS:
            raise ValueError(f"kl {self.kl!r}; use one of {KL_ESTIMATORS}")
        self.examples = 0  # training examples seen, for the iwae schedule

    def bound(self, x: Tensor) -> Tensor:
        """The per-example training bound on x (R, B, D): (R, B), estimator B or A of k samples."""
        if self.kl == "analytic":
            return self.model.elbo_analytic_kl(x, self.k)  # eq. 7
        return self.model.log_weights(x, self.k).mean(1)  # eq. 6: log_weights is (R, k, B)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        bound = self.bound(x)
        ascent_step(self.opt, bound.sum(1), x.shape[1], lr=self.lr, schedule=self.schedule,
                    examples=self.examples, epoch_size=self.epoch_size, weight_decay=self.weight_decay,
                    decayed=self.model.generative_parameters())
        self.examples += x.shape[1]
        return {"bound": bound.detach().mean(1)}

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        return amortization_gap_metrics(self.model, x, k, self.gap_examples, self.gap_steps)
