"""Bayesian GLMs, QBVI and BBVI (bench/models/glm.py, bench/workloads/glm.py,
bench/estimators/score_function.py, methods/qbvi.py, methods/bbvi.py), against independent
references in float64: the marginal likelihood of Bayesian linear regression in closed form
(scipy), torch.distributions' Gaussian KL, autograd of the exact expected log-likelihood, and the
closed-form posterior (the mean-field optimum of a Gaussian posterior: mean m, variances 1 / Lambda_ii)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from bench.engine import data
from bench.engine.methods import get_method
from bench.estimators.score_function import control_variate, gaussian_scores, score_function_gradient
from bench.models import build_model
from bench.nn import noise
from bench.workloads import workload_for

LINEAR = {"family": "bayesian_glm", "layers": [4], "likelihood": "linear", "prior_mean": 1.0,
          "prior_variance": 1.0, "noise_sd": 0.5}


def rows(n: int, p: int, seed: int, likelihood: str = "linear") -> torch.Tensor:
    """Tiny synthetic rows (x, y) (n, p + 1), float64, for the unit tests only."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    eta = x @ torch.linspace(-1, 1, p, dtype=torch.float64)
    y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(eta)).double() if likelihood == "logistic" \
        else eta + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.cat([x, y[:, None]], 1)


@pytest.mark.parametrize("name", ["glm_logistic", "glm_linear"])
def test_paper_recipes_are_deterministic_with_the_stated_shapes(name):
    a, b = data.load(name), data.load(name)
    assert data.get_spec(name).generate is not None and "paper's own recipe" in data.get_spec(name).description
    for split in ("train", "test"):
        assert a.x[split].shape == (1000, 4) and a.x[split].dtype == np.float32
        np.testing.assert_array_equal(a.x[split], b.x[split])
    assert not np.array_equal(a.x["train"], a.x["test"])


def test_logistic_recipe_covariates_uniform_and_labels_binary():
    x = data.load("glm_logistic").x["train"].astype(np.float64)
    assert x[:, :3].min() >= 0 and x[:, :3].max() <= 1 and set(np.unique(x[:, 3])) == {0.0, 1.0}


def test_linear_recipe_ordinary_least_squares_recovers_the_stated_coefficients():
    x = data.load("glm_linear").x["train"].astype(np.float64)
    beta, *_ = np.linalg.lstsq(x[:, :3], x[:, 3], rcond=None)
    residual_sd = np.std(x[:, 3] - x[:, :3] @ beta, ddof=3)
    np.testing.assert_allclose(beta, [0.3, -1.0, 2.0], atol=0.05)  # OLS sd ~ 0.5 / sqrt(1000) = 0.016
    assert abs(residual_sd - 0.5) < 0.03


def test_kl_to_prior_matches_torch_distributions():
    model = build_model({**LINEAR, "prior_variance": 2.0}, seeds=[0, 1])
    model.mu.copy_(torch.tensor([[0.3, -1.0, 2.0], [1.0, 1.5, -0.2]], dtype=torch.float64))
    model.precision.copy_(torch.tensor([[4.0, 0.5, 9.0], [1.0, 2.0, 3.0]], dtype=torch.float64))
    q = torch.distributions.Normal(model.mu, model.precision.rsqrt())
    prior = torch.distributions.Normal(torch.ones(3, dtype=torch.float64), torch.full((3,), 2.0 ** 0.5, dtype=torch.float64))
    torch.testing.assert_close(model.kl_to_prior(), torch.distributions.kl_divergence(q, prior).sum(-1))


