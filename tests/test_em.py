"""Mixtures of Bernoullis (bench/models/mixture.py) and their EM (methods/em.py), in float64, against
independent references: brute-force enumeration of p(x), a hand-written numpy E/M step, EM's
monotone objective (Dempster, Laird & Rubin 1977), recovery of a planted mixture; and the
workload's health checks (bench/workloads/mixture.py, bench/workloads/monotone.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from bench.core.errors import ConfigError
from bench.engine import data
from bench.engine.methods import get_method
from bench.models import build_model
from bench.models.mixture import BernoulliMixture
from bench.workloads import workload_for
from bench.workloads.mixture import empty_components, too_many_empty
from bench.workloads.monotone import decreasing_objective


def mixture(d: int, k: int, seeds: list[int], init: str = "uniform") -> BernoulliMixture:
    return build_model({"family": "bernoulli_mixture", "layers": [d, k], "init": init}, seeds)


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n binary images of 30 pixels from a known 3-component mixture: (x, pi, p)."""
    rng = np.random.default_rng(seed)
    pi = np.array([0.5, 0.3, 0.2])
    p = np.where(rng.random((3, 30)) < 0.5, 0.1, 0.9) + rng.uniform(-0.05, 0.05, (3, 30))
    z = rng.choice(3, size=n, p=pi)
    return (rng.random((n, 30)) < p[z]).astype(np.float64), pi, p


def replicate(x: np.ndarray, r: int) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).unsqueeze(0).expand(r, -1, -1).contiguous()


def numpy_em_step(x: np.ndarray, log_pi: np.ndarray, p: np.ndarray, c: float):
    """One EM iteration written out (Bishop eqs 9.56-9.60, with the Beta(1 + c, 1 + c) MAP pixel
    update): returns (mean log-likelihood before the step, new pi, new p)."""
    log_joint = log_pi + x @ np.log(p).T + (1 - x) @ np.log(1 - p).T  # (N, K)
    top = log_joint.max(1, keepdims=True)
    log_px = top[:, 0] + np.log(np.exp(log_joint - top).sum(1))
    gamma = np.exp(log_joint - log_px[:, None])
    nk = gamma.sum(0)
    return log_px.mean(), nk / len(x), (gamma.T @ x + c) / (nk[:, None] + 2 * c)


def run_em(model: BernoulliMixture, x: torch.Tensor, steps: int, **hparams) -> list[dict[str, torch.Tensor]]:
    em = get_method("em")(model, **hparams)
    return [em.step(x) for _ in range(steps)]


