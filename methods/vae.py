"""Auto-encoding variational Bayes (Kingma & Welling, ICLR 2014): the reparameterised ELBO.

Per example, z_k = mu(x) + sigma(x) * eps_k, eps_k ~ N(0, I), and the step ascends

* kl 'analytic' (AEVB's estimator B, eq. 7, which the paper's experiments use):
  (1/k) sum_k log p(x | z_k) - KL(q(z | x) || p(z)), for one stochastic layer (or the DLGM);
* kl 'sampled' (estimator A; Burda et al.'s "VAE with k samples"): (1/k) sum_k log w_k,
  log w = log p(x, z) - log q(z | x), for any depth.

``IWAE`` (methods/iwae.py) and ``DLGM`` (methods/dlgm.py) subclass this and change only the bound
or the family. Choices the papers leave to the implementation, and ours:

* The step ascends the *sum* of the per-example bounds over the minibatch (IWAE's code sums, which
  fixes what Adam's eps = 1e-4 means; AEVB's Adagrad is scale-free up to its eps), minus
  ``weight_decay`` * B/2 * ||theta||^2 on the generative parameters theta: with weight_decay = 1/N
  this is AEVB's N(0, I) prior on theta (and the DLGM's Gaussian prior, kappa = N * weight_decay).
* Optimisers (bench.nn.optim): 'adagrad' (AEVB, DLGM) or 'adam' with ``beta1`` and ``eps`` (IWAE's code: beta1 0.99,
  eps 1e-4; its second moments start at 1 rather than 0, which we do not copy: torch's Adam).
* ``schedule: iwae``: lr * round(10^(1 - i/7), 1)/10 for 3^i epochs, i = 0..7 (IWAE's
  ``checkpoint1to8``, 3280 epochs); the method counts examples, so it needs ``epoch_size`` (the
  number of training examples). 'constant' keeps lr.
* ``gap_examples`` > 0 adds Cremer et al.'s amortization-gap decomposition on the first
  ``gap_examples`` evaluated examples, with ``gap_steps`` Adam steps of local optimisation
  (bench/analysis.py), to every evaluation.

The training bound is returned from ``step`` as 'bound' (per replica, mean over the minibatch).
"""

from __future__ import annotations

from torch import Tensor

from bench.estimators.amortization import amortization_gaps
from bench.models.vae import GaussianLatentModel
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register

KL_ESTIMATORS = ("analytic", "sampled")
SCHEDULES = ("constant", "iwae")


def iwae_learning_rate(lr: float, epoch: float) -> float:
    """Burda et al.'s schedule: stage i (i = 0..7) lasts 3^i epochs at lr * round(10^(1 - i/7), 1) / 10."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return lr * round(10.0 ** (1 - stage / 7), 1) / 10


OPTIM_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "eps": 1e-8, "weight_decay": 0.0,
                  "schedule": "constant", "epoch_size": 0, "gap_examples": 0, "gap_steps": 0}


class GaussianLatentMethod(Method):
    """Optimiser, learning-rate schedule, weight decay and evaluation shared by the methods that
    train Gaussian-latent models (vae, iwae, dlgm, ws_continuous)."""

    model: GaussianLatentModel

    def __init__(self, model: GaussianLatentModel, **hparams):
        super().__init__(model, **hparams)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}; use one of {SCHEDULES}")
        if self.schedule == "iwae" and self.epoch_size <= 0:
            raise ValueError("schedule 'iwae' needs epoch_size, the number of training examples")
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr, beta1=self.beta1, eps=self.eps)
        self.examples = 0

    def apply(self, objective: Tensor, batch_size: int) -> None:
        """One ascent step on objective (R,) (sums over the minibatch) minus the weight decay."""
        if self.schedule == "iwae":
            for group in self.opt.param_groups:
                group["lr"] = iwae_learning_rate(self.lr, self.examples / self.epoch_size)
        if self.weight_decay:
            decay = sum(p.square().flatten(1).sum(1) for p in self.model.generative_parameters())
            objective = objective - 0.5 * self.weight_decay * batch_size * decay
        self.opt.zero_grad(set_to_none=True)
        (-objective.sum()).backward()
        self.opt.step()
        self.examples += batch_size

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        if not self.gap_examples:
            return {}
        return amortization_gaps(self.model, x[:, : self.gap_examples], k, self.gap_steps)


@register("vae", family="vae", defaults={"k": 1, "kl": "analytic", **OPTIM_DEFAULTS})
class VAE(GaussianLatentMethod):
    def __init__(self, model: GaussianLatentModel, **hparams):
        super().__init__(model, **hparams)
        if hparams.get("kl", "sampled") not in KL_ESTIMATORS:  # IWAE has no kl: its bound is always sampled
            raise ValueError(f"kl {hparams['kl']!r}; use one of {KL_ESTIMATORS}")

    def bound(self, x: Tensor) -> Tensor:
        """The per-example training bound (R, B)."""
        if self.kl == "analytic":
            return self.model.elbo_analytic_kl(x, self.k)
        return self.model.log_weights(x, self.k).mean(1)

    def step(self, x: Tensor) -> dict[str, Tensor]:
        bound = self.bound(x)
        self.apply(bound.sum(1), x.shape[1])
        return {"bound": bound.detach().mean(1)}
