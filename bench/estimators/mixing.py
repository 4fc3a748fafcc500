"""Mixing diagnostics of a Markov chain: the integrated autocorrelation time of scalar summaries.

For a stationary chain f_1..f_S of a scalar summary with autocorrelations rho_t, the integrated
autocorrelation time is IAC = 1 + 2 sum_{t>=1} rho_t and the effective sample size ESS = S / IAC
(Geyer 1992, "Practical Markov chain Monte Carlo", Statist. Sci. 7(4)). The ESS is ArviZ's
(arviz-stats' `ess`, method "bulk": the draws rank-normalised, split in two halves, then Geyer's
initial monotone sequence estimator of the autocorrelation sum, as in Stan; Vehtari, Gelman,
Simpson, Carpenter & Buerkner 2021, "Rank-normalization, folding, and localization", Bayesian
Analysis 16(2), section 3), one chain per row: invariant under a monotone map of the summary (a
probability or its log give the same IAC) and robust to heavy tails. An AR(1) chain f_t = rho f_{t-1} + e_t has IAC = (1 + rho) / (1 - rho)
(tests/test_sgmcmc.py).
"""

from __future__ import annotations

import numpy as np
from arviz_stats.base import array_stats


def integrated_autocorrelation_time(traces: np.ndarray) -> np.ndarray:
    """IAC = S / ESS of each chain: traces (..., S), S draws per chain, -> (...) in units of draws
    (>= 0; below 1 for an antithetic chain). NaN for a chain whose draws are all equal (no variance,
    no autocorrelation). Raises ValueError when S < 4 (ArviZ's minimum for an ESS)."""
    traces = np.asarray(traces, dtype=np.float64)
    draws = traces.shape[-1]
    if draws < 4:
        raise ValueError(f"an integrated autocorrelation time needs at least 4 draws; got {draws}")
    ess = array_stats.ess(traces[..., None, :], chain_axis=-2, draw_axis=-1, method="bulk")
    return draws / np.asarray(ess, dtype=np.float64)
