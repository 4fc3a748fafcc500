"""Stochastic gradient descent on a linear autoencoder's reconstruction error (Baldi & Hornik 1989;
"a linear autoencoder learns PCA's subspace", as Bengio, Courville & Vincent 2013, "Representation
learning: a review and new perspectives", recall it).

One step on the minibatch x (R, B, D) descends, per replica, the mean squared reconstruction error
E(theta) = mean_n ||x^_n - x_n||^2 of bench/models/linear_autoencoder.py (encoder, decoder and both
biases) with the optimizer named by ``optimizer`` (bench.nn.optim.make_optimizer; default plain SGD,
theta <- theta - lr_t grad E, no momentum). The step size decays as

    lr_t = lr / (1 + t / decay_steps)      (t: steps taken; the schedule lr_0 / (1 + lr_0 lambda t) of
                                            Bottou 2012, "Stochastic gradient descent tricks")

so that sum_t lr_t diverges and sum_t lr_t^2 converges (Robbins & Monro 1951): at a constant step the
minibatch noise holds SGD at an error floor, roughly proportional to lr / B, above PCA's (first 10000
MNIST images, k = 32, lr 0.03: batch-100 SGD is 0.4% above PCA's error after 3000 steps, full-batch
gradient descent 0.12% above after 2000 and 0.04% after 4000). decay_steps = 0 keeps the step constant. The optimizer acts element-wise,
so the replicas stay independent. Returns 'batch_mse', E on the minibatch before the step.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.linear_autoencoder import LinearAutoencoder
from bench.nn.optim import OPTIMIZERS, make_optimizer
from bench.workloads.method import Method, register


@register("linear_ae", family="linear_autoencoder", defaults={"optimizer": "sgd", "lr": 0.03, "decay_steps": 0},
          choices={"optimizer": OPTIMIZERS})
class LinearAE(Method):
    packs_lr = True  # lr acts only through make_optimizer: a tuning grid may train as replicas
    model: LinearAutoencoder

    def __init__(self, model: LinearAutoencoder, **hparams: Any):
        super().__init__(model, **hparams)
        if self.decay_steps < 0:
            raise ConfigError(f"linear_ae: decay_steps must be >= 0 (0: a constant step); got {self.decay_steps}")
        self.opt = make_optimizer(model.parameters(), self.optimizer, self.lr)
        self.steps = 0

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        if self.decay_steps:
            for group in self.opt.param_groups:
                group["lr"] = self.lr / (1 + self.steps / self.decay_steps)
        self.opt.zero_grad(set_to_none=True)
        error = self.model.squared_error(x).mean(1)  # (R,)
        error.sum().backward()  # replicas have disjoint parameters: each gets its own gradient
        self.opt.step()
        self.steps += 1
        return {"batch_mse": error.detach()}
