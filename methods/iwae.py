"""Importance weighted autoencoder (Burda, Grosse & Salakhutdinov, ICLR 2016).

The step ascends the k-sample bound L_k = log (1/k) sum_k w_k, w_k = p(x, z_k) / q(z_k | x),
z_k ~ q(z | x) reparameterised. Its gradient is sum_k w~_k grad log w_k with the normalised weights
w~_k held constant (paper eq. 14); autograd through logsumexp gives exactly that, computed stably
(logsumexp subtracts the maximum). With k = 1 it is the VAE's sampled-KL bound (tested).

Defaults follow the official code (yburda/iwae): Adam with beta1 = 0.99 and eps = 1e-4 (the paper's
text says beta1 = 0.9; see methods/vae.py for what else the optimiser keeps or changes), lr 1e-3,
and the 3^i-epoch schedule when ``schedule: iwae`` is set with ``epoch_size``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.workloads.method import register
from methods.vae import OPTIM_DEFAULTS, VAE


@register("iwae", family="vae", defaults={**OPTIM_DEFAULTS, "k": 5, "beta1": 0.99, "eps": 1e-4})
class IWAE(VAE):
    def bound(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.model.log_weights(x, self.k), dim=1) - math.log(self.k)
