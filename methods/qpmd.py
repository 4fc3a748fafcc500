"""Quantum-probabilistic mirror descent (QPMD) on the VQT loss of a QHBM: Sbahi et al. 2022 (arXiv
2206.04663, Sec. 3), a first-order approximation of BKM natural gradient descent whose proximity
term is the quantum relative entropy; google/qhbm-library baselines/geometry/train.py, method
'mirror'.

Outer step t, per replica: with g = grad L(psi_t) (the exact gradient of the VQT loss, autograd),
`inner_steps` steps of Adam (learning rate `inner_lr`, state reset at each outer step) from psi_t on

    l(psi) = <psi, g> + (1 / lr) [(1 - c) D(rho_psi || rho_psi_t) + c ||psi - psi_t||^2 / 2],

c = `euclidean_weight` (the library's euclidean_div_factor), lr the outer step size eta. The
library evaluates the proximity as the VQT loss of rho_psi against the previous iterate's modular
Hamiltonian at beta = 1, which is D(rho_psi || rho_psi_t) minus the constant log Z_theta_t: the same
gradients; here D is the exact relative entropy between two QHBMs, tr(rho_psi K_t) - S(rho_psi) +
log Z_t with the modular Hamiltonian K_t of psi_t formed once per outer step (bench/models/qhbm.py;
note its temperature is 1, not the target's beta). Its Hessian at psi_t is the BKM metric, so the
subproblem's minimiser is, to first order, psi_t - lr ((1 - c) G + c I)^-1 g: a regularised natural
gradient step with no metric to form or invert. Defaults: the library's geometry config (eta = 0.1,
c = 0.5, 20 inner Adam steps at 2.5e-3). Only lr is tuned. Returns the loss at psi_t.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.qhbm import QHBM
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register


@register("qpmd", family="qhbm",
          defaults={"lr": 0.1, "euclidean_weight": 0.5, "inner_steps": 20, "inner_lr": 2.5e-3})
class QPMD(Method):
    model: QHBM

    def __init__(self, model: QHBM, **hparams: Any):
        super().__init__(model, **hparams)
        if not 0 <= self.euclidean_weight <= 1 or self.inner_steps < 1 or self.inner_lr <= 0:
            raise ConfigError(f"qpmd: euclidean_weight must lie in [0, 1], inner_steps be >= 1 and inner_lr > 0; got "
                              f"{self.euclidean_weight}, {self.inner_steps} and {self.inner_lr}")

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        model.advance()  # no optimiser state to reset: the inner Adam starts afresh every outer step
        loss = model.vqt_loss(model.params)  # (R,)
        (grad,) = torch.autograd.grad(loss.sum(), model.params)
        anchor = model.params.detach().clone()
        with torch.no_grad():
            modular, log_z = model.modular_hamiltonian(anchor)  # of rho_psi_t, fixed in the inner loop
        psi = anchor.clone().requires_grad_(True)
        inner = make_optimizer([psi], "adam", self.inner_lr)
        c = self.euclidean_weight
        for _ in range(self.inner_steps):
            relative_entropy = model.free_energy(psi, modular, 1.0) + log_z  # D(rho_psi || rho_psi_t)
            proximity = (1 - c) * relative_entropy + c * ((psi - anchor) ** 2).sum(-1) / 2
            objective = (psi * grad).sum(-1) + proximity / self.lr  # (R,): each replica its own subproblem
            inner.zero_grad(set_to_none=True)
            objective.sum().backward()
            inner.step()
        with torch.no_grad():
            model.params.copy_(psi)
        return {"vqt_loss": loss.detach()}
