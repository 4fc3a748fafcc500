"""Verdict rules on synthetic curves whose answer is known."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from bench.claims.stats import difference_ci, mean_ci, ratio_ci, verdict

METRIC = {"split": "test", "name": "ll", "higher_is_better": True}


def _curves(finals: dict[str, list[float]], reach: dict[str, int] | None = None) -> pd.DataFrame:
    """Curves over epochs 0..10 at K=10 plus a final K=100 row: each rises linearly by 10 nats and
    reaches its final value at epoch `reach[label]` (default 10), flat afterwards."""
    rows = []
    for label, values in finals.items():
        for seed, final in enumerate(values):
            for epoch in range(11):
                r = (reach or {}).get(label, 10)
                v = final - 10.0 * max(0, r - epoch) / r
                rows.append(dict(label=label, seed=seed, step=epoch * 10, epoch=epoch, train_seconds=epoch * 2.0,
                                 split="test", metric="ll", eval_k=10, value=v))
                rows.append(dict(label=label, seed=seed, step=epoch * 10, epoch=epoch, train_seconds=epoch * 2.0,
                                 split="valid", metric="ll", eval_k=10, value=v))
            rows.append(dict(label=label, seed=seed, step=100, epoch=10, train_seconds=20.0, split="test",
                             metric="ll", eval_k=100, value=final))
    return pd.DataFrame(rows)


def test_mean_ci_brackets_mean():
    mean, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    assert lo < mean < hi and mean == 2.5


def test_better_reproduced_not_reproduced_inconclusive():
    rule = {"rule": "better", "pairs": [["A", "B"]], "margin": 1.0}
    clear = _curves({"A": [-90, -90.2, -89.8], "B": [-95, -95.1, -94.9]})
    assert verdict(clear, rule, METRIC, [], "quick")["verdict"] == "reproduced"
    reversed_ = _curves({"A": [-95, -95.1, -94.9], "B": [-90, -90.2, -89.8]})
    assert verdict(reversed_, rule, METRIC, [], "quick")["verdict"] == "not reproduced"
    noisy = _curves({"A": [-85, -95, -90], "B": [-91, -88, -93]})
    assert verdict(noisy, rule, METRIC, [], "quick")["verdict"] == "inconclusive"


def test_better_needs_the_margin():
    small = _curves({"A": [-90.0, -90.1, -89.9], "B": [-90.5, -90.6, -90.4]})
    out = verdict(small, {"rule": "better", "pairs": [["A", "B"]], "margin": 1.0}, METRIC, [], "quick")
    assert out["verdict"] == "not reproduced"
    assert "margin 1" in out["detail"]


def test_ordering_checks_every_adjacent_pair():
    c = _curves({"A": [-88, -88.1, -87.9], "B": [-90, -90.1, -89.9], "C": [-89, -89.1, -88.9]})
    assert verdict(c, {"rule": "ordering", "order": ["A", "B", "C"]}, METRIC, [], "quick")["verdict"] == "not reproduced"
    assert verdict(c, {"rule": "ordering", "order": ["A", "C", "B"]}, METRIC, [], "quick")["verdict"] == "reproduced"


def test_equivalent_needs_the_whole_interval_inside_the_margin():
    """'A is comparable to B': the CI of the difference inside (-margin, margin) reproduces it, a CI
    wholly outside refutes it (either sign), a CI that straddles the margin decides nothing."""
    rule = {"rule": "equivalent", "pairs": [["A", "B"]], "margin": 1.0}
    close = _curves({"A": [-90.0, -90.2, -89.9], "B": [-90.1, -89.9, -90.2]})
    out = verdict(close, rule, METRIC, [], "quick")
    assert out["verdict"] == "reproduced" and "equivalent within ±1" in out["detail"]
    for far in ({"A": [-90.0, -90.2, -89.9], "B": [-93.0, -93.2, -92.9]}, {"A": [-93.0, -93.2, -92.9], "B": [-90.0, -90.1, -89.9]}):
        assert verdict(_curves(far), rule, METRIC, [], "quick")["verdict"] == "not reproduced"
    wide = _curves({"A": [-88.0, -92.0, -90.0], "B": [-90.0, -90.1, -89.9]})
    assert verdict(wide, rule, METRIC, [], "quick")["verdict"] == "inconclusive"
    error = {"split": "test", "name": "ll", "higher_is_better": False}  # a lower A prints as a negative A - B
    assert "A − B = -3" in verdict(_curves(far), rule, error, [], "quick")["detail"]
    climbing = verdict(close, rule, METRIC, [], "quick", unconverged=frozenset({"B"}))
    assert climbing["verdict"] == "inconclusive" and "not converged: B" in climbing["detail"]


def test_not_worse_is_non_inferiority():
    """'A is at least as good as B': a clearly better A passes (where `equivalent` would not), an A
    within the margin below B passes, an A worse by more than the margin fails."""
    rule = {"rule": "not_worse", "pairs": [["A", "B"]], "margin": 1.0}
    better = verdict(_curves({"A": [-88.0, -88.2, -87.9], "B": [-90.0, -90.1, -89.9]}), rule, METRIC, [], "quick")
    assert better["verdict"] == "reproduced" and "non-inferiority margin 1" in better["detail"]
    slightly_worse = _curves({"A": [-90.4, -90.5, -90.3], "B": [-90.0, -90.1, -89.9]})
    assert verdict(slightly_worse, rule, METRIC, [], "quick")["verdict"] == "reproduced"
    worse = _curves({"A": [-92.0, -92.1, -91.9], "B": [-90.0, -90.1, -89.9]})
    assert verdict(worse, rule, METRIC, [], "quick")["verdict"] == "not reproduced"
    error = {"split": "test", "name": "ll", "higher_is_better": False}  # lower is better: the same A now wins
    assert verdict(worse, rule, error, [], "quick")["verdict"] == "reproduced"


def test_faster_to_target():
    # Both end near -90; A gets there by epoch 3, B only by epoch 10.
    c = _curves({"A": [-90, -90, -90], "B": [-90, -90.1, -89.9]}, reach={"A": 3, "B": 10})
    rule = {"rule": "faster_to_target", "pairs": [["A", "B"]], "tolerance": 0.5, "x": "epoch", "split": "valid"}
    assert verdict(c, rule, METRIC, [], "quick")["verdict"] == "reproduced"
    swapped = {**rule, "pairs": [["B", "A"]]}
    assert verdict(c, swapped, METRIC, [], "quick")["verdict"] == "not reproduced"


def test_faster_to_target_within_a_ratio():
    """"B reaches A's level within r times A's epochs": B takes about 3.3x A's epochs (9.5 vs 2.85)."""
    c = _curves({"A": [-90, -90, -90], "B": [-90, -90.1, -89.9]}, reach={"A": 3, "B": 10})
    rule = {"rule": "faster_to_target", "pairs": [["B", "A"]], "tolerance": 0.5, "x": "epoch", "split": "valid"}
    within_4 = verdict(c, {**rule, "ratio_below": 4.0}, METRIC, [], "quick")
    assert within_4["verdict"] == "reproduced" and "(claimed below 4)" in within_4["detail"]
    assert verdict(c, {**rule, "ratio_below": 3.0}, METRIC, [], "quick")["verdict"] == "not reproduced"


