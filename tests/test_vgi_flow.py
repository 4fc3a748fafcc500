"""The normalising-flow slice of variational Gibbs inference (bench/models/flow.py,
bench/workloads/flow.py, methods/vgi.py and methods/mean_imputation.py on the ``flow`` family)
against independent references in float64: a zuko MAF held as an affine map is a Gaussian, whose
log-density (torch's MultivariateNormal from the map's matrix), univariate conditionals (from its
precision matrix) and conditional means E[x_m | x_o] are closed forms; the imputation error of
mean imputation is numpy's; and the masked values never reach a loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_blind_to_hidden_values
from torch.distributions import MultivariateNormal

from bench.core.missing import mcar
from bench.engine.methods import get_method
from bench.models.flow import Flow
from bench.workloads import workload_for
from bench.workloads.flow import observed_log_prob
from bench.workloads.imputation import IMPUTATION_RATE, IMPUTATION_SEED
from methods import vgi as vgi_module


def affine_flow(d: int, seed: int, centre: list[float], sd: list[float], coupling: float = 1.0) -> Flow:
    """A one-transform MAF made affine: every hidden unit's bias is so large that its ReLU is the
    identity on the inputs used here, and the log-scale outputs (the odd rows of the last masked
    layer) read nothing, so z = A u + c with A lower-triangular, its off-diagonal scaled by
    `coupling` (the shift rows' weights). Its standardisation is (centre, sd)."""
    model = Flow([d, 8], [seed], transforms=1)
    hyper = model.flows[0].transform.transforms[0].hyper
    with torch.no_grad():
        hyper[0].bias.fill_(50.0)
        hyper[2].bias.fill_(500.0)
        hyper[4].weight[1::2] = 0.0
        hyper[4].weight[0::2] *= coupling
        hyper[4].bias.sub_(hyper(torch.zeros(d, dtype=torch.float64)))  # no shift at u = 0, unit scales
        hyper[4].bias[1::2] = torch.linspace(-0.3, 0.3, d, dtype=torch.float64)  # then log-scales of its own
        model.observed_mean.copy_(torch.tensor([centre], dtype=torch.float64))
        model.observed_sd.copy_(torch.tensor([sd], dtype=torch.float64))
    return model


def affine_map(model: Flow) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, c) with z = A u + c of replica 0's transform, probed at 0 and the unit vectors."""
    transform = model.flows[0].transform()
    d = model.layers[0]
    with torch.no_grad():
        c = transform(torch.zeros(d, dtype=torch.float64))
        a = torch.stack([transform(e) - c for e in torch.eye(d, dtype=torch.float64)], 1)
    return a, c


def gaussian_of(model: Flow) -> tuple[torch.Tensor, torch.Tensor]:
    """The affine flow's (mean, covariance) in data units: u = A^-1 (z - c), z ~ N(0, I), x = m + s u."""
    a, c = affine_map(model)
    s = model.observed_sd[0]
    mean_u = torch.linalg.solve(a, -c)
    cov_u = torch.linalg.inv(a.T @ a)
    return model.observed_mean[0] + s * mean_u, s[:, None] * cov_u * s[None, :]


def test_the_flow_log_density_is_the_change_of_variables_of_its_affine_map():
    model = affine_flow(3, seed=2, centre=[0.2, -0.1, 0.5], sd=[0.5, 2.0, 1.5])
    a, c = affine_map(model)
    u = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.flows[0].transform()(u), u @ a.T + c, rtol=0, atol=1e-10)  # it is affine
        assert (a.triu(1).abs() < 1e-12).all() and (a.tril(-1).abs() > 1e-3).any()  # autoregressive, not diagonal
        mean, cov = gaussian_of(model)
        x = (mean + u @ torch.linalg.cholesky(cov).T).unsqueeze(0)
        exact = MultivariateNormal(mean, covariance_matrix=cov).log_prob(x[0])
        torch.testing.assert_close(model.log_prob(x)[0], exact, rtol=1e-10, atol=1e-10)


def test_replicas_are_independent_flows_seeded_by_their_seed():
    x = torch.randn(1, 6, 4, dtype=torch.float64)
    pair, alone = Flow([4, 8], [0, 3]), Flow([4, 8], [3])
    with torch.no_grad():
        both = pair.log_prob(x.expand(2, -1, -1))
        torch.testing.assert_close(both[1], alone.log_prob(x)[0])
        assert not torch.allclose(both[0], both[1])


