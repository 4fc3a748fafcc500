"""EM's monotone log-likelihood (Dempster, Laird & Rubin 1977, Theorem 1; Bishop, PRML 2006, Sec.
9.4) as a training metric and its health check, for any EM method run on the whole training set.

* `LargestDecrease`: the metric 'll_decrease', the largest relative decrease of the training
  log-likelihood between consecutive iterations so far, max_t max(0, (L_t-1 - L_t) / |L_t-1|): 0
  while EM is monotone. L_t is the mean log-likelihood at the parameters iteration t starts from
  (its E-step computes it), so after T steps it covers the T - 1 changes L_0 -> L_1 ... L_T-2 -> L_T-1.
* `not_full_batch`: consecutive iterations compare the same data only in full-batch runs (one step
  per epoch); a minibatch run's 'll_decrease' does not test monotonicity, and is flagged
  'saturated' (a verdict on it reads "not testable at this budget").
"""

from __future__ import annotations

import pandas as pd
from torch import Tensor

from bench.workloads.health import Check, Finding


class LargestDecrease:
    """Running max over iterations of the relative decrease of a per-replica log-likelihood (R,)."""

    def __init__(self) -> None:
        self.previous: Tensor | None = None  # (R,) the last iteration's log-likelihood
        self.worst: Tensor | None = None  # (R,) the largest relative decrease so far

    def update(self, ll: Tensor) -> Tensor:
        """Record this iteration's log-likelihood `ll` (R,); return the largest relative decrease so
        far (R,), 0 at the first iteration. A NaN (a diverged replica) propagates."""
        worst = ll.new_zeros(ll.shape) if self.worst is None else self.worst
        if self.previous is not None:
            worst = worst.maximum(((self.previous - ll) / self.previous.abs()).clamp_min(0.0))
        self.previous, self.worst = ll, worst
        return worst


def not_full_batch(metric: str = "ll_decrease") -> Check:
    """Flags each seed of a run whose training rows of `metric` come from minibatches (a step that
    is not its epoch: more than one step per epoch), on which consecutive EM iterations see
    different data."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        sel = rows[(rows.split == "train") & (rows.metric == metric)]
        return [Finding("minibatch iterations", "saturated", metric, int(seed),
                        f"{int(g.step.max())} steps in {int(g.epoch.max())} epochs: consecutive iterations see "
                        f"different minibatches, so {metric} does not test EM's monotonicity (full batch does)")
                for seed, g in sel.groupby("seed") if (g.step != g.epoch).any()]

    return check