def test_within_paper_only_at_paper_profile():
    c = _curves({"A": [-85.0, -85.2, -84.9]})
    rule = {"rule": "within_paper", "method": "A", "tolerance": 1.0}
    numbers = [{"method": "A", "value": -84.8, "provenance": "V"}]
    assert verdict(c, rule, METRIC, numbers, "quick")["verdict"] == "not run"
    assert verdict(c, rule, METRIC, numbers, "paper")["verdict"] == "reproduced"
    far = [{"method": "A", "value": -80.0, "provenance": "V"}]
    assert verdict(c, rule, METRIC, far, "paper")["verdict"] == "not reproduced"


# --------------------------------------------------------------------------- convergence and health vetoes
def _long_curves(shapes: dict[str, list]) -> pd.DataFrame:
    """The engine's columns: per label and seed, a test-ll learning curve at K=10 over steps 0..100
    (epochs 0..10) given by a function of the step, and a final K=100 row at the last step."""
    rows = []
    for label, seeds in shapes.items():
        for seed, f in enumerate(seeds):
            for epoch in range(11):
                step = 10 * epoch
                rows.append(dict(label=label, seed=seed, step=step, epoch=epoch, examples=100 * step,
                                 train_seconds=0.5 * step, split="test", metric="ll", eval_k=10, value=f(step)))
            rows.append(dict(label=label, seed=seed, step=100, epoch=10, examples=10000, train_seconds=50.0,
                             split="test", metric="ll", eval_k=100, value=f(100)))
    return pd.DataFrame(rows)


def _plateau(final: float):
    return lambda step: final - 60.0 * np.exp(-step / 8.0)  # all but ~0.3% of its gain by step 80


def _climbing(final: float):
    return lambda step: final - 60.0 + 0.6 * step  # the same gain at a constant rate to the end


MODELS = {"A": {"family": "helmholtz", "layers": [784, 10]}, "B": {"family": "helmholtz", "layers": [784, 10]}}
BETTER = {"rule": "better", "pairs": [["A", "B"]], "margin": 1.0}