def test_vgi_conditionals_reach_the_closed_form_conditionals_of_a_gaussian_flow(monkeypatch):
    """With the flow held fixed (lr = 0) as an affine map, VGI's q(x_j | x_-j) must reach the
    Gaussian's exact conditional N(mu_j - sum_k (P_jk / P_jj)(x_k - mu_k), 1 / P_jj), P = C^-1,
    and its imputation (the average of Gibbs chains of q, here with 10x the metric's draws, so that
    the Monte Carlo error is small) the exact E[x_m | x_o]."""
    d, n = 3, 200
    torch.manual_seed(0)
    model = affine_flow(d, seed=4, centre=[0.3, -0.2, 0.1], sd=[0.8, 1.2, 0.6], coupling=10.0)
    with torch.no_grad():
        mean, cov = (t.numpy() for t in gaussian_of(model))
    x = np.random.default_rng(1).multivariate_normal(mean, cov, size=n)
    holed = torch.as_tensor(np.where(mcar(x.shape, 0.5, seed=2), np.nan, x)).unsqueeze(0)
    vgi = get_method("vgi")(model, lr=0.0, lr_q=0.01, copies=4, hidden=16, delay=50)
    vgi.prepare(n)
    for t in range(700):
        if t == 500:  # annealed, as the paper anneals q's step size
            vgi.opt_q.param_groups[0]["lr"] = 0.001
        vgi.step(holed)
    points = torch.as_tensor(np.random.default_rng(3).multivariate_normal(mean, cov, size=300)).unsqueeze(0)
    precision = np.linalg.inv(cov)
    for j in range(d):
        dims = torch.full((1, 300), j)
        with torch.no_grad():
            q_mean, q_var = vgi.conditional(points, torch.nn.functional.one_hot(dims, d).bool(), dims)
        exact = mean[j] - (points[0].numpy() - mean) @ np.where(np.arange(d) == j, 0.0, precision[j]) / precision[j, j]
        sd = precision[j, j] ** -0.5
        assert np.sqrt(np.mean((q_mean[0].numpy() - exact) ** 2)) < 0.15 * sd
        assert np.median(q_var[0].numpy()) == pytest.approx(sd**2, rel=0.2)
    # its imputation of new points (Gibbs chains of q) against the exact E[x_m | x_o]
    monkeypatch.setattr(vgi_module, "IMPUTE_DRAWS", 10 * vgi_module.IMPUTE_DRAWS)
    fresh = np.random.default_rng(4).multivariate_normal(mean, cov, size=200)
    hidden = mcar(fresh.shape, 0.5, seed=5)
    imputed = vgi.impute(torch.as_tensor(np.where(hidden, np.nan, fresh)).unsqueeze(0))[0].numpy()
    exact = fresh.copy()
    for i, m in enumerate(hidden):
        o = ~m
        exact[i, m] = mean[m] + cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)], fresh[i, o] - mean[o])
    np.testing.assert_array_equal(imputed[~hidden], fresh[~hidden])
    rmse = np.sqrt(np.mean((imputed - exact)[hidden] ** 2))
    assert rmse < 0.1 * np.sqrt(np.diag(cov)).mean()
    ignoring_x_o = np.sqrt(np.mean((np.broadcast_to(mean, exact.shape) - exact)[hidden] ** 2))
    print(f"imputation rmse {rmse:.4f}, ignoring x_o {ignoring_x_o:.4f}")
    assert rmse < 0.25 * ignoring_x_o


def test_masked_values_never_reach_a_loss():
    """Two data sets that differ only at the masked entries give the same step outputs, parameters
    and tuning metric; one that differs at an observed entry does not (the test can fail)."""
    n, d = 30, 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    mask = mcar((n, d), 0.5, seed=1)
    other = np.where(mask, rng.standard_normal((n, d)) * 100, x)
    moved = x.copy()
    moved[np.argwhere(~mask)[0][0], np.argwhere(~mask)[0][1]] += 1.0

    def outputs(complete: np.ndarray, name: str) -> tuple[dict, list, torch.Tensor]:
        torch.manual_seed(0)
        holed = torch.as_tensor(np.where(mask, np.nan, complete)).unsqueeze(0)
        model = Flow([d, 8], [0], transforms=2)
        model.initialize_from_data(holed[0])
        method = get_method(name)(model, **({"delay": 1} if name == "vgi" else {}))
        method.prepare(n)
        steps = [method.step(holed) for _ in range(3)]
        with torch.no_grad():
            metric = observed_log_prob(model, holed, k=10)
        return steps[-1], [p.detach().clone() for p in model.parameters()], metric

    assert_blind_to_hidden_values(outputs, x, other, moved, ("vgi", "mean_imputation"))


def test_imputation_rmse_of_mean_imputation_is_the_error_of_the_observed_means():
    """The flow workload's imputation_rmse with mean imputation, against numpy: the hidden entries
    (the workload's fixed mask) filled by the observed training means."""
    rng = np.random.default_rng(0)
    train = np.where(mcar((50, 4), 0.5, seed=1), np.nan, rng.standard_normal((50, 4)))
    test = rng.standard_normal((40, 4)) * 2 + 1
    model = Flow([4, 8], [0, 1], transforms=1)
    model.initialize_from_data(torch.as_tensor(train))
    method = get_method("mean_imputation")(model)
    got = workload_for("flow").metrics(model, method, torch.as_tensor(test).expand(2, -1, -1), 10, None)
    hidden = mcar(test.shape, IMPUTATION_RATE, IMPUTATION_SEED)
    want = np.sqrt(np.mean((np.broadcast_to(np.nanmean(train, 0), test.shape) - test)[hidden] ** 2))
    torch.testing.assert_close(got["imputation_rmse"], torch.full((2,), want, dtype=torch.float64))
