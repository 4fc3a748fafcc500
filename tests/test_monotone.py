"""The one mechanism of EM's monotonicity (bench/workloads/monotone.py) and the shared mixture E-step
(bench/models/finite_mixture.py): the E-step against scipy's logsumexp and softmax in float64; the
relative decrease, by hand, shared by the method's running metric and the health check of a recorded
objective; and the four EM workloads declaring it through `em_checks`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp, softmax

from bench.models.finite_mixture import responsibilities
from bench.workloads import workload_for
from bench.workloads.monotone import MONOTONE_TOLERANCE, LargestDecrease, decreasing_objective


def test_responsibilities_match_scipy_in_float64():
    log_joint = np.random.default_rng(0).normal(scale=30.0, size=(2, 7, 5)) - 500.0  # far below exp's range
    log_px, gamma = responsibilities(torch.as_tensor(log_joint))
    np.testing.assert_allclose(log_px.numpy(), logsumexp(log_joint, axis=-1), rtol=1e-15)
    np.testing.assert_allclose(gamma.numpy(), softmax(log_joint, axis=-1), rtol=1e-12, atol=1e-300)
    assert log_px.shape == (2, 7) and gamma.dtype == torch.float64


def _rows(metric: str, values: list[float], steps_per_epoch: int = 1) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"split": "train", "metric": metric, "seed": 0, "step": np.arange(1, n + 1) * steps_per_epoch,
                         "epoch": np.arange(1, n + 1), "eval_k": 0, "value": values})


def _largest_decrease(values: list[float]) -> float:
    track = LargestDecrease()
    return [track.update(torch.tensor([v], dtype=torch.float64)) for v in values][-1].item()


@pytest.mark.parametrize("fall", [0.5e-9, 2e-9])
def test_the_check_of_a_recorded_objective_and_the_running_metric_agree(fall):
    """One relative fall, 0.5e-9 (under MONOTONE_TOLERANCE) or 2e-9: the running metric equals it
    and the check of the recorded curve fires exactly when it exceeds the tolerance."""
    values = [-1000.0, -1000.0 * (1 + fall), -900.0]
    assert _largest_decrease(values) == pytest.approx(fall, rel=1e-4)
    found = decreasing_objective("batch_ll")(_rows("batch_ll", values))
    assert [(f.kind, f.check) for f in found] == ([("degenerate", "objective decreased")] if fall > MONOTONE_TOLERANCE else [])


def test_the_check_names_the_largest_relative_fall():
    """Falls of 2e-6 nats from -1000 (2e-9 relative) and 2e-8 nats from -2 (1e-8 relative): the
    metric is 1e-8 and the check names iteration 3, not the larger absolute fall at iteration 1."""
    values = [-1000.0, -1000.0 - 2e-6, -2.0, -2.0 - 2e-8, -1.0]
    assert _largest_decrease(values) == pytest.approx(1e-8, rel=1e-6)
    found = decreasing_objective()(_rows("map_objective", values))
    assert len(found) == 1 and "at iteration 3" in found[0].detail


@pytest.mark.parametrize("family, model, metric, expected", [
    ("bernoulli_mixture", {"layers": [4, 3]}, "map_objective", ("degenerate", "objective decreased")),
    ("ppca", {"layers": [4, 2]}, "batch_ll", ("degenerate", "objective decreased")),
    ("gaussian_mixture", {"layers": [4, 3, 2]}, "ll_decrease", ("saturated", "minibatch iterations")),
    ("categorical_hmm", {"layers": [6, 4, 2]}, "ll_decrease", ("saturated", "minibatch iterations")),
])
def test_every_em_workload_declares_its_monotonicity_check(family, model, metric, expected):
    """A method reporting its objective is degenerate when it falls in full batch; one reporting
    'll_decrease' is not testable in minibatches; neither fires on a full-batch monotone curve."""
    checks = workload_for(family).health_checks(model)
    bad = _rows(metric, [-3.0, -2.0, -2.5], steps_per_epoch=1) if expected[0] == "degenerate" \
        else _rows(metric, [0.0, 0.0, 0.0], steps_per_epoch=4)
    assert [(f.kind, f.check) for c in checks for f in c(bad)] == [expected]
    assert [f for c in checks for f in c(_rows(metric, [-3.0, -2.0, -2.0] if expected[0] == "degenerate"
                                                      else [0.0, 0.0, 0.0]))] == []
