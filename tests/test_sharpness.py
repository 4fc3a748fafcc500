"""Keskar et al.'s sharpness (bench/estimators/sharpness.py; ICLR 2017, eq. 4) against closed forms:
on a separable quadratic f(x) = 1/2 x^T H x + g^T x with diagonal H the box maximum is found
coordinate by coordinate (a convex coordinate at the end of the box its slope points to, a concave
one at its vertex clipped to the box); a linear f shows the box's half-widths eps (|x_i| + 1). On an
MLP (bench/workloads/mlp.py) each replica's float64 loss is checked against a plain function of
that replica's parameters, and the maximiser found stays in the box and does not lower the loss.
The 1-D interpolation is checked on the quadratic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.estimators.sharpness import box, sharpness
from bench.models.mlp import MLP
from bench.workloads import workload_for
from bench.workloads.mlp import SHARPNESS_EPS, replica_loss

H = torch.tensor([3.0, 0.5, 2.0, -40.0, 0.0, 7.0], dtype=torch.float64)  # convex, concave and flat coordinates;
# the fourth (vertex -g/h = 0.005) peaks inside its box around X[3]
G = torch.tensor([0.3, -1.0, 0.5, 0.2, -0.7, 0.0], dtype=torch.float64)
X = torch.tensor([-1.5, 0.02, 300.0, 0.0052, -4.0, 2.0], dtype=torch.float64)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (H * x * x).sum() + (G * x).sum()


def box_maximum(x: torch.Tensor, eps: float) -> float:
    """max_{|y_i| <= eps (|x_i| + 1)} f(x + y), coordinate by coordinate, in closed form."""
    total = 0.0
    for h, g, xi in zip(H.tolist(), G.tolist(), x.tolist()):
        lo, hi = xi - eps * (abs(xi) + 1), xi + eps * (abs(xi) + 1)
        candidates = [lo, hi] + ([min(max(-g / h, lo), hi)] if h < 0 else [])
        total += max(0.5 * h * u * u + g * u for u in candidates)
    return total


@pytest.mark.parametrize("eps", [1e-3, 5e-4, 0.05])
def test_quadratic_matches_the_closed_form(eps):
    f_x = float(quadratic(X))
    expected = 100 * (box_maximum(X, eps) - f_x) / (1 + f_x)
    result = sharpness(quadratic, X, eps)
    assert result.loss == pytest.approx(f_x, rel=1e-14)
    assert result.value == pytest.approx(expected, rel=1e-9)
    # the concave coordinate with a large curvature peaks inside its box, not at a corner
    assert abs(result.y[3]) < eps * (abs(X[3]) + 1)


def test_box_grows_with_the_coordinates_magnitude():
    """For f(x) = g^T x the maximiser is y_i = sign(g_i) eps (|x_i| + 1): the coordinate at 300
    moves 300 times further than one near 0."""
    eps = 1e-3
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.tensor([300.0, 0.0, -2.0], dtype=torch.float64)
    result = sharpness(lambda v: (g * v).sum(), x, eps)
    half = eps * (x.abs() + 1)
    torch.testing.assert_close(box(x, eps), half, rtol=0, atol=0)
    torch.testing.assert_close(result.y, torch.sign(g) * half, rtol=1e-12, atol=0)
    f_x = float((g * x).sum())
    assert result.value == pytest.approx(100 * float((g.abs() * half).sum()) / (1 + f_x), rel=1e-12)


def test_maxiter_zero_and_bad_inputs():
    assert sharpness(quadratic, X, 1e-3, maxiter=0).value == 0.0
    with pytest.raises(ValueError, match="float64"):
        sharpness(quadratic, X.float(), 1e-3)
    with pytest.raises(ValueError, match="eps"):
        sharpness(quadratic, X, 0.0)


def _classifier() -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """A ReLU classifier 6-5-3 with two replicas (the second scaled by 3), and 40 labelled examples."""
    model = MLP([6, 5, 3], [0, 1], activations="relu", loss="categorical", init="kaiming")
    with torch.no_grad():
        for p in model.parameters():
            p[1] *= 3.0
    g = torch.Generator().manual_seed(0)
    return model, torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)


def _plain_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 6-5-3 ReLU net of one replica, written out from its flat parameters (W1, W2, b1, b2)."""
    w1, w2, b1, b2 = theta.split([30, 15, 5, 3])
    hidden = torch.relu(F.linear(x, w1.view(5, 6), b1))
    return F.cross_entropy(F.linear(hidden, w2.view(3, 5), b2), y)


@pytest.mark.parametrize("r", [0, 1])
def test_network_sharpness_stays_in_the_box(r):
    model, x, y = _classifier()
    f, theta = replica_loss(model, r, x, y)
    assert theta.dtype == torch.float64 and theta.shape == (53,)
    own = [model.weights[0][r], model.weights[1][r], model.biases[0][r], model.biases[1][r]]
    torch.testing.assert_close(theta, torch.cat([p.detach().double().flatten() for p in own]), rtol=0, atol=0)
    x64 = x.double()
    assert float(f(theta)) == pytest.approx(float(_plain_loss(theta, x64, y)), rel=1e-12)
    for eps in SHARPNESS_EPS.values():
        result = sharpness(f, theta, eps)
        assert (result.y.abs() <= box(theta, eps)).all()
        assert result.max_loss == pytest.approx(float(_plain_loss(theta + result.y, x64, y)), rel=1e-12)
        assert result.max_loss >= result.loss
        assert result.value > 0  # the gradient of a random net is not 0: a step in the box raises the loss


def test_final_evaluation_of_train_adds_sharpness_per_replica():
    model, x, y = _classifier()
    workload = workload_for("mlp")
    xr, yr = x.expand(2, -1, -1), y.expand(2, -1)
    curve = workload.evaluate(model, _NoExtras(), xr, 1, yr)
    final = workload.evaluate(model, _NoExtras(), xr, 1, yr, final_split="train")
    assert set(final) - set(curve) == set(SHARPNESS_EPS)
    assert set(workload.evaluate(model, _NoExtras(), xr, 1, yr, final_split="test")) == set(curve)
    for r in range(2):
        f, theta = replica_loss(model, r, x, y)
        assert float(final["sharpness_1e-3"][r]) == pytest.approx(sharpness(f, theta, 1e-3).value, rel=1e-12)


class _NoExtras:
    name = "none"

    def extra_metrics(self, x, k, y):
        return {}


def test_a_run_records_sharpness_once_in_its_final_evaluation_of_train(tmp_path):
    from bench.core.spec import RunSpec
    from bench.engine import results, train

    spec = RunSpec(profile="adhoc", dataset="mnist", model={"family": "mlp", "layers": [784, 16, 10], "loss": "categorical",
                                                            "activations": "relu", "init": "kaiming"},
                   method="adam", hparams={"lr": 1e-3}, seeds=(0, 1), epochs=2, batch_size=100, train_subset=300,
                   transform="unit_interval", labels=True, eval_every=1, eval_subset=200, eval_k=1, final_eval_k=1,
                   eval_splits=("train", "test"), final_eval_splits=("test", "train"))
    train.run(spec, tmp_path / "run", progress=False)
    curve, _ = results.read_run(tmp_path / "run")
    rows = curve[curve.metric.str.startswith("sharpness")]
    assert set(rows.metric) == set(SHARPNESS_EPS) and set(rows.split) == {"train"}
    assert set(rows.step) == {curve.step.max()} and len(rows) == 2 * len(SHARPNESS_EPS)  # one per seed and eps
    assert (rows.value > 0).all()