def test_linear_elbo_plus_kl_to_the_posterior_is_the_closed_form_evidence():
    """log p(y | X) = ELBO(q) + KL(q || posterior) for any q; log p(y | X) = log N(y; X mu_0,
    sigma^2 I + X S_0 X^T) by scipy, independent of the model's posterior and expectations."""
    x = rows(40, 3, seed=5)
    model = build_model(LINEAR, seeds=[0, 1, 2])
    model.mu.copy_(torch.randn(3, 3, dtype=torch.float64))
    model.precision.copy_(torch.rand(3, 3, dtype=torch.float64) * 10 + 0.1)
    model.fit_posterior(x)
    features, y = x[:, :3].numpy(), x[:, 3].numpy()
    evidence = scipy.stats.multivariate_normal(features @ np.ones(3), 0.25 * np.eye(40) + features @ features.T).logpdf(y)
    elbo = model.expected_log_likelihood(x.expand(3, -1, -1), k=1) - model.kl_to_prior()
    torch.testing.assert_close(elbo + model.kl_to_posterior(), torch.full((3,), evidence, dtype=torch.float64))


def test_workload_metrics_of_the_linear_model_are_exact_and_zero_at_the_posterior_mean():
    x = rows(30, 3, seed=2)
    model = build_model(LINEAR, seeds=[0])
    workload = workload_for("bayesian_glm")
    workload.prepare(model, x)
    model.mu.copy_(model.posterior_mean[None])
    model.precision.copy_(torch.diagonal(model.posterior_precision)[None])
    out = workload.metrics(model, None, x[None], k=1, y=None)
    lam = model.posterior_precision
    floor = 0.5 * (torch.log(torch.diagonal(lam)).sum() - torch.logdet(lam))  # KL of the mean-field optimum
    assert float(out["mean_error"]) == 0.0
    torch.testing.assert_close(out["kl_posterior"], floor[None])
    assert set(workload.exact_metrics(LINEAR)) == {"elbo", "kl_posterior", "mean_error"}


def test_logistic_expected_log_likelihood_matches_gauss_hermite_quadrature():
    """The workload's Monte Carlo E_q log p(y | x, theta) (K = 100k draws) vs 1-D Gauss-Hermite
    quadrature per example (eta = x^T theta ~ N(x^T mu, sum_j x_j^2 / p_j) under q), within 4
    standard errors."""
    torch.manual_seed(0)
    x = rows(20, 2, seed=3, likelihood="logistic")
    model = build_model({"family": "bayesian_glm", "layers": [3], "likelihood": "logistic", "intercept": True},
                        seeds=[0])
    model.mu.copy_(torch.tensor([[0.3, -0.5, 1.0]], dtype=torch.float64))
    model.precision.copy_(torch.tensor([[4.0, 1.0, 2.0]], dtype=torch.float64))
    features, y = (a.numpy() for a in model.design(x))
    mean, sd = features @ model.mu[0].numpy(), np.sqrt(features ** 2 @ (1 / model.precision[0].numpy()))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # probabilists' Hermite: weight e^(-z^2 / 2)
    eta = mean[:, None] + sd[:, None] * nodes[None]
    quadrature = ((y[:, None] * eta - np.logaddexp(0, eta)) @ weights / np.sqrt(2 * np.pi)).sum()
    draws = model.log_likelihood(model.sample(100_000), x[None])[0]
    assert abs(float(model.expected_log_likelihood(x[None], k=100_000)) - quadrature) < 4 * float(draws.std()) / 100_000 ** 0.5


@pytest.mark.parametrize("method,covariance", [("qbvi", "diagonal"), ("bbvi", "diagonal"), ("qbvi", "full"), ("bbvi", "full")])
def test_a_seed_trained_alone_matches_it_trained_beside_others(method, covariance):
    """Replicas never mix: seed 3's parameters after 30 steps are the same alone and among seeds 0-4."""
    x = torch.as_tensor(data.load("glm_logistic").x["train"])
    config = {"family": "bayesian_glm", "layers": [4], "likelihood": "logistic", "intercept": True,
              "covariance": covariance}
    out = []
    for seeds in ([3], [0, 1, 2, 3, 4]):
        model = build_model(config, seeds=seeds)
        with noise.replica_noise(seeds, "cpu"):
            update = get_method(method)(model)
            for _ in range(30):
                update.step(x.expand(len(seeds), -1, -1))
        out.append(torch.cat([model.mu, model.precision.flatten(1)], -1)[seeds.index(3)])
    torch.testing.assert_close(out[0], out[1])


