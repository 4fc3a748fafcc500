"""The NUTS reference posterior (bench/estimators/nuts.py) and the mlp workload's distances of a
Bayesian method's predictive to it (bench/workloads/predictive.py, mlp.py).

Independent references: the closed-form Gaussian posterior of Bayesian linear regression (NUTS
recovers its mean and covariance), the MLP's own forward pass and loss (the softmax-regression
potential and logits use its parameter layout), scipy's relative entropy (the KL), and NUTS against
itself (two chains' predictives agree far better than any approximation's on real MNIST pixels).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import rel_entr

from bench.engine.data import load, pool
from bench.estimators import nuts
from bench.models.mlp import MLP
from bench.nn import noise
from bench.workloads import workload_for
from bench.workloads.predictive import reference_distances
from methods.bayes_by_backprop import BayesByBackprop
from methods.deep_ensemble import DeepEnsemble
from methods.mc_dropout import MCDropout
from methods.sgld import SGLD


def test_nuts_recovers_the_closed_form_linear_regression_posterior():
    """y = X w + N(0, s^2), w ~ N(0, I): the posterior is N(m, S), S = (X^T X / s^2 + I)^-1,
    m = S X^T y / s^2 (Bishop 2006, eq. 3.53-3.54). NUTS's mean lies within 5 Monte Carlo standard
    errors (posterior sd / sqrt(bulk ESS)) of m in every coordinate, its covariance within 20% of S
    (Frobenius, relative), and its chains agree (R-hat < 1.05)."""
    g = torch.Generator().manual_seed(3)
    n, d, s = 40, 3, 0.5
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64) + s * torch.randn(n, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(x.T @ x / s**2 + torch.eye(d, dtype=torch.float64))
    mean = cov @ x.T @ y / s**2

    def potential(w: torch.Tensor) -> torch.Tensor:
        return (y - x @ w).square().sum() / (2 * s**2) + w.square().sum() / 2

    post = nuts.sample(potential, d, nuts.Settings(warmup=200, samples=600, chains=2, max_tree_depth=4))
    draws = post.flat
    assert post.samples.shape == (2, 600, d) and post.samples.dtype == torch.float64
    assert post.rhat < nuts.RHAT_LIMIT and post.ess > 200
    mcse = cov.diagonal().sqrt() / math.sqrt(post.ess)
    assert ((draws.mean(0) - mean).abs() < 5 * mcse).all()
    assert torch.linalg.norm(torch.cov(draws.T) - cov) < 0.2 * torch.linalg.norm(cov)


def test_softmax_regression_potential_and_logits_use_the_mlp_layout():
    """theta = (W row-major, b) of a one-layer categorical MLP: the logits are the MLP's outputs and
    U(theta) is its summed NLL plus ||theta||^2 / (2 sigma^2)."""
    model = MLP([5, 3], [0], loss="categorical", init="kaiming").double()
    with torch.no_grad():
        model.biases[0].normal_()
    x = torch.rand(1, 12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12).remainder(3).unsqueeze(0)
    theta = torch.cat([p[0].flatten() for _, p in model.named_parameters()])
    torch.testing.assert_close(nuts.softmax_regression_logits(theta.unsqueeze(0), x[0], 3), model(x))
    expected = model.nll(model(x), model.target(x, y)).sum() + theta.square().sum() / (2 * 0.7**2)
    torch.testing.assert_close(nuts.softmax_regression_potential(x[0], y[0], 3, 0.7)(theta), expected)


def test_reference_distances_match_scipy():
    """KL(p_ref || mean_s p_s) (scipy's rel_entr) and total variation per replica; 0 for the reference itself."""
    g = torch.Generator().manual_seed(2)
    log_p = torch.log_softmax(torch.randn(4, 2, 6, 3, generator=g, dtype=torch.float64), -1)
    log_ref = torch.log_softmax(torch.randn(6, 3, generator=g, dtype=torch.float64), -1)
    out = reference_distances(log_p, log_ref)
    mean = log_p.exp().mean(0).numpy()
    ref = log_ref.exp().numpy()
    np.testing.assert_allclose(out["kl_to_reference"].numpy(), rel_entr(ref, mean).sum(-1).mean(-1), rtol=1e-12)
    np.testing.assert_allclose(out["tv_to_reference"].numpy(), 0.5 * np.abs(ref - mean).sum(-1).mean(-1), rtol=1e-12)
    same = reference_distances(log_ref.expand(2, 1, 6, 3), log_ref)
    assert same["kl_to_reference"].abs().max() < 1e-12 and same["tv_to_reference"].abs().max() < 1e-12


def test_cached_posterior_is_computed_once(tmp_path, monkeypatch):
    x = torch.rand(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0.5).long()
    settings = nuts.Settings(warmup=20, samples=10, chains=2, max_tree_depth=3)
    first = nuts.cached_posterior(x, y, 2, 1.0, tmp_path, settings)
    assert len(list(tmp_path.glob("nuts-softmax-*.pt"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached posterior")

    monkeypatch.setattr(nuts, "sample", refuse)
    again = nuts.cached_posterior(x, y, 2, 1.0, tmp_path, settings)
    torch.testing.assert_close(again.samples, first.samples)
    assert (again.rhat, again.ess) == (first.rhat, first.ess)
    with pytest.raises(AssertionError, match="recomputed"):  # other data: another key
        nuts.cached_posterior(x, 1 - y, 2, 1.0, tmp_path, settings)


@pytest.mark.parametrize("kwargs", [{"layers": [4, 3, 2]}, {"layers": [4, 2], "loss": "bernoulli"},
                                    {"layers": [4, 2], "reference": "hmc"}])
def test_mlp_refuses_a_reference_it_cannot_have(kwargs):
    config = {"loss": "categorical", "reference": "nuts", **kwargs}
    with pytest.raises(ValueError, match="reference"):
        MLP(seeds=[0], **config)


def test_nuts_is_closer_to_itself_than_any_approximation(data_dir, tmp_path, monkeypatch):
    """Softmax regression of 120 MNIST images pooled to 4x4 pixels: the two NUTS chains' predictives
    on 200 test images differ (mean KL) by far less than any briefly trained approximation's
    (Bayes by backprop, MC dropout, a deep ensemble, SGLD) differs from NUTS's; every distance is
    finite. The ranking of the approximations is left to the claim bnn-nuts-predictive-ordering."""
    ds = load("mnist")
    x_train = torch.as_tensor(pool(ds.x["train"][:120] / 255.0, ds.image_shape, 7), dtype=torch.float32)
    y_train = torch.as_tensor(ds.y["train"][:120].astype(np.int64))
    x_test = torch.as_tensor(pool(ds.x["test"][:200] / 255.0, ds.image_shape, 7), dtype=torch.float32)
    y_test = torch.as_tensor(ds.y["test"][:200].astype(np.int64))
    settings = nuts.Settings()  # the reference budget (300 + 300 per chain); 200 + 200 gave R-hat 1.058
    monkeypatch.setattr("bench.workloads.mlp.REFERENCES", tmp_path)
    monkeypatch.setattr("bench.workloads.mlp.REFERENCE_SETTINGS", settings)
    post = nuts.cached_posterior(x_train, y_train, 10, 1.0, tmp_path, settings)  # the workload reads it back
    assert post.rhat < nuts.RHAT_LIMIT
    chains = [torch.log_softmax(nuts.softmax_regression_logits(c, x_test, 10), -1) for c in post.samples]
    chain_predictive = torch.logsumexp(chains[1], 0) - math.log(chains[1].shape[0])
    between = float(reference_distances(chains[0].unsqueeze(1), chain_predictive)["kl_to_reference"])
    methods = {BayesByBackprop: {"lr": 3e-2}, MCDropout: {"lr": 3e-2, "p": 0.1, "drop_input": True},
               DeepEnsemble: {"lr": 3e-2, "members": 3},
               SGLD: {"lr": 3e-3, "prior_std": 1.0, "burn_in": 150, "thinning": 3, "samples": 50}}
    seeds = [0, 1]
    workload = workload_for("mlp")
    xb, yb = x_train.expand(2, -1, -1), y_train.expand(2, -1)
    distances = {}
    with noise.replica_noise(seeds, torch.device("cpu")):
        for cls, hparams in methods.items():
            model = MLP([16, 10], seeds, loss="categorical", init="kaiming", reference="nuts")
            workload.prepare(model, x_train, y_train)
            method = cls(model, **hparams)
            method.prepare(120, y_train.unique())
            for step in range(300):
                batch = slice(step % 4 * 30, step % 4 * 30 + 30)
                method.step(xb[:, batch], yb[:, batch])
            out = workload.evaluate(model, method, x_test.expand(2, -1, -1), 50, y_test.expand(2, -1))
            assert torch.isfinite(out["kl_to_reference"]).all() and torch.isfinite(out["tv_to_reference"]).all()
            assert (out["reference_rhat"] == post.rhat).all()
            distances[cls.name] = float(out["kl_to_reference"].min())
    assert between < 0.25 * min(distances.values()), (between, distances)


def test_the_reference_travels_in_a_checkpoint(tmp_path, monkeypatch):
    """The loop's checkpoint pickles model and method whole and a resumed run evaluates the
    unpickled model: its reference distances must still be there, equal to the uninterrupted ones."""
    monkeypatch.setattr("bench.workloads.mlp.REFERENCES", tmp_path)
    monkeypatch.setattr("bench.workloads.mlp.REFERENCE_SETTINGS", nuts.Settings(warmup=20, samples=10, max_tree_depth=3))
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(30, 4, generator=g), torch.randint(3, (30,), generator=g)
    model = MLP([4, 3], [0], loss="categorical", init="kaiming", reference="nuts")
    workload = workload_for("mlp")
    workload.prepare(model, x, y)
    method = DeepEnsemble(model, members=2)
    xs, ys = x.unsqueeze(0), y.unsqueeze(0)
    before = workload.evaluate(model, method, xs, 1, ys)
    torch.save({"model": model, "method": method}, tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    after = workload.evaluate(state["model"], state["method"], xs, 1, ys)
    for name in ("kl_to_reference", "tv_to_reference", "reference_rhat", "reference_ess"):
        torch.testing.assert_close(after[name], before[name])
