"""Health checks of a run's recorded curves, declared per model family by its workload: a check
that fails can veto a verdict (DESIGN.md, "Health and convergence").

A check reads one run's tidy rows (bench.engine.results CURVE columns, every seed) and returns
``Finding``s, one per seed and failure:

* ``degenerate``: the run is broken as a comparison partner (dead latent units, a blow-up, a flat
  curve): a claim reading it says **degenerate**, naming method, seed and check;
* ``saturated``: the metric sits at a bound (a loss within 0.1% of 0, every latent unit active), so the claim
  cannot tell methods apart at this budget: **not testable at this budget**.

Thresholds are module constants, printed in the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

BLOW_UP_FACTOR = 10.0  # a training objective beyond 10x its starting magnitude has blown up
FLAT_TOLERANCE = 1e-9  # relative range under which a curve counts as flat
ZERO_FRACTION = 1e-3  # a loss ending below this fraction of its start is pinned at its bound 0


@dataclass(frozen=True)
class Finding:
    check: str  # the check's name in words, e.g. "dead latent units"
    kind: str  # "degenerate" or "saturated"
    metric: str  # the metric it read (a saturation vetoes only claims judged on that metric)
    seed: int
    detail: str  # what was seen, in words a reader understands without the code

    def words(self, label: str) -> str:
        return f"{label}, seed {self.seed}: {self.check} ({self.detail})"


Check = Callable[[pd.DataFrame], list[Finding]]


def _series(rows: pd.DataFrame, split: str, metric: str) -> dict[int, pd.Series]:
    """seed -> the metric's values in step order at its smallest K (the learning curve)."""
    sel = rows[(rows.split == split) & (rows.metric == metric)]
    if sel.empty:
        return {}
    sel = sel[sel.eval_k == sel.eval_k.min()]
    return {int(seed): g.sort_values("step").value.reset_index(drop=True) for seed, g in sel.groupby("seed")}


def dead_latents(split: str = "test", metric: str = "active_units") -> Check:
    """Degenerate when a seed ends with no active latent unit: its model ignores its latent code."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        return [Finding("dead latent units", "degenerate", metric, seed, f"0 active units at the last evaluation on {split}")
                for seed, s in _series(rows, split, metric).items() if len(s) and s.iloc[-1] == 0]

    return check


def all_units_active(total: int, split: str = "test", metric: str = "active_units") -> Check:
    """Saturated when a seed ends with every one of `total` latent units active: a count pinned at its bound."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        return [Finding("every latent unit active", "saturated", metric, seed, f"{int(s.iloc[-1])} of {total} units active")
                for seed, s in _series(rows, split, metric).items() if len(s) and s.iloc[-1] >= total]

    return check


def blow_up(metric: str, higher_is_better: bool, split: str = "train") -> Check:
    """Degenerate when a seed's training curve gets worse than its start by more than
    BLOW_UP_FACTOR times the start's magnitude (e.g. a loss of 1.5e4 from 2, a log-likelihood of
    -1.7e7 from -100)."""
    sign = 1.0 if higher_is_better else -1.0

    def check(rows: pd.DataFrame) -> list[Finding]:
        out = []
        for seed, s in _series(rows, split, metric).items():
            if len(s) < 2:
                continue
            start = float(s.iloc[0])
            worst = float(s.min() if higher_is_better else s.max())
            if sign * (start - worst) > (BLOW_UP_FACTOR - 1) * max(abs(start), 1e-12):
                out.append(Finding("blow-up", "degenerate", metric, seed,
                                   f"{split} {metric} went from {start:.4g} to {worst:.4g}, beyond {BLOW_UP_FACTOR:g}x its start"))
        return out

    return check


def pinned_at_zero(metric: str, split: str = "train") -> Check:
    """Saturated when a seed's (non-negative) loss ends at or below ZERO_FRACTION of its first
    value: the training set is memorised (or float32 has run out of digits), so what is left of the
    loss no longer tells optimizers apart."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        return [Finding("loss pinned near 0", "saturated", metric, seed,
                        f"{split} {metric} ends at {s.iloc[-1]:.3g}, under {ZERO_FRACTION:g} of its start {s.iloc[0]:.3g}")
                for seed, s in _series(rows, split, metric).items()
                if len(s) and s.iloc[-1] <= ZERO_FRACTION * abs(s.iloc[0])]

    return check


def flat_curve(metric: str, split: str) -> Check:
    """Degenerate when a seed's evaluation curve never moves from its first value (nothing learned)."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        out = []
        for seed, s in _series(rows, split, metric).items():
            v = s.to_numpy(dtype=float)
            if len(v) >= 3 and np.ptp(v) <= FLAT_TOLERANCE * max(np.abs(v).max(), 1.0):
                out.append(Finding("flat curve", "degenerate", metric, seed, f"{split} {metric} stays at {v[0]:.4g}"))
        return out

    return check


def exceeds(metric: str, limit: float, name: str, split: str = "test") -> Check:
    """Degenerate when a seed's last value of `metric` reaches `limit` (a reference the run is
    measured against failed its own convergence check, e.g. an R-hat of 1.05 or more)."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        return [Finding(name, "degenerate", metric, seed, f"{split} {metric} is {s.iloc[-1]:.4g}, at or above {limit:g}")
                for seed, s in _series(rows, split, metric).items() if len(s) and s.iloc[-1] >= limit]

    return check


def run_checks(checks: list[Check], rows: pd.DataFrame) -> list[Finding]:
    return [finding for check in checks for finding in check(rows)]
