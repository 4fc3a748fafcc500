"""Importance-sampled log-likelihood vs exact enumeration on a tiny SBN (DESIGN.md, rule 4)."""

from __future__ import annotations

import itertools

import torch

from bench.estimators.importance import importance_log_likelihood
from bench.estimators.sbn import exact_log_likelihood


def _all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def test_exact_likelihood_normalises(tiny_hm):
    """Independent check of the enumeration: p(x) sums to one over all 2^5 images."""
    xs = _all_binary(5).unsqueeze(0)
    total = torch.logsumexp(exact_log_likelihood(tiny_hm, xs), dim=-1)
    assert abs(total.item()) < 1e-10


def test_is_estimate_converges_to_exact(tiny_hm):
    x = _all_binary(5)[[3, 17, 30]].unsqueeze(0)
    exact = exact_log_likelihood(tiny_hm, x)[0]
    torch.manual_seed(1)
    reps = torch.stack([importance_log_likelihood(tiny_hm.log_weights, x, k=2000)[0] for _ in range(20)])
    mean, se = reps.mean(0), reps.std(0) / 20**0.5
    assert torch.all((mean - exact).abs() < 4 * se + 1e-3), (mean, exact, se)


def test_k1_estimate_is_below_exact(tiny_hm):
    """E[log w] = log p(x) - KL(q || p(h|x)) < log p(x): the K=1 bound is strictly loose here."""
    x = _all_binary(5)[[3, 17, 30]].unsqueeze(0)
    exact = exact_log_likelihood(tiny_hm, x)[0]
    torch.manual_seed(2)
    reps = torch.stack([importance_log_likelihood(tiny_hm.log_weights, x, k=1)[0] for _ in range(4000)])
    mean, se = reps.mean(0), reps.std(0) / 4000**0.5
    assert torch.all(mean + 4 * se < exact), (mean, exact)


def test_chunked_accumulation_equals_one_logsumexp():
    """Splitting K and the batch into chunks must not change the estimate (float64 accumulation)."""
    torch.manual_seed(3)
    table = 50 * torch.randn(2, 37, 11, dtype=torch.float64)  # fixed log-weights (R, K, B)
    cursor = {"k": 0}

    def fixed_weights(x, k):
        b0 = cursor.get("b0", 0)
        out = table[:, cursor["k"]:cursor["k"] + k, b0:b0 + x.shape[1]]
        cursor["k"] = (cursor["k"] + k) % 37
        if cursor["k"] == 0:
            cursor["b0"] = (b0 + x.shape[1]) % 11
        return out

    x = torch.zeros(2, 11, 1)
    chunked = importance_log_likelihood(fixed_weights, x, k=37, max_rows=20)  # 1 example x chunks of 20 + 17 samples
    direct = torch.logsumexp(table, dim=1) - torch.log(torch.tensor(37.0, dtype=torch.float64))
    torch.testing.assert_close(chunked, direct)
