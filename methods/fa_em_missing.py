"""EM for factor analysis with missing data, exact E-step (Rubin & Thayer 1982, "EM algorithms for
ML factor analysis", Psychometrika 47(1); the missing-data E-step of Ghahramani & Jordan 1994,
"Supervised learning from incomplete data via an EM approach", and Ghahramani & Hinton 1996,
Tech. Rep. CRG-TR-96-1, eqs 5-9 with the mean folded into the loading matrix).

One ``step`` is one EM iteration on the minibatch it gets, x (R, B, D) with NaN at the missing
entries; the claims give it the whole training set (batch_size = N), so one step is one iteration of
batch EM, the reference maximum-likelihood fit of the observed data. With z~ = [z; 1] and
W~ = [W, mu] (D x (q + 1)), the E-step is the exact posterior p(z | x_o) = N(m_n, S_n)
(bench/models/factor_analysis.py) and E[x_m | z] = mu_m + W_m z, so with x^_n = E[x_n | x_o]
and o_n the observed indicator:

    E[z~ z~^T] = [[S_n + m_n m_n^T, m_n], [m_n^T, 1]],
    E[x z~^T]  = [x^_n m_n^T + diag(1 - o_n) W S_n,  x^_n],
    E[x_j^2]   = x^_nj^2 + (1 - o_nj) (W_j S_n W_j^T + Psi_j),

and the M-step maximises the expected complete-data log-likelihood:

    W~ <- A B^-1,   Psi_j <- (sum_n E[x_nj^2] - W~_j A_j^T) / B_n,
    A = sum_n E[x_n z~_n^T],   B = sum_n E[z~_n z~_n^T].

Each iteration increases the observed-data log-likelihood sum_n log p(x_o) unless at a fixed point
(Dempster, Laird & Rubin 1977). The step returns 'batch_ll', that log-likelihood per example at the
parameters it started from, in nats. All in float64, no gradients; EM has no step size
(``tunable=()``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.factor_analysis import FactorAnalysis
from bench.workloads.method import Method, register


@register("fa_em_missing", family="factor_analysis", defaults={}, tunable=())
class FactorAnalysisEM(Method):
    model: FactorAnalysis

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        x = x.to(torch.float64)
        post = model.posterior(x)
        missing = ~torch.isfinite(x)  # (R, B, D)
        w, psi = model.weight, model.noise_variance  # (R, D, q), (R, D)
        b, q = x.shape[1], w.shape[-1]
        x_hat = model.conditional_mean(x)
        ones = torch.ones_like(x_hat[..., :1])
        z_tilde = torch.cat([post.mean, ones], -1)  # E[z~] (R, B, q + 1)
        second = post.covariance + post.mean.unsqueeze(-1) * post.mean.unsqueeze(-2)  # E[z z^T] (R, B, q, q)
        big_b = z_tilde.transpose(1, 2) @ z_tilde  # sum_n E[z~] E[z~]^T
        big_b[:, :q, :q] = second.sum(1)
        ws = w.unsqueeze(1) @ post.covariance  # W S_n (R, B, D, q)
        big_a = x_hat.transpose(1, 2) @ z_tilde  # sum_n x^_n E[z~]^T (R, D, q + 1)
        big_a[..., :q] += (missing.unsqueeze(-1) * ws).sum(1)
        var_missing = (ws * w.unsqueeze(1)).sum(-1) + psi.unsqueeze(1)  # W_j S_n W_j^T + Psi_j (R, B, D)
        x_sq = (x_hat.square() + missing * var_missing).sum(1)  # sum_n E[x_nj^2] (R, D)
        new = torch.linalg.solve(big_b, big_a.transpose(1, 2)).transpose(1, 2)  # W~ = A B^-1 (B symmetric)
        new_psi = (x_sq - (new * big_a).sum(-1)) / b
        model.weight.copy_(new[..., :q])
        model.mean.copy_(new[..., q])
        model.log_noise.copy_(new_psi.clamp_min(1e-12).log())
        return {"batch_ll": post.log_prob.mean(1)}
