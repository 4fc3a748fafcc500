"""Stochastic backpropagation for deep latent Gaussian models (Rezende, Mohamed & Wierstra, ICML 2014).

The model is bench/models/dlgm.py (noise xi_l ~ N(0, I) per layer, rank-one-plus-diagonal Gaussian
recognition model). The step descends the paper's free energy (eq. 12): per example
-E_q[log p(x | h(xi))] + KL(q(xi | x) || N(0, I)), with the KL in closed form and the expectation
from ``k`` reparameterised samples ("stochastic backpropagation", Sec. 3), plus the Gaussian prior
(kappa / 2) ||theta_g||^2 on the generative parameters; ``weight_decay`` = kappa / N per example
(methods/vae.py). That is the VAE method with analytic KL on the dlgm family; only the defaults
differ: Adagrad, the paper's "Adagrad-style" optimiser (its step size is not stated; we use 0.02, the
middle of AEVB's grid), and a weight decay for kappa = 1.
"""

from __future__ import annotations

from bench.workloads.method import register
from methods.vae import OPTIM_DEFAULTS, VAE


@register("dlgm", family="dlgm", defaults={**OPTIM_DEFAULTS, "k": 1, "kl": "analytic", "optimizer": "adagrad",
                                            "lr": 0.02, "eps": 1e-10, "weight_decay": 2e-5})
class DLGM(VAE):
    pass
