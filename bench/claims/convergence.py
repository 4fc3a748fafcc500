"""Convergence of a run's learning curve (DESIGN.md, "Health and convergence").

Per seed, on the claim's metric: the gain over the last TAIL of training (by updates) relative to
the total gain from the first evaluation,

    rate = |v(end) - v(end - TAIL)| / |v(end) - v(start)|,

v read off the learning curve (linear interpolation between evaluation points). A seed has
converged when rate <= THRESHOLD: less than 5% of what it gained came in the last 20% of its
updates. With fewer than MIN_POINTS evaluations, or no gain at all, it has not (the curve cannot
show convergence). "Better" and "faster to target" verdicts against a method with an unconverged
seed are **inconclusive: not converged**, never reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TAIL = 0.2  # the last 20% of training, by updates
THRESHOLD = 0.05  # at most 5% of the total gain in that tail
MIN_POINTS = 3


@dataclass(frozen=True)
class Convergence:
    seed: int
    converged: bool
    rate: float  # tail gain / total gain (NaN when it cannot be computed)
    detail: str


def seed_convergence(steps: np.ndarray, values: np.ndarray, seed: int) -> Convergence:
    """Convergence of one seed's curve: steps (n,) increasing, values (n,) finite."""
    if len(steps) < MIN_POINTS:
        return Convergence(seed, False, float("nan"), f"only {len(steps)} evaluations")
    end = steps[-1]
    tail_start = end - TAIL * (end - steps[0])
    v_tail = float(np.interp(tail_start, steps, values))
    total = abs(values[-1] - values[0])
    if total == 0 or not np.isfinite(total):
        return Convergence(seed, False, float("nan"), "no gain over training")
    rate = abs(values[-1] - v_tail) / total
    ok = rate <= THRESHOLD
    return Convergence(seed, ok, float(rate), f"last {TAIL:.0%} of updates brought {rate:.0%} of the total gain")


def run_convergence(curve: pd.DataFrame) -> list[Convergence]:
    """Per seed of one label's learning-curve rows (step, seed, value) of the claim's metric."""
    out = []
    for seed, g in curve.groupby("seed"):
        g = g.sort_values("step")
        g = g[np.isfinite(g.value)]
        out.append(seed_convergence(g.step.to_numpy(float), g.value.to_numpy(float), int(seed)))
    return out
