"""EM's monotone objective (Dempster, Laird & Rubin 1977, Theorem 1; Bishop, PRML 2006, Sec. 9.4):
the one way the harness measures and checks it, for every EM method (methods/em.py, gmm_em.py,
baum_welch.py, ppca_em.py) and the health checks of their workloads.

An EM iteration never decreases its objective L (the log-likelihood, or with a prior the MAP
objective). The fall from iteration t-1 to t is measured relative to its magnitude,

    d_t = max(0, (L_t-1 - L_t) / |L_t-1|)                              (`relative_decrease`),

and d_t > MONOTONE_TOLERANCE counts as a decrease. Consecutive iterations see the same data only in
full-batch runs (one step per epoch: every training row has step == epoch; `is_full_batch`).

* `LargestDecrease`: the metric 'll_decrease' that claims on monotonicity are judged on
  (bench/claims/gmm.yaml, hmm.yaml), max_t d_t so far, computed by the method at every iteration
  from L_t, the mean log-likelihood at the parameters iteration t starts from (its E-step computes
  it), so after T steps it covers the T - 1 changes L_0 -> L_1 ... L_T-2 -> L_T-1.
* `not_full_batch`: the health check of such a metric: a minibatch run's 'll_decrease' does not
  test monotonicity and is flagged 'saturated' (a verdict on it reads "not testable at this budget").
* `decreasing_objective`: the health check of a method that reports its objective L_t itself
  ('map_objective' of methods/em.py, 'batch_ll' of methods/ppca_em.py), on which no claim is judged:
  a full-batch seed whose recorded curve has some d_t > MONOTONE_TOLERANCE is 'degenerate' (EM is
  broken); minibatch runs are not checked.
* `em_checks`: the health checks of an EM workload: its log-likelihood 'll' blowing up or never
  moving, and one of the two monotonicity checks above.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from bench.workloads.health import Check, Finding, blow_up, flat_curve

MONOTONE_TOLERANCE = 1e-9  # relative decrease of EM's objective between iterations that counts as a decrease


def relative_decrease(previous: Tensor, current: Tensor) -> Tensor:
    """d = max(0, (previous - current) / |previous|), elementwise (dimensionless); a NaN propagates,
    and previous = current = 0 gives NaN."""
    return ((previous - current) / previous.abs()).clamp_min(0.0)


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
            worst = worst.maximum(relative_decrease(self.previous, ll))
        self.previous, self.worst = ll, worst
        return worst


def _train_rows(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return rows[(rows.split == "train") & (rows.metric == metric)]


def is_full_batch(rows: pd.DataFrame) -> bool:
    """Whether every training row (of one seed) comes from a step that is its epoch: one step per
    epoch, so consecutive iterations see the same data."""
    return bool((rows.step == rows.epoch).all())


def not_full_batch(metric: str = "ll_decrease") -> Check:
    """Flags each seed of a run whose training rows of `metric` come from minibatches (a step that
    is not its epoch: more than one step per epoch), on which consecutive EM iterations see
    different data."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        return [Finding("minibatch iterations", "saturated", metric, int(seed),
                        f"{int(g.step.max())} steps in {int(g.epoch.max())} epochs: consecutive iterations see "
                        f"different minibatches, so {metric} does not test EM's monotonicity (full batch does)")
                for seed, g in _train_rows(rows, metric).groupby("seed") if not is_full_batch(g)]

    return check


def decreasing_objective(metric: str = "map_objective") -> Check:
    """Degenerate when, in a full-batch run, a seed's training objective `metric` (one row per
    iteration) decreases between two consecutive iterations by more than MONOTONE_TOLERANCE of its
    magnitude; the finding names the largest relative decrease. Minibatch runs are not checked."""

    def check(rows: pd.DataFrame) -> list[Finding]:
        sel = _train_rows(rows, metric)
        if sel.empty or not is_full_batch(sel):
            return []
        out = []
        for seed, g in sel.groupby("seed"):
            v = torch.tensor(g.sort_values("step").value.to_numpy(float), dtype=torch.float64)
            if len(v) < 2:
                continue
            drops = relative_decrease(v[:-1], v[1:]).nan_to_num(nan=0.0)  # 0 -> 0 is no decrease
            worst = int(drops.argmax())
            if drops[worst] > MONOTONE_TOLERANCE:
                out.append(Finding("objective decreased", "degenerate", metric, int(seed),
                                   f"train {metric} fell from {float(v[worst]):.10g} to {float(v[worst + 1]):.10g} at iteration "
                                   f"{worst + 1}; EM never decreases it"))
        return out

    return check


def em_checks(split: str = "test", objective: str | None = None) -> list[Check]:
    """The health checks of an EM workload: 'll' on `split` blowing up or never moving, and its
    monotonicity: `decreasing_objective(objective)` when the method reports its objective per
    iteration under that name, else `not_full_batch()` of its 'll_decrease'."""
    monotone = not_full_batch() if objective is None else decreasing_objective(objective)
    return [blow_up("ll", higher_is_better=True, split=split), flat_curve("ll", split), monotone]
