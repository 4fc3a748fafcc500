"""The E-step of a finite mixture (Dempster, Laird & Rubin 1977; Bishop, PRML 2006, eqs 9.23 and
9.56), shared by the mixture families' EM methods (methods/em.py, methods/gmm_em.py).

From the log-joint log pi_k + log p(x_n | k) of every example and component, the log marginal
log p(x_n) = logsumexp_k (log pi_k + log p(x_n | k)) and the responsibilities (the posterior of the
component) gamma_nk = p(k | x_n) = exp(log pi_k + log p(x_n | k) - log p(x_n)).
"""

from __future__ import annotations

import torch
from torch import Tensor


def responsibilities(log_joint: Tensor) -> tuple[Tensor, Tensor]:
    """log p(x_n) (R, N) and gamma_nk (R, N, K) from the log-joint (R, N, K), in its dtype (nats).
    A row whose log-joint is -inf for every component gives log p(x_n) = -inf and NaN responsibilities."""
    log_px = torch.logsumexp(log_joint, dim=-1)
    return log_px, torch.exp(log_joint - log_px.unsqueeze(-1))
