"""MIWAE (Mattei & Frellsen 2019, "MIWAE: deep generative modelling and imputation of incomplete data
sets", ICML, eq. 5): a VAE fit to data with missing values (NaN) by the importance-weighted bound of
the observed values alone,

    L_K(x_o) = E log (1/K) sum_k p(x_o | z_k) p(z_k) / q(z_k | x~),   z_k ~ q(z | x~),

where x~ is x with its missing values set to 0 (their zero imputation of the encoder's input) and
p(x_o | z) the product of the decoder's densities of the observed values
(bench.workloads.incomplete_data.observed_log_weights). K = 1 is the MVAE's ELBO of the observed
values (Nazabal et al. 2020, "Handling incomplete heterogeneous data using VAEs", Pattern
Recognition; the baseline Simkus, Rhodes & Gutmann 2023 call MVAE). The missing values never reach
the bound. One Adam step (rate lr) per minibatch on the mean bound, encoder and decoder jointly;
the bound is reparameterised. Returns 'bound' (nats per example, the mean over the minibatch).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bench.models.vae import GaussianLatentModel
from bench.workloads.incomplete_data import observed_log_weights
from bench.workloads.method import Method, register


@register("miwae", family="vae", defaults={"k": 5, "lr": 1e-3}, tunable=("lr",))
class MIWAE(Method):
    model: GaussianLatentModel

    def __init__(self, model: GaussianLatentModel, **hparams: Any):
        super().__init__(model, **hparams)
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"miwae: k is the number of importance samples per example, an integer >= 1; "
                             f"got {self.k!r}")
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)

    def bound(self, x: Tensor) -> Tensor:
        """L_K per example of x (R, B, D) (NaN = missing): (R, B)."""
        return observed_log_weights(self.model, x, self.k).logsumexp(1) - math.log(self.k)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        bound = self.bound(x).mean(1)
        self.opt.zero_grad(set_to_none=True)
        (-bound.sum()).backward()
        self.opt.step()
        return {"bound": bound.detach()}
