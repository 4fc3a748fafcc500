"""EM for probabilistic PCA (Tipping & Bishop 1999, "Probabilistic principal component analysis",
JRSS B 61(3), Sec. 3.2 and Appendix B).

One ``step`` is one EM iteration on the minibatch it gets, x (R, B, D); the claims give it the whole
training set (batch_size = N), so one step is one iteration of batch EM. With the centred batch
e = x - mu (mu: the training mean, the closed-form ML mean), its covariance S = e^T e / B, and
M = W^T W + sigma^2 I (q x q), the E- and M-steps combine into (eqs 29-30)

    W~ = S W (sigma^2 I + M^-1 W^T S W)^-1,
    sigma~^2 = tr(S - S W M^-1 W~^T) / D.

Neither S nor e is formed: S W = e^T (e W) / B (2 B D q multiply-adds, e W = x W - 1 mu^T W) and
tr S = ||e||_F^2 / B, so an iteration costs O(B D q + D q^2). Each iteration increases the log-likelihood
L = -B/2 {D log 2 pi + log|C| + tr(C^-1 S)} (eq. 4, C = W W^T + sigma^2 I) unless at a fixed point
(Dempster, Laird & Rubin 1977), and EM converges to the ML solution of eqs 7-8 from almost every
start (Tipping & Bishop 1999, Sec. 3.2: the other stationary points are saddles). The step returns
'batch_ll', L / B at the parameters it started from (through log|C| = (D - q) log sigma^2 + log|M|
and tr(C^-1 S) = (tr S - tr(M^-1 W^T S W)) / sigma^2), in nats per example. All in float64.

EM has no step size: the equal-budget tuning has no knob to search (``tunable=()``), so each label
is run at its stated configuration.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.models.ppca import PPCA
from bench.workloads.method import Method, register


@register("ppca_em", family="ppca", defaults={}, tunable=())
class PPCAEM(Method):
    model: PPCA

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        w, variance = model.weight, model.variance.reshape(-1, 1, 1)
        b, d, q = x.shape[1], *w.shape[1:]
        x, mean = x.to(torch.float64), model.mean.unsqueeze(1)  # (R, B, D), (R, 1, D)
        ew = x @ w - mean @ w  # e W (R, B, q), e = x - mu never formed
        sw = (x.transpose(1, 2) @ ew - mean.transpose(1, 2) @ ew.sum(1, keepdim=True)) / b  # S W = e^T e W / B
        # tr S = (||x||^2 - 2 mu . sum_n x_n + B ||mu||^2) / B
        trace_s = (torch.linalg.vector_norm(x, dim=(1, 2)).square()
                   - (2 * x.sum(1) - b * mean.squeeze(1)).mul(mean.squeeze(1)).sum(-1)) / b
        eye = torch.eye(q, dtype=w.dtype, device=w.device)
        m = w.transpose(1, 2) @ w + variance * eye  # M (R, q, q)
        wtsw = w.transpose(1, 2) @ sw  # W^T S W (R, q, q)
        m_inv_wtsw = torch.linalg.solve(m, wtsw)  # M^-1 W^T S W
        log_det_c = (d - q) * torch.log(variance.reshape(-1)) + torch.linalg.slogdet(m).logabsdet
        trace_c_inv_s = (trace_s - torch.diagonal(m_inv_wtsw, dim1=1, dim2=2).sum(-1)) / variance.reshape(-1)
        ll = -0.5 * (d * math.log(2 * math.pi) + log_det_c + trace_c_inv_s)
        # eq 29: W~ = S W (sigma^2 I + M^-1 W^T S W)^-1, as the solve of W~^T from its transpose
        new_w = torch.linalg.solve((variance * eye + m_inv_wtsw).transpose(1, 2), sw.transpose(1, 2)).transpose(1, 2)
        # eq 30: sigma~^2 = tr(S - S W M^-1 W~^T) / D, with tr(S W M^-1 W~^T) = tr(M^-1 W~^T S W)
        new_variance = (trace_s - torch.diagonal(torch.linalg.solve(m, new_w.transpose(1, 2) @ sw),
                                                 dim1=1, dim2=2).sum(-1)) / d
        model.weight.copy_(new_w)
        model.variance.copy_(new_variance)
        return {"batch_ll": ll}
