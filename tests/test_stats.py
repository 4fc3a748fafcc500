"""Verdict rules on synthetic curves whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.claims.stats import bootstrap_ci, verdict

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


def test_bootstrap_ci_brackets_mean():
    mean, lo, hi = bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]))
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


def test_faster_to_target():
    # Both end near -90; A gets there by epoch 3, B only by epoch 10.
    c = _curves({"A": [-90, -90, -90], "B": [-90, -90.1, -89.9]}, reach={"A": 3, "B": 10})
    rule = {"rule": "faster_to_target", "pairs": [["A", "B"]], "tolerance": 0.5, "x": "epoch", "split": "valid"}
    assert verdict(c, rule, METRIC, [], "quick")["verdict"] == "reproduced"
    swapped = {**rule, "pairs": [["B", "A"]]}
    assert verdict(c, swapped, METRIC, [], "quick")["verdict"] == "not reproduced"


def test_within_paper_only_at_paper_profile():
    c = _curves({"A": [-85.0, -85.2, -84.9]})
    rule = {"rule": "within_paper", "method": "A", "tolerance": 1.0}
    numbers = [{"method": "A", "value": -84.8, "provenance": "V"}]
    assert verdict(c, rule, METRIC, numbers, "quick")["verdict"] == "not run"
    assert verdict(c, rule, METRIC, numbers, "paper")["verdict"] == "reproduced"
    far = [{"method": "A", "value": -80.0, "provenance": "V"}]
    assert verdict(c, rule, METRIC, far, "paper")["verdict"] == "not reproduced"