def test_a_win_over_a_baseline_still_climbing_is_inconclusive():
    from bench.claims.diagnostics import diagnose

    a = [_plateau(-90.0 + d) for d in (0.0, 0.1, -0.1)]
    climbing = _long_curves({"A": a, "B": [_climbing(-100.0 + d) for d in (0.0, 0.1, -0.1)]})
    diagnosis = diagnose(climbing, MODELS, METRIC)
    assert diagnosis.unconverged == frozenset({"B"})
    assert "not converged (0/3 seeds" in diagnosis.convergence_words("B")
    assert diagnosis.convergence_words("A") == "converged (3/3 seeds)"
    assert diagnosis.health == {"A": [], "B": []}
    assert verdict(climbing, BETTER, METRIC, [], "quick")["verdict"] == "reproduced"  # the rule alone
    out = verdict(climbing, BETTER, METRIC, [], "quick", unconverged=diagnosis.unconverged)
    assert out["verdict"] == "inconclusive" and "not converged" in out["detail"] and "B" in out["detail"]
    assert out["numbers"][0]["diff"] == pytest.approx(10.0, abs=0.01)  # the margin is wide: only convergence vetoes it

    plateaued = _long_curves({"A": a, "B": [_plateau(-100.0 + d) for d in (0.0, 0.1, -0.1)]})
    diagnosis = diagnose(plateaued, MODELS, METRIC)
    assert diagnosis.unconverged == frozenset()
    out = verdict(plateaued, BETTER, METRIC, [], "quick", unconverged=diagnosis.unconverged)
    assert out["verdict"] == "reproduced" and "not converged" not in out["detail"]


def test_a_loss_of_a_method_still_climbing_is_inconclusive():
    from bench.claims.diagnostics import diagnose

    curves = _long_curves({"A": [_climbing(-100.0 + d) for d in (0.0, 0.1, -0.1)],
                           "B": [_plateau(-90.0 + d) for d in (0.0, 0.1, -0.1)]})
    unconverged = diagnose(curves, MODELS, METRIC).unconverged
    assert unconverged == frozenset({"A"})
    assert verdict(curves, BETTER, METRIC, [], "quick")["verdict"] == "not reproduced"
    out = verdict(curves, BETTER, METRIC, [], "quick", unconverged=unconverged)
    assert out["verdict"] == "inconclusive" and "not converged: A" in out["detail"]


def test_health_findings_veto_the_verdict():
    from bench.claims.diagnostics import Diagnosis, diagnose
    from bench.workloads.health import Finding

    outcome = {"verdict": "reproduced", "detail": "A − B = +10.00", "numbers": []}
    labels = ["A", "B"]
    dead = Finding("dead latent units", "degenerate", "active_units", 2, "0 active units at the last evaluation on test")
    out = Diagnosis(health={"A": [], "B": [dead]}).veto(outcome, labels, "ll")
    assert out["verdict"] == "degenerate"
    assert "B, seed 2: dead latent units" in out["detail"] and "the rule alone said: reproduced" in out["detail"]

    pinned = Finding("loss pinned at 0", "saturated", "ll", 1, "train ll is exactly 0.0")
    out = Diagnosis(health={"A": [pinned]}).veto(outcome, labels, "ll")
    assert out["verdict"] == "not testable at this budget" and "A, seed 1: loss pinned at 0" in out["detail"]

    every_unit = Finding("every latent unit active", "saturated", "active_units", 0, "10 of 10 units active")
    assert Diagnosis(health={"A": [every_unit]}).veto(outcome, labels, "ll") == outcome  # another metric
    assert Diagnosis(health={"C": [dead]}).veto(outcome, labels, "ll") == outcome  # a label the rule does not read
    assert Diagnosis(health={"A": [pinned], "B": [dead]}).veto(outcome, labels, "ll")["verdict"] == "degenerate"
    not_run = {"verdict": "not run", "detail": "judged at the paper profile only", "numbers": []}
    assert Diagnosis(health={"B": [dead]}).veto(not_run, labels, "ll") == not_run  # no rule was judged

    # end to end: a baseline whose test curve never moves is degenerate through its workload's checks
    flat = _long_curves({"A": [_plateau(-90.0)] * 3, "B": [_plateau(-100.0), _plateau(-100.1), lambda s: -100.0]})
    diagnosis = diagnose(flat, MODELS, METRIC)
    assert [(f.check, f.seed) for f in diagnosis.health["B"]] == [("flat curve", 2)]
    out = diagnosis.veto(verdict(flat, BETTER, METRIC, [], "quick", diagnosis.unconverged), labels, "ll")
    assert out["verdict"] == "degenerate" and "B, seed 2: flat curve" in out["detail"]


def _coverage(interval, draw, truth: float, trials: int = 4000) -> float:
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(trials):
        _, lo, hi = interval(*draw(rng))
        hits += lo <= truth <= hi
    return hits / trials


