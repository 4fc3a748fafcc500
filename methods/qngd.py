"""Quantum natural gradient descent with the Bogoliubov-Kubo-Mori metric (BKM-QNGD) on the VQT loss
of a QHBM: Sbahi et al. 2022 (arXiv 2206.04663, Sec. 3), google/qhbm-library
baselines/geometry/train.py, method 'natural'.

One step, per replica:

    psi <- psi - lr (G(psi) + (damping + s) I)^-1 grad L(psi),

G the exact BKM metric (bench.curvature.bkm.bkm_metric), grad L the exact gradient of the VQT loss
(autograd), damping the library's regulariser (its geometry config's eps = 1e-2; the metric is
singular along directions that do not move rho) and s = max(0, -lambda_min(G)) the library's
eigenvalue-adaptive shift, which only undoes rounding here (G is positive semi-definite). The
natural gradient is applied by plain gradient descent (the library can hand it to Adam instead;
plain descent is the method the paper analyses). Near the target, G is the Hessian of the loss
(L = D(rho || sigma_beta) - log Z_beta, and the BKM metric is the Hessian of D), so lr = 1 is a
Newton step there. Only lr is tuned; damping is fixed. Returns the loss before the step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.curvature.bkm import bkm_metric
from bench.models.qhbm import QHBM
from bench.workloads.method import Method, register


@register("qngd", family="qhbm", defaults={"lr": 0.1, "damping": 1e-2})
class QNGD(Method):
    model: QHBM

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        self.model.advance()  # no optimiser state to reset: a QNGD step reads only psi
        params = self.model.params
        loss = self.model.vqt_loss(params)  # (R,)
        (grad,) = torch.autograd.grad(loss.sum(), params)
        metric = bkm_metric(self.model, params)  # (R, P, P)
        shift = self.damping + (-torch.linalg.eigvalsh(metric)[:, 0]).clamp_min(0)  # (R,)
        eye = torch.eye(metric.shape[-1], dtype=metric.dtype, device=metric.device)
        direction = torch.linalg.solve(metric + shift[:, None, None] * eye, grad)
        with torch.no_grad():
            params -= self.lr * direction
        return {"vqt_loss": loss.detach()}
