"""Importance-sampled log-likelihood with any proposal (the recognition model, a mean-field
posterior, a mixture): the estimator every latent-variable workload's 'll' metric uses.

The IS estimate log p^(x) = logsumexp_k(log w_k) - log K, w_k = p(x, h_k) / q(h_k | x), h_k ~ q,
is a stochastic lower bound of log p(x) in expectation that tightens as K grows (Burda et al. 2016).
Log-weights are accumulated in float64 over chunks of samples, so K = 5000 fits in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

LogWeightFn = Callable[[Tensor, int], Tensor]  # (x (R,B,D), k) -> log-weights (R, k, B)


@torch.no_grad()
def importance_log_likelihood(
    log_weights: LogWeightFn, x: Tensor, k: int, max_rows: int = 50_000, scale: float = 1.0
) -> Tensor:
    """Per-example log p^(x) for every replica: (R, B) float64.

    `log_weights(x, kc)` draws kc proposal samples per example. Work is split over examples and
    samples so that at most `max_rows` (example, sample) rows are alive at once. `scale` multiplies
    the log-weights before the log-mean-exp (BiHM's estimator uses 1/2) and divides the result back.
    """
    out = []
    for xb in x.split(max(1, max_rows // k), dim=1):
        chunk = max(1, max_rows // xb.shape[1])
        acc = None
        for start in range(0, k, chunk):
            lw = scale * log_weights(xb, min(chunk, k - start)).double()
            part = torch.logsumexp(lw, dim=1)
            acc = part if acc is None else torch.logaddexp(acc, part)
        out.append((acc - torch.log(torch.tensor(float(k), dtype=torch.float64))) / scale)
    return torch.cat(out, dim=1)
