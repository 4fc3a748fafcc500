"""Log-likelihood estimators: importance sampling with the recognition model as proposal, and
exact enumeration for tiny sigmoid belief networks (the reference the IS estimator is tested against).

The IS estimate log p^(x) = logsumexp_k(log w_k) - log K, w_k = p(x, h_k) / q(h_k | x), h_k ~ q,
is a stochastic lower bound of log p(x) in expectation that tightens as K grows (Burda et al. 2016).
Log-weights are accumulated in float64 over chunks of samples, so K = 5000 fits in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor

from bench.models.helmholtz import HelmholtzMachine

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


def _all_states(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype, device=device)


@torch.no_grad()
def exact_log_likelihood(model: HelmholtzMachine, x: Tensor, chunk: int = 4096) -> Tensor:
    """Exact log p(x) = logsumexp over all hidden configurations of log p(x, h): (R, B) float64.

    Cost is 2^(h1+...+hL) joint states, so this is for tiny networks only (tests, toy claims).
    log p(x, h) = c(h) + log p(x | h1), where c(h) does not depend on x; the data term is one matmul.
    """
    sizes = model.layers[1:]
    n_hidden = sum(sizes)
    if n_hidden > 24:
        raise ValueError(f"exact enumeration over {n_hidden} hidden units is too large (max 24)")
    r = model.replicas
    states = _all_states(n_hidden, x.dtype, x.device)
    acc = None
    for block in states.split(chunk):
        hs = list(block.unsqueeze(0).expand(r, -1, -1).split(sizes, dim=-1))
        c = model.prior.log_prob(hs[-1])
        for i in range(1, len(model.generative)):
            c = c + model.generative[i].log_prob(hs[i - 1], hs[i])
        logits = model.generative[0].logits(hs[0])  # (R, S, D)
        # sum_d x_d * l_d - softplus(l_d), for every (example, state) pair
        data_term = x @ logits.transpose(1, 2) - torch.nn.functional.softplus(logits).sum(-1).unsqueeze(1)
        joint = (data_term + c.unsqueeze(1)).double()  # (R, B, S)
        part = torch.logsumexp(joint, dim=-1)
        acc = part if acc is None else torch.logaddexp(acc, part)
    return acc
