"""Aggregation over seeds, t-intervals, and verdicts (DESIGN.md, rule 5).

Verdicts are computed from the runs, never typed: one of ``reproduced``, ``not reproduced``,
``inconclusive`` (the seeds do not decide), ``not run`` and ``data unavailable``.

Rules (all on the claim's metric, higher is better unless the claim says otherwise):

Intervals are 95% t-intervals, honest at a handful of seeds where a percentile bootstrap is not
(with 3 seeds per method a bootstrap interval covers about 78%): Student's t for one method's mean,
Welch's for a difference of two means, Fieller's (with Welch's degrees of freedom) for a ratio of
two means; tests/test_stats.py checks their coverage by simulation. An interval of zero width
(every seed gave the same number, e.g. one clock shared by all seeds) decides nothing: the pair reads
inconclusive and the report says why.

* ``better`` -- for each pair (a, b): reproduced when mean(a) - mean(b) > margin and the 95%
  CI of the difference excludes 0; not reproduced when the CI lies below the margin.
* ``ordering`` -- ``better`` on each adjacent pair of the listed order.
* ``not_worse`` -- for each pair (a, b), "a is at least as good as b" (non-inferiority): reproduced
  when the 95% CI of a - b (in the better direction) lies above -margin; not reproduced when it
  lies below -margin; inconclusive otherwise.
* ``equivalent`` -- for each pair (a, b), "a is comparable to b": reproduced when the 95% CI of
  mean(a) - mean(b) lies inside (-margin, +margin) (two one-sided tests, Schuirmann 1987, at the
  2.5% level each: stricter than the usual 90% interval); not reproduced when the CI lies wholly
  outside it; inconclusive otherwise. A decided pair needs both labels converged.
* ``faster_to_target`` -- for each pair (a, b): target = b's best curve value (mean over seeds)
  minus a tolerance; per seed, the first x (epochs, updates or train seconds) at which each
  method's curve reaches it (interpolated linearly between evaluation points, so the answer is
  not the evaluation grid); reproduced when a reaches it in every seed and the CI of
  mean(x_a)/mean(x_b) lies below 1 (below ``ratio_below``, when the claim is "within r times b's
  x"); not reproduced when a misses it in most seeds or the CI lies at or above that bound.
* ``within_paper`` -- |ours - paper| <= tolerance against a number read in a primary source,
  at the paper profile only (a quick profile never claims a paper's number).
A threshold or within-paper verdict on a method whose curve does not show convergence reads
inconclusive too (a number of a half-trained model says nothing about the trained one).
A verdict on final values must be stable in the evaluation K: the rule is recomputed on the final
metric at K / 10 (the engine evaluates both), and the verdict reads inconclusive when the decision
changes or an estimate moves by more than the claim's margin.

* ``threshold`` -- one method's metric lies beyond a value the claim states (not a paper's
  number; e.g. "the amortization gap is more than half the inference gap"): reproduced when the
  mean is beyond it and the 95% t-interval excludes it; not reproduced when the CI lies on the
  other side; direction from the metric's higher_is_better.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

LEVEL = 0.95
MIN_SEEDS = 2
DECIDED = ("reproduced", "not reproduced")


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, lower, upper): Student's 95% t-interval over the seeds; NaN bounds for < 2 values."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy.stats.t.ppf((1 + LEVEL) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(variance of mean(a), variance of mean(b), Welch-Satterthwaite degrees of freedom)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    denom = (va**2 / (len(a) - 1) if va else 0.0) + (vb**2 / (len(b) - 1) if vb else 0.0)
    df = (va + vb) ** 2 / denom if denom > 0 else float(len(a) + len(b) - 2)
    return va, vb, df


def difference_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) - mean(b) with Welch's 95% t-interval (seeds of the two methods independent)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb, df = _welch(a, b)
    d = float(a.mean() - b.mean())
    half = float(scipy.stats.t.ppf((1 + LEVEL) / 2, df) * np.sqrt(va + vb))
    return d, d - half, d + half


def ratio_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) / mean(b) with Fieller's 95% interval (Welch's degrees of freedom); unbounded (inf)
    when mean(b) is not distinguishable from 0."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb, df = _welch(a, b)
    ma, mb = a.mean(), b.mean()
    q = scipy.stats.t.ppf((1 + LEVEL) / 2, df) ** 2
    ratio = float(ma / mb)
    # (ma - r mb)^2 = q (va + r^2 vb)  <=>  r^2 (mb^2 - q vb) - 2 r ma mb + (ma^2 - q va) = 0
    A, B, C = mb**2 - q * vb, -2 * ma * mb, ma**2 - q * va
    disc = B**2 - 4 * A * C
    if A <= 0 or disc < 0:
        return ratio, -math.inf, math.inf
    root = math.sqrt(disc)
    return ratio, float((-B - root) / (2 * A)), float((-B + root) / (2 * A))


def _zero_width(lo: float, hi: float) -> bool:
    return bool(np.isfinite(lo) and np.isfinite(hi) and hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)))


# --------------------------------------------------------------------------- per-method summaries
def final_values(curves: pd.DataFrame, metric: dict[str, Any]) -> pd.DataFrame:
    """label, seed, value: the metric at each seed's last evaluation with the largest K, one row per
    seed. Where the final evaluation repeats the learning curve's last one (same step, split and K,
    as for classifiers evaluated at K = 1), the seed's estimates are averaged: they are one seed,
    and counting them twice would narrow every interval."""
    rows = curves[(curves.split == metric["split"]) & (curves.metric == metric["name"])]
    rows = rows[rows.eval_k == rows.groupby(["label", "seed"]).eval_k.transform("max")]
    last = rows[rows.step == rows.groupby(["label", "seed"]).step.transform("max")]
    return last.groupby(["label", "seed", "eval_k"], as_index=False, sort=False).value.mean()[
        ["label", "seed", "value", "eval_k"]]


def curve_rows(curves: pd.DataFrame, split: str, name: str) -> pd.DataFrame:
    """The learning curve of one metric: rows at the curve K (the smallest K evaluated at the
    label's first evaluation: step 0, or the end for an analysis of the trained model only)."""
    rows = curves[(curves.split == split) & (curves.metric == name)]
    curve_k = rows[rows.step == rows.groupby("label").step.transform("min")].groupby("label").eval_k.min()
    return rows[rows.eval_k == rows.label.map(curve_k)]


def method_table(curves: pd.DataFrame, metric: dict[str, Any], metas: dict[str, dict]) -> pd.DataFrame:
    """One row per method label: final metric mean/CI, best curve value, epochs, train seconds..."""
    finals = final_values(curves, metric)
    curve = curve_rows(curves, metric["split"], metric["name"])
    best = curve.groupby(["label", "seed"]).value.agg("max" if metric["higher_is_better"] else "min")
    # a claim about the training loss also shows the same metric held out (test, else valid)
    heldout_split = next((s for s in ("test", "valid") if metric["split"] == "train" and
                          ((curves.split == s) & (curves.metric == metric["name"])).any()), None)
    heldout = final_values(curves, {**metric, "split": heldout_split}) if heldout_split else None
    sems = final_values(curves, {**metric, "name": f"{metric['name']}_sem"})  # per seed, over examples
    out = []
    for label, meta in metas.items():
        vals = finals[finals.label == label]
        mean, lo, hi = mean_ci(vals.value.to_numpy())
        seconds = curves[curves.label == label].groupby("seed").train_seconds.max()
        epochs = curves[curves.label == label].groupby("seed").epoch.max()
        s_mean, s_lo, s_hi = mean_ci(seconds.to_numpy())
        diverged = sum(1 for s in meta["seeds"].values() if s["status"] == "diverged")
        out.append({
            "method": label,
            "final": mean, "final_lo": lo, "final_hi": hi,
            "final_sem": float(sems[sems.label == label].value.mean()) if (sems.label == label).any() else np.nan,
            "best": float(best.loc[label].mean()) if label in best.index.get_level_values(0) else np.nan,
            "eval_k": int(vals.eval_k.max()) if len(vals) else 0,
            "epochs": float(epochs.mean()) if len(epochs) else 0.0,
            "train_seconds": s_mean, "train_seconds_lo": s_lo, "train_seconds_hi": s_hi,
            "seconds_per_epoch": s_mean / max(float(epochs.mean()), 1.0) if len(epochs) else np.nan,
            "seeds": len(meta["seeds"]), "replicas_in_lockstep": len(meta["seeds"]),
            "diverged": diverged, "device": meta["device"], "run_id": meta["run_id"],
        })
        if heldout is not None:
            h_mean, h_lo, h_hi = mean_ci(heldout[heldout.label == label].value.to_numpy())
            out[-1].update({"heldout": h_mean, "heldout_lo": h_lo, "heldout_hi": h_hi, "heldout_split": heldout_split})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- verdicts
def _combine(decisions: list[str]) -> str:
    if all(d == "reproduced" for d in decisions):
        return "reproduced"
    if any(d == "not reproduced" for d in decisions):
        return "not reproduced"
    return "inconclusive"


def estimate_words(x: float, lo: float, hi: float, sign: str = "") -> str:
    """'x [lo, hi]' with as many decimals as the interval needs to show its width (at least two,
    and two significant digits of the width): a real interval never prints as zero-width. `sign`
    is '+' to print the sign of a difference."""
    if not all(np.isfinite(v) for v in (x, lo, hi)):
        return f"{x:{sign}.2f} [{lo:{sign}.2f}, {hi:{sign}.2f}]" if np.isfinite(x) else "n/a"
    width = hi - lo
    decimals = 2 if width <= 0 else min(12, max(2, 1 - math.floor(math.log10(width))))
    return f"{x:{sign}.{decimals}f} [{lo:{sign}.{decimals}f}, {hi:{sign}.{decimals}f}]"


def _unconverged_veto(decision: str, a: str, b: str, unconverged: frozenset[str]) -> str | None:
    """Why a pair's decision cannot stand on unconverged runs: a win over a baseline that was
    still improving, or a loss of a method that was still improving (DESIGN.md, "Health and
    convergence"); None when it can."""
    if decision == "reproduced" and b in unconverged:
        return f"not converged: {b} was still improving"
    if decision == "not reproduced" and a in unconverged:
        return f"not converged: {a} was still improving"
    return None


def _better(finals: pd.DataFrame, pairs: list[list[str]], margin: float, sign: float,
            unconverged: frozenset[str] = frozenset(), not_worse: bool = False) -> tuple[str, str, list]:
    """``better`` (a beats b by more than margin) or, with not_worse, non-inferiority (a is not
    worse than b by margin or more)."""
    decisions, details, numbers = [], [], []
    for a, b in pairs:
        va = sign * finals[finals.label == a].value.to_numpy()
        vb = sign * finals[finals.label == b].value.to_numpy()
        if min(len(va), len(vb)) < MIN_SEEDS:
            decisions.append("inconclusive")
            details.append(f"{a} vs {b}: fewer than {MIN_SEEDS} finished seeds")
            continue
        d, lo, hi = difference_ci(va, vb)
        if not_worse:
            decision = "reproduced" if lo > -margin else "not reproduced" if hi < -margin else "inconclusive"
        else:
            decision = "reproduced" if d > margin and lo > 0 else "not reproduced" if hi < margin else "inconclusive"
        veto = _unconverged_veto(decision, a, b, unconverged)
        if _zero_width(lo, hi):
            veto = "zero-width interval: every seed gave the same difference, the seeds decide nothing"
        decisions.append("inconclusive" if veto else decision)
        numbers.append({"a": a, "b": b, "diff": d, "lo": lo, "hi": hi})
        words = f"non-inferiority margin {margin:g}" if not_worse else f"margin {margin:g}"
        details.append(f"{a} − {b} = {estimate_words(d, lo, hi, '+')} ({words})" + (f", {veto}" if veto else ""))
    return _combine(decisions), "; ".join(details), numbers


def _equivalent(finals: pd.DataFrame, pairs: list[list[str]], margin: float,
                unconverged: frozenset[str] = frozenset()) -> tuple[str, str, list]:
    """A symmetric rule: a - b in the metric's own units (not turned to 'a better by')."""
    decisions, details, numbers = [], [], []
    for a, b in pairs:
        va = finals[finals.label == a].value.to_numpy()
        vb = finals[finals.label == b].value.to_numpy()
        if min(len(va), len(vb)) < MIN_SEEDS:
            decisions.append("inconclusive")
            details.append(f"{a} vs {b}: fewer than {MIN_SEEDS} finished seeds")
            continue
        d, lo, hi = difference_ci(va, vb)
        decision = ("reproduced" if -margin < lo and hi < margin
                    else "not reproduced" if lo >= margin or hi <= -margin else "inconclusive")
        still = [x for x in (a, b) if x in unconverged]
        veto = f"not converged: {', '.join(still)} still improving" if still and decision in DECIDED else None
        if _zero_width(lo, hi):
            veto = "zero-width interval: every seed gave the same difference, the seeds decide nothing"
        decisions.append("inconclusive" if veto else decision)
        numbers.append({"a": a, "b": b, "diff": d, "lo": lo, "hi": hi})
        details.append(f"{a} − {b} = {estimate_words(d, lo, hi, '+')} (equivalent within ±{margin:g})"
                       + (f", {veto}" if veto else ""))
    return _combine(decisions), "; ".join(details), numbers


def _first_reach(curve: pd.DataFrame, label: str, target: float, x: str, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the x at which the curve first reaches the target, interpolated linearly between
    the evaluation before and the one at which it is reached (or its last x), and whether it did."""
    xs, hit = [], []
    for _, g in curve[curve.label == label].sort_values("step").groupby("seed"):
        v, xv = sign * g.value.to_numpy(float), g[x].to_numpy(float)
        reached = np.flatnonzero(v >= sign * target)
        hit.append(len(reached) > 0)
        if not len(reached):
            xs.append(float(xv[-1]))
            continue
        i = reached[0]
        if i == 0 or v[i] == v[i - 1]:
            xs.append(float(xv[i]))
        else:
            frac = (sign * target - v[i - 1]) / (v[i] - v[i - 1])
            xs.append(float(xv[i - 1] + frac * (xv[i] - xv[i - 1])))
    return np.array(xs), np.array(hit, dtype=bool)


def _faster_pair(curve: pd.DataFrame, a: str, b: str, v: dict[str, Any], sign: float,
                 unconverged: frozenset[str] = frozenset()) -> tuple[str, str, dict]:
    """A seed of b that never reaches the target counts with its whole budget (a lower bound on its
    time to target, which favours b); a seed of a that never reaches it counts as a miss."""
    x = v.get("x", "epoch")
    best_b = curve[curve.label == b].groupby("seed").value.agg("max" if sign > 0 else "min").mean()
    target = best_b - sign * v.get("tolerance", 0.0)
    xa, hit_a = _first_reach(curve, a, target, x, sign)
    xb, _ = _first_reach(curve, b, target, x, sign)
    if min(len(xa), len(xb)) < MIN_SEEDS:
        return "inconclusive", f"{a} vs {b}: fewer than {MIN_SEEDS} finished seeds", {}
    unit = {"train_seconds": "s", "epoch": "epochs", "step": "updates"}.get(x, x)
    detail = f"{a} vs {b}: target {target:.2f} ({b}'s best − {v.get('tolerance', 0.0):g}), reached by {a} in {hit_a.sum()}/{len(xa)} seeds"
    if hit_a.sum() * 2 < len(xa):
        if a in unconverged:
            return "inconclusive", detail + f", not converged: {a} was still improving", {"a": a, "b": b, "x": x, "ratio": None}
        return "not reproduced", detail, {"a": a, "b": b, "x": x, "ratio": None}
    ratio, lo, hi = ratio_ci(xa[hit_a], xb)
    detail += f", {xa[hit_a].mean():.3g} vs {xb.mean():.3g} {unit}, ratio {estimate_words(ratio, lo, hi)}"
    bound = v.get("ratio_below", 1.0)
    if bound != 1.0:
        detail += f" (claimed below {bound:g})"
    decision = "reproduced" if hit_a.all() and hi < bound else "not reproduced" if lo >= bound else "inconclusive"
    if _zero_width(lo, hi):
        decision, detail = "inconclusive", detail + (", zero-width interval: every seed gave the same "
                                                     f"{unit} (e.g. one clock for all seeds), the seeds decide nothing")
    if b in unconverged and decision != "inconclusive":  # the target is the last value of a climbing curve
        decision, detail = "inconclusive", detail + f", not converged: {b}'s best is a value it was still improving on"
    return decision, detail, {"a": a, "b": b, "x": x, "ratio": ratio, "lo": lo, "hi": hi}


def _faster(curves: pd.DataFrame, v: dict[str, Any], metric: dict[str, Any], sign: float,
            unconverged: frozenset[str] = frozenset()) -> tuple[str, str, list]:
    curve = curve_rows(curves, v.get("split", metric["split"]), metric["name"])
    outcomes = [_faster_pair(curve, a, b, v, sign, unconverged) for a, b in v["pairs"]]
    return (_combine([o[0] for o in outcomes]), "; ".join(o[1] for o in outcomes),
            [o[2] for o in outcomes if o[2]])


def _within(finals: pd.DataFrame, v: dict[str, Any], paper_numbers: list[dict], profile: str) -> tuple[str, str, list]:
    if profile != "paper":
        return "not run", "absolute agreement with the paper is judged at the paper profile only", []
    ref = next(n for n in paper_numbers if n.get("method") == v["method"] and n["provenance"] in ("V", "src"))
    mean, lo, hi = mean_ci(finals[finals.label == v["method"]].value.to_numpy())
    tol = v["tolerance"]
    decision = ("reproduced" if abs(mean - ref["value"]) <= tol else
                "not reproduced" if (lo > ref["value"] + tol or hi < ref["value"] - tol) else "inconclusive")
    return decision, f"ours {estimate_words(mean, lo, hi)} vs paper {ref['value']} ± {tol}", [{"mean": mean, "paper": ref["value"]}]


def _threshold(finals: pd.DataFrame, v: dict[str, Any], sign: float) -> tuple[str, str, list]:
    values = finals[finals.label == v["method"]].value.to_numpy()
    if len(values) < MIN_SEEDS:
        return "inconclusive", f"{v['method']}: fewer than {MIN_SEEDS} finished seeds", []
    mean, lo, hi = mean_ci(values)
    beyond = sign * (np.array([mean, lo, hi]) - v["value"])
    decision = ("reproduced" if beyond[0] > 0 and beyond[1:].min() > 0 else
                "not reproduced" if beyond[1:].max() < 0 else "inconclusive")
    side = ">" if sign > 0 else "<"
    return decision, f"{v['method']}: {mean:.3g} [{lo:.3g}, {hi:.3g}] vs required {side} {v['value']:g}", \
        [{"mean": mean, "lo": lo, "hi": hi, "value": v["value"]}]


def final_values_at_smaller_k(curves: pd.DataFrame, metric: dict[str, Any]) -> pd.DataFrame:
    """label, seed, value: the final metric at the next smaller K evaluated at the last step (the
    engine evaluates K / 10 there); a seed without such a row (a metric without K) has none."""
    rows = curves[(curves.split == metric["split"]) & (curves.metric == metric["name"])]
    last = rows[rows.step == rows.groupby(["label", "seed"]).step.transform("max")]
    below = last[last.eval_k < last.groupby(["label", "seed"]).eval_k.transform("max")]
    below = below[below.eval_k == below.groupby(["label", "seed"]).eval_k.transform("max")]
    return below.groupby(["label", "seed", "eval_k"], as_index=False).value.mean()


def _final_rule(finals: pd.DataFrame, rule: dict[str, Any], paper_numbers: list[dict], profile: str, sign: float,
                unconverged: frozenset[str]) -> tuple[str, str, list]:
    name = rule["rule"]
    if name == "better":
        return _better(finals, rule["pairs"], rule.get("margin", 0.0), sign, unconverged)
    if name == "ordering":
        order = rule["order"]
        return _better(finals, [[order[i], order[i + 1]] for i in range(len(order) - 1)],
                       rule.get("margin", 0.0), sign, unconverged)
    if name == "not_worse":
        return _better(finals, rule["pairs"], rule["margin"], sign, unconverged, not_worse=True)
    if name == "equivalent":
        return _equivalent(finals, rule["pairs"], rule["margin"], unconverged)
    if name == "threshold":
        return _threshold(finals, rule, sign)
    return _within(finals, rule, paper_numbers, profile)


def _stability_in_k(curves: pd.DataFrame, finals: pd.DataFrame, rule: dict[str, Any], metric: dict[str, Any],
                    paper_numbers: list[dict], profile: str, sign: float, decision: str,
                    numbers: list) -> tuple[bool, str]:
    """(stable, words): the rule recomputed on the final metric at K / 10. Unstable when the
    decision changes, or when an estimate (a difference, a mean) moves by more than the claim's
    margin; a verdict that is not stable in K reads inconclusive."""
    low = final_values_at_smaller_k(curves, metric)
    if len(low) != len(finals) or not numbers:  # some seed has no smaller K: nothing to compare
        return True, ""
    low_decision, _, low_numbers = _final_rule(low, rule, paper_numbers, profile, sign, frozenset())
    key = "diff" if "diff" in numbers[0] else "mean"
    moved = max((abs(n[key] - m[key]) for n, m in zip(numbers, low_numbers)), default=0.0)
    k_high, k_low = int(finals.eval_k.max()), int(low.eval_k.max())
    words = f"K {k_low} → {k_high} moves the estimate by {moved:.2g}"
    margin = rule.get("margin", 0.0)
    if decision in DECIDED and low_decision != decision:
        return False, f"not stable in K: {words}, and at K {k_low} the rule says {low_decision}"
    if margin > 0 and moved > margin:
        return False, f"not stable in K: {words}, more than the margin {margin:g}"
    return True, f"stable in K ({words})"


def verdict(curves: pd.DataFrame, rule: dict[str, Any], metric: dict[str, Any], paper_numbers: list[dict],
            profile: str, unconverged: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Evaluate a claim's verdict rule on the curves (with a `label` column). `unconverged`: labels
    with a seed whose curve had not converged (bench.claims.convergence); comparisons that would
    stand on them read inconclusive. Rules on final values are recomputed at K / 10 (the engine's
    second final evaluation): a verdict not stable in K reads inconclusive."""
    sign = 1.0 if metric["higher_is_better"] else -1.0
    name = rule["rule"]
    if name == "faster_to_target":
        decision, detail, numbers = _faster(curves, rule, metric, sign, unconverged)
        return {"verdict": decision, "detail": detail, "numbers": numbers}
    finals = final_values(curves, metric)
    decision, detail, numbers = _final_rule(finals, rule, paper_numbers, profile, sign, unconverged)
    if name in ("threshold", "within_paper") and rule["method"] in unconverged and decision in DECIDED:
        decision, detail = "inconclusive", detail + f", not converged: {rule['method']}'s curve does not show it converged"
    stable, words = _stability_in_k(curves, finals, rule, metric, paper_numbers, profile, sign, decision, numbers)
    if words:
        detail += f"; {words}"
    if not stable and decision in DECIDED:
        decision = "inconclusive"
    return {"verdict": decision, "detail": detail, "numbers": numbers}