def test_intervals_cover_at_their_nominal_level_with_three_seeds():
    """Issue 12: a percentile bootstrap of 3 vs 3 seeds covers ~78%; the t-intervals used now cover
    at least 93% at nominal 95% (normal seeds; unequal spreads for Welch's and Fieller's)."""
    assert _coverage(mean_ci, lambda r: (r.normal(-90, 2, 3),), -90) >= 0.93
    assert _coverage(difference_ci, lambda r: (r.normal(-90, 1, 3), r.normal(-92, 3, 3)), 2.0) >= 0.93
    assert _coverage(ratio_ci, lambda r: (r.normal(30, 3, 3), r.normal(60, 6, 3)), 0.5) >= 0.93


def test_a_zero_width_interval_decides_nothing():
    """Every seed identical (one clock shared by all seeds, a deterministic toy): inconclusive, said why."""
    c = _curves({"A": [-90, -90, -90], "B": [-95, -95, -95]})
    out = verdict(c, {"rule": "better", "pairs": [["A", "B"]], "margin": 1.0}, METRIC, [], "quick")
    assert out["verdict"] == "inconclusive" and "zero-width" in out["detail"]


def test_time_to_target_is_interpolated_between_evaluations():
    """B reaches the target between two evaluations: its epochs to target are not the grid's."""
    c = _curves({"A": [-90, -90, -90], "B": [-90, -90.1, -89.9]}, reach={"A": 3, "B": 10})
    rule = {"rule": "faster_to_target", "pairs": [["A", "B"]], "tolerance": 0.5, "x": "epoch", "split": "valid"}
    detail = verdict(c, rule, METRIC, [], "quick")["detail"]
    epochs = [float(s) for s in re.findall(r"([\d.]+) vs ([\d.]+) epochs", detail)[0]]
    assert epochs[0] == pytest.approx(2.85) and epochs[1] == pytest.approx(9.5, abs=0.1), detail


def test_a_threshold_on_an_unconverged_method_decides_nothing():
    c = _curves({"A": [-85.0, -85.2, -84.9]})
    rule = {"rule": "threshold", "method": "A", "value": -90.0}
    assert verdict(c, rule, METRIC, [], "quick")["verdict"] == "reproduced"
    out = verdict(c, rule, METRIC, [], "quick", unconverged=frozenset({"A"}))
    assert out["verdict"] == "inconclusive" and "not converged" in out["detail"]


def test_a_verdict_that_moves_with_k_reads_inconclusive():
    """Issue 12, estimator precision: at K = 100 A beats B by 2 nats; when A's estimate at K / 10
    is 1 nat looser, the difference moves by more than the margin 0.5: the estimate is not
    stable in K, so the verdict decides nothing and says so."""
    rule = {"rule": "better", "pairs": [["A", "B"]], "margin": 0.5}
    stable = _curves({"A": [-90, -90.2, -89.8, -90.1, -89.9], "B": [-92, -92.1, -91.9, -92.2, -91.8]})
    out = verdict(stable, rule, METRIC, [], "quick")
    assert out["verdict"] == "reproduced" and "stable in K (K 10 → 100" in out["detail"]
    moving = stable.copy()
    at_small_k = (moving.step == 100) & (moving.eval_k == 10)
    moving.loc[at_small_k & (moving.label == "A"), "value"] -= 1.0  # A's K/10 estimate 1 nat looser than B's
    out = verdict(moving, rule, METRIC, [], "quick")
    assert out["verdict"] == "inconclusive"
    assert "not stable in K: K 10 → 100 moves the estimate by 1" in out["detail"]


def test_intervals_cover_at_their_nominal_level_with_five_seeds():
    """The catalogue runs 5 seeds per method at the quick and paper profiles."""
    assert _coverage(mean_ci, lambda r: (r.normal(-90, 2, 5),), -90) >= 0.93
    assert _coverage(difference_ci, lambda r: (r.normal(-90, 1, 5), r.normal(-92, 3, 5)), 2.0) >= 0.93
    assert _coverage(ratio_ci, lambda r: (r.normal(30, 3, 5), r.normal(60, 6, 5)), 0.5) >= 0.93


def test_a_final_evaluation_repeating_the_last_curve_point_counts_each_seed_once():
    """Classifiers are evaluated at K = 1 both on the curve and finally, at the same last step: the
    seed's two rows are one seed, so the interval is the one of three values, not of six."""
    from bench.claims.stats import final_values

    curves = _curves({"A": [-90.0, -91.0, -89.5], "B": [-95.0, -94.0, -95.5]})
    last = curves[(curves.step == 100) & (curves.eval_k == 100)]
    twice = pd.concat([curves, last])
    finals = final_values(twice, METRIC)
    assert finals.groupby("label").size().to_dict() == {"A": 3, "B": 3}
    rule = {"rule": "better", "pairs": [["A", "B"]], "margin": 0.0}
    assert verdict(twice, rule, METRIC, [], "quick")["numbers"] == verdict(curves, rule, METRIC, [], "quick")["numbers"]