def test_log_prob_equals_enumeration_of_the_mixture_formula():
    """log p(x) for all 2^6 images of a random 4-component mixture, two replicas, against
    sum_k pi_k prod_d p_kd^x_d (1 - p_kd)^(1 - x_d) computed as a plain product; the 64
    probabilities sum to 1."""
    model = mixture(6, 4, seeds=[0, 1])
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        model.mixing_logits.copy_(torch.randn(2, 4, generator=gen, dtype=torch.float64))
        model.pixel_logits.copy_(2 * torch.randn(2, 4, 6, generator=gen, dtype=torch.float64))
    images = np.array(list(itertools.product([0.0, 1.0], repeat=6)))
    ours = model.log_prob(replicate(images, 2)).numpy()
    for r in range(2):
        pi = torch.softmax(model.mixing_logits[r], -1).numpy()
        p = torch.sigmoid(model.pixel_logits[r]).numpy()
        brute = np.array([sum(pi[k] * np.prod(p[k] ** x * (1 - p[k]) ** (1 - x)) for k in range(4)) for x in images])
        np.testing.assert_allclose(ours[r], np.log(brute), rtol=0, atol=1e-12)
        assert abs(brute.sum() - 1) < 1e-12


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_one_em_step_equals_a_numpy_em_step(c):
    """The step's returned 'll', the new mixing weights and pixel probabilities of each replica equal
    a hand-written numpy E/M step from the same parameters; 'map_objective' adds the log prior / N."""
    x, _, _ = planted(200, seed=1)
    model = mixture(30, 5, seeds=[3, 4])
    log_pi = torch.log_softmax(model.mixing_logits, -1).numpy().copy()
    p = torch.sigmoid(model.pixel_logits).numpy().copy()
    out = run_em(model, replicate(x, 2), 1, pseudo_count=c)[0]
    for r in range(2):
        ll, pi_new, p_new = numpy_em_step(x, log_pi[r], p[r], c)
        log_prior = c * (np.log(p[r]) + np.log(1 - p[r])).sum()
        assert out["ll"][r].item() == pytest.approx(ll, rel=1e-13)
        assert out["map_objective"][r].item() == pytest.approx(ll + log_prior / len(x), rel=1e-13)
        np.testing.assert_allclose(torch.softmax(model.mixing_logits[r], -1).numpy(), pi_new, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(torch.sigmoid(model.pixel_logits[r]).numpy(), p_new, rtol=1e-12, atol=1e-15)


def _assert_non_decreasing(values: list[float], what: str) -> None:
    v = np.array(values)
    drops = v[:-1] - v[1:]
    assert (drops <= 1e-9 * np.abs(v[:-1])).all(), f"{what} decreased by {drops.max():.3g} at iteration {drops.argmax() + 1}"


@pytest.mark.parametrize("init", ["uniform", "data"])
@pytest.mark.parametrize("c", [1e-10, 0.01, 1.0])
def test_em_objective_never_decreases_on_a_planted_mixture(init, c):
    """EM-1: the MAP objective log p(X) + log prior is non-decreasing at every one of 60 iterations
    (tolerance 1e-9 |value|), three replicas, 6 components for 3 planted; with a negligible prior
    (c = 1e-10) so is the log-likelihood itself."""
    x, _, _ = planted(400, seed=2)
    model = mixture(30, 6, seeds=[0, 1, 2], init=init)
    workload_for("bernoulli_mixture").prepare(model, torch.as_tensor(x))
    outs = run_em(model, replicate(x, 3), 60, pseudo_count=c)
    for r in range(3):
        _assert_non_decreasing([o["map_objective"][r].item() for o in outs], f"replica {r} map_objective")
        if c < 1e-6:
            _assert_non_decreasing([o["ll"][r].item() for o in outs], f"replica {r} ll")


def test_em_objective_never_decreases_on_binarized_mnist(data_dir):
    """EM-1 on real data, where responsibilities are nearly hard: 2000 binarized-MNIST training
    images, 20 components from random training images, 15 iterations, two replicas."""
    x = data.load("binarized_mnist").x["train"][:2000].astype(np.float64)
    model = mixture(784, 20, seeds=[0, 1], init="data")
    workload_for("bernoulli_mixture").prepare(model, torch.as_tensor(x))
    outs = run_em(model, replicate(x, 2), 15)
    for r in range(2):
        _assert_non_decreasing([o["map_objective"][r].item() for o in outs], f"replica {r} map_objective")
    assert outs[-1]["ll"].max() > -200, "20 components should beat the factorised model's -206 nats"


def test_a_seed_alone_equals_the_seed_beside_another():
    """Replica 1 of a [0, 1] model equals seed 1 trained alone: the data initialisation and 10 EM
    steps depend on its own seed only."""
    x, _, _ = planted(300, seed=3)
    xt = torch.as_tensor(x)
    pair, alone = mixture(30, 4, [0, 1], "data"), mixture(30, 4, [1], "data")
    for model in (pair, alone):
        workload_for("bernoulli_mixture").prepare(model, xt)
    assert not torch.equal(pair.pixel_logits[0], pair.pixel_logits[1]), "seeds 0 and 1 should start apart"
    out_pair, out_alone = run_em(pair, replicate(x, 2), 10)[-1], run_em(alone, replicate(x, 1), 10)[-1]
    torch.testing.assert_close(pair.pixel_logits[1], alone.pixel_logits[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(pair.mixing_logits[1], alone.mixing_logits[0], rtol=1e-10, atol=1e-10)
    assert out_pair["ll"][1].item() == pytest.approx(out_alone["ll"][0].item(), rel=1e-12)


def test_data_initialisation_starts_at_distinct_training_images():
    x, _, _ = planted(50, seed=4)
    model = mixture(30, 8, [7], "data")
    workload_for("bernoulli_mixture").prepare(model, torch.as_tensor(x))
    centres = torch.sigmoid(model.pixel_logits[0]).numpy()
    assert np.allclose(np.sort(np.unique(centres.round(12))), [0.25, 0.75])
    rows = [int(np.flatnonzero((x == (c > 0.5)).all(1))[0]) for c in centres]
    assert len(set(rows)) == 8
    with pytest.raises(ValueError, match="at least 8 training examples"):
        mixture(30, 8, [7], "data").init_from_data(torch.as_tensor(x[:5]))


def test_em_recovers_a_planted_mixture():
    """From 4000 images of a known 3-component mixture, the best of 5 replicas (by training
    log-likelihood) recovers pi and p up to a relabelling: |pi - pi*| < 0.03, |p - p*| < 0.05, and its
    training log-likelihood is at least that of the true parameters (it is their maximum-likelihood fit)."""
    x, pi, p = planted(4000, seed=6)
    model = mixture(30, 3, seeds=[0, 1, 2, 3, 4], init="data")
    workload_for("bernoulli_mixture").prepare(model, torch.as_tensor(x))
    outs = run_em(model, replicate(x, 5), 100)
    best = int(outs[-1]["ll"].argmax())
    pi_hat = torch.softmax(model.mixing_logits[best], -1).numpy()
    p_hat = torch.sigmoid(model.pixel_logits[best]).numpy()
    order = min(itertools.permutations(range(3)), key=lambda o: np.abs(p_hat[list(o)] - p).max())
    assert np.abs(pi_hat[list(order)] - pi).max() < 0.03
    assert np.abs(p_hat[list(order)] - p).max() < 0.05
    true_ll, _, _ = numpy_em_step(x, np.log(pi), p, 0.0)
    assert outs[-1]["ll"][best].item() >= true_ll - 1e-6


def test_em_rejects_a_non_positive_pseudo_count():
    with pytest.raises(ConfigError, match="pseudo_count must be > 0"):
        get_method("em")(mixture(5, 2, [0]), pseudo_count=0.0)


# --------------------------------------------------------------------------- workload health
def _rows(split: str, metric: str, values: list[float], steps_per_epoch: int = 1, seed: int = 0) -> pd.DataFrame:
    steps = np.arange(len(values)) * steps_per_epoch
    return pd.DataFrame({"split": split, "metric": metric, "seed": seed, "step": steps,
                         "epoch": np.arange(len(values)), "eval_k": 0, "value": values})


def test_empty_components_counts_components_without_data():
    model = mixture(5, 4, [0, 1])
    with torch.no_grad():
        model.mixing_logits[0, 1] = -torch.inf  # a component that won no example
        model.mixing_logits[1, :2] = torch.tensor([-30.0, -1.0])  # pi ~ 1e-13: empty; pi ~ 0.1: not
    assert empty_components(model).tolist() == [1.0, 1.0]
    assert workload_for("bernoulli_mixture").metrics(model, None, replicate(np.eye(5), 2), 1, None)[
        "empty_components"].tolist() == [1.0, 1.0]


def test_health_flags_a_decreasing_full_batch_objective_and_too_many_empty_components():
    check = decreasing_objective()
    assert check(_rows("train", "map_objective", [-200.0, -150.0, -140.0, -140.0])) == []
    found = check(_rows("train", "map_objective", [-200.0, -150.0, -140.0, -140.5]))
    assert [(f.kind, f.seed) for f in found] == [("degenerate", 0)] and "iteration 3" in found[0].detail
    assert check(_rows("train", "map_objective", [-200.0, -150.0, -140.5], steps_per_epoch=5)) == [], \
        "minibatch EM sees other data at each step: not checked"
    empty = too_many_empty(100)
    assert empty(_rows("test", "empty_components", [0.0, 10.0])) == []
    assert [f.check for f in empty(_rows("test", "empty_components", [0.0, 11.0]))] == ["empty components"]
