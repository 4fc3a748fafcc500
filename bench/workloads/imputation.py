"""Imputation error on data with values hidden by a fixed missing-completely-at-random mask, the
protocol of Simkus, Rhodes & Gutmann 2023 (JMLR 24; their test seed): observed entries of the
evaluated examples are hidden by ``bench.core.missing.mcar`` at IMPUTATION_RATE, an imputer fills
them in, and the error is measured on the hidden entries only."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bench.core.missing import mcar

IMPUTATION_RATE = 0.5
IMPUTATION_SEED = 20200428  # the test seed of Simkus, Rhodes & Gutmann 2023 (their experiment configs)


def imputation_rmse(impute: Callable[[Tensor], Tensor], x: Tensor, rate: float = IMPUTATION_RATE,
                    seed: int = IMPUTATION_SEED) -> Tensor:
    """RMSE of `impute` (x with NaN at the hidden entries (R, N, D) -> (R, N, D) with them filled)
    on the entries of x (R, N, D) that a fixed MCAR mask of `rate` hides (only entries observed in x
    count), in the data's units: (R,) float64, NaN when none is hidden."""
    x = x.to(torch.float64)
    hidden = torch.as_tensor(mcar(tuple(x.shape[1:]), rate, seed), device=x.device) & torch.isfinite(x)
    imputed = impute(torch.where(hidden, torch.nan, x))
    squared = torch.where(hidden, imputed - x, 0.0).square().sum((1, 2))
    return (squared / hidden.sum((1, 2))).sqrt()