@pytest.mark.parametrize("with_control_variate", [False, True])
def test_score_function_gradient_is_unbiased_against_autograd_of_the_exact_expectation(with_control_variate):
    """Mean of the estimator over 400k draws vs autograd of the closed-form
    E_q sum_n log N(y_n; x_n^T theta, sigma^2) = sum_n -log(2 pi sigma^2) / 2 - ((y_n - x_n^T mu)^2
    + sum_j x_nj^2 v_j) / (2 sigma^2), in mu and in the variance v, within 4 standard errors; the
    control variate is estimated on independent draws (as the methods do, from the previous step)."""
    torch.manual_seed(0)
    x = rows(5, 2, seed=1)
    features, y = x[:, :2], x[:, 2]
    mu = torch.tensor([0.2, -0.4], dtype=torch.float64, requires_grad=True)
    variance = torch.tensor([0.5, 0.2], dtype=torch.float64, requires_grad=True)
    exact = (-0.5 * np.log(2 * np.pi * 0.25) - ((y - features @ mu) ** 2 + features ** 2 @ variance) / 0.5).sum()
    reference = torch.cat(torch.autograd.grad(exact, [mu, variance]))
    model = build_model({**LINEAR, "layers": [3]}, seeds=[0])
    model.mu.copy_(mu.detach()[None])
    model.precision.copy_(1 / variance.detach()[None])
    c = None
    if with_control_variate:
        theta = model.sample(1000)
        c = control_variate(model.log_likelihood(theta, x[None]), torch.cat(gaussian_scores(theta, model.mu, model.precision), -1))
    n = 400_000
    theta = model.sample(n)
    f = model.log_likelihood(theta, x[None])
    scores = torch.cat(gaussian_scores(theta, model.mu, model.precision), -1)
    per_draw = scores * (f[..., None] - (0 if c is None else c[:, None]))
    estimate, se = per_draw.mean(1)[0], per_draw.std(1)[0] / n ** 0.5
    torch.testing.assert_close(score_function_gradient(f, scores, c)[0], estimate)
    assert ((estimate - reference).abs() < 4 * se).all(), (estimate, reference, se)


def train(method: str, hparams: dict, steps: int, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor, object]:
    """(mu, precision) averaged over the last quarter of `steps` full-batch steps on glm_linear's
    training rows, per seed, and the model."""
    x = torch.as_tensor(data.load("glm_linear").x["train"])
    model = build_model(LINEAR, seeds=seeds)
    workload_for("bayesian_glm").prepare(model, x)
    mus, precisions = [], []
    with noise.replica_noise(seeds, "cpu"):
        step = get_method(method)(model, **hparams)
        for t in range(steps):
            out = step.step(x.expand(len(seeds), -1, -1))
            assert torch.isfinite(out["batch_elbo"]).all()
            if t >= 3 * steps // 4:
                mus.append(model.mu.clone()), precisions.append(model.precision.clone())
    return torch.stack(mus).mean(0), torch.stack(precisions).mean(0), model


@pytest.mark.parametrize("method,hparams", [("qbvi", {"lr": 0.05}), ("bbvi", {"lr": 0.05})])
def test_recovers_the_mean_field_optimum_of_bayesian_linear_regression(method, hparams):
    """Known noise: the exact posterior is N(m, Lambda^-1) and the best diagonal q has mean m and
    variances 1 / Lambda_ii. Tolerances: means within 0.25 posterior sd (sd ~ 0.016 here),
    precisions within 25% (QBVI; BBVI's Adam noise floor: within a factor 2.5 of 1 / Lambda_ii)."""
    mu, precision, model = train(method, hparams, steps=800 if method == "qbvi" else 1600, seeds=[0, 1, 2])
    optimum = torch.diagonal(model.posterior_precision)
    sd = optimum.rsqrt()
    assert ((mu - model.posterior_mean).abs() < 0.25 * sd).all(), (mu, model.posterior_mean)
    ratio = precision / optimum
    low, high = (0.75, 1.25) if method == "qbvi" else (0.4, 1.25)
    assert ((ratio > low) & (ratio < high)).all(), ratio
