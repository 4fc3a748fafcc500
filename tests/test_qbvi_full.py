"""Full-covariance Gaussian q for the Bayesian GLMs and QBVI (``covariance: full`` in
bench/models/glm.py, bench/estimators/score_function.py, methods/qbvi.py), against independent
references in float64: torch.distributions' multivariate normal (log-density, KL), scipy's closed-form
evidence of Bayesian linear regression, autograd on the Gaussian's mean parameters (the natural
gradient in its natural parameters), torch.linalg.matrix_exp, and the closed-form posterior N(m, Lambda^-1)."""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from bench.engine import data
from bench.engine.methods import get_method
from bench.estimators.score_function import gaussian_scores
from bench.models import build_model
from bench.nn import noise
from methods.qbvi import exponential_retraction

FULL = {"family": "bayesian_glm", "layers": [4], "likelihood": "linear", "prior_mean": 1.0,
        "prior_variance": 2.0, "noise_sd": 0.5, "covariance": "full"}


def random_precision(r: int, p: int, seed: int) -> torch.Tensor:
    """(r, p, p) symmetric positive definite, strongly correlated, float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(r, p, p, generator=g, dtype=torch.float64)
    return a @ a.mT + 0.5 * torch.eye(p, dtype=torch.float64)


def correlated_rows(n: int, seed: int) -> torch.Tensor:
    """Tiny synthetic linear-regression rows (x1, x2, x3, y) (n, 4), x2 = x1 + 0.2 z (a posterior
    correlation near -0.98 between the first two coefficients), noise sd 0.5; unit tests only."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x[:, 1] = x[:, 0] + 0.2 * x[:, 1]
    y = x @ torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.cat([x, y[:, None]], 1)


def full_model(seeds: list[int], seed: int = 0) -> object:
    model = build_model(FULL, seeds=seeds)
    model.mu.copy_(torch.randn(len(seeds), 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    model.precision.copy_(random_precision(len(seeds), 3, seed))
    return model


def test_full_q_kl_to_prior_and_draws_match_torch_distributions():
    model = full_model([0, 1])
    q = MultivariateNormal(model.mu, precision_matrix=model.precision)
    prior = MultivariateNormal(torch.ones(3, dtype=torch.float64), 2.0 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(model.kl_to_prior(), kl_divergence(q, prior))
    torch.testing.assert_close(model.covariance(), q.covariance_matrix)
    with noise.replica_noise([0, 1], "cpu"):
        theta = model.sample(200_000)
    e = theta - model.mu[:, None]
    empirical = e.mT @ e / theta.shape[1]
    sd = q.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
    # entrywise sd of the empirical covariance <= sd_i sd_j sqrt(2 / n) ~ 0.0032 sd_i sd_j
    assert ((empirical - q.covariance_matrix).abs() < 0.02 * sd[..., :, None] * sd[..., None, :]).all()


def test_full_q_elbo_plus_kl_to_the_posterior_is_the_closed_form_evidence():
    """log p(y | X) = ELBO(q) + KL(q || posterior) for any full q; scipy's log N(y; X mu_0,
    sigma^2 I + X S_0 X^T) is independent of the model's posterior and expectations."""
    x = correlated_rows(40, seed=5)
    model = full_model([0, 1, 2], seed=3)
    model.fit_posterior(x)
    features, y = x[:, :3].numpy(), x[:, 3].numpy()
    evidence = scipy.stats.multivariate_normal(features @ np.ones(3), 0.25 * np.eye(40) + 2.0 * features @ features.T).logpdf(y)
    elbo = model.expected_log_likelihood(x.expand(3, -1, -1), k=1) - model.kl_to_prior()
    torch.testing.assert_close(elbo + model.kl_to_posterior(), torch.full((3,), evidence, dtype=torch.float64))
    model.mu.copy_(model.posterior_mean.expand(3, -1))
    model.precision.copy_(model.posterior_precision.expand(3, -1, -1))
    torch.testing.assert_close(model.kl_to_posterior(), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)


def test_full_gaussian_scores_match_autograd_of_the_log_density():
    """d log N(theta; mu, Sigma) / d mu and / d Sigma (Sigma symmetric: the gradient of its symmetric
    part) by autograd through torch.distributions, per draw."""
    model = full_model([0])
    theta = torch.randn(1, 4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mu = model.mu[0].clone().requires_grad_()
    sigma = model.covariance()[0].clone().requires_grad_()
    score_mu, score_cov = gaussian_scores(theta, model.mu, model.precision)
    for s in range(4):
        log_q = MultivariateNormal(mu, covariance_matrix=0.5 * (sigma + sigma.T)).log_prob(theta[0, s])
        d_mu, d_sigma = torch.autograd.grad(log_q, [mu, sigma])
        torch.testing.assert_close(score_mu[0, s], d_mu)
        torch.testing.assert_close(score_cov[0, s], d_sigma)


def test_full_qbvi_step_is_the_natural_gradient_step_by_autograd_on_the_mean_parameters():
    """For fixed draws theta_s, the surrogate L(m1, M2) = mean_s f(theta_s) log q(theta_s) - KL(q || prior),
    q = N(m1, M2 - m1 m1^T), has gradients in the mean parameters (m1, M2) equal to the natural
    gradient in the natural parameters (Sigma^-1 mu, -Sigma^-1 / 2). The step (first step: c = 0,
    no momentum; clipping off) must then give P' = L expm((lr / xi) L^-1 G L^-T) L^T with G = -2 dL/dM2
    (torch.linalg.matrix_exp) and mu' = mu + lr P'^-1 (dL/dm1 + 2 dL/dM2 mu)."""
    x = correlated_rows(20, seed=2)
    model = full_model([0], seed=4)
    mu, precision = model.mu[0].clone(), model.precision[0].clone()
    with noise.replica_noise([0], "cpu"):
        theta = model.sample(10)[0]
    f = model.log_likelihood(theta[None], x[None])[0]
    m1 = mu.clone().requires_grad_()
    m2 = (torch.linalg.inv(precision) + torch.outer(mu, mu)).requires_grad_()
    q = MultivariateNormal(m1, covariance_matrix=0.5 * (m2 + m2.T) - torch.outer(m1, m1))
    prior = MultivariateNormal(torch.ones(3, dtype=torch.float64), 2.0 * torch.eye(3, dtype=torch.float64))
    surrogate = (f * q.log_prob(theta)).mean() - kl_divergence(q, prior)
    d_m1, d_m2 = torch.autograd.grad(surrogate, [m1, m2])

    lr, xi = 0.02, 2.0
    step = get_method("qbvi")(model, lr=lr, xi=xi, samples=10, estimate_clip_first=0.0, ng_clip_first=0.0)
    with noise.replica_noise([0], "cpu"):
        step.step(x[None])
    chol = torch.linalg.cholesky(precision)
    inv_chol = torch.linalg.inv(chol)
    expected_p = chol @ torch.linalg.matrix_exp(lr / xi * inv_chol @ (-2 * d_m2) @ inv_chol.T) @ chol.T
    expected_mu = mu + lr * torch.linalg.solve(expected_p, d_m1 + 2 * d_m2 @ mu)
    torch.testing.assert_close(model.precision[0], expected_p)
    torch.testing.assert_close(model.mu[0], expected_mu)


def test_exponential_retraction_is_the_diagonal_code_on_diagonals_first_order_and_positive_definite():
    p = torch.tensor([[2.0, 5.0, 0.5]], dtype=torch.float64)
    d = torch.tensor([[-3.0, 1.0, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(exponential_retraction(torch.diag_embed(p), 0.7, torch.diag_embed(d)),
                               torch.diag_embed(p * torch.exp(0.7 * d / p)))
    precision = random_precision(2, 4, seed=6)
    direction = random_precision(2, 4, seed=7) - 3 * random_precision(2, 4, seed=8)  # symmetric, indefinite
    t = 1e-6
    torch.testing.assert_close((exponential_retraction(precision, t, direction) - precision) / t, direction,
                               rtol=1e-4, atol=1e-4)
    for step in (0.3, 1.0):  # the additive P + step D is indefinite for both replicas; the retraction is not
        moved = exponential_retraction(precision, step, direction)
        assert (torch.linalg.eigvalsh(precision + step * direction).amin(-1) < 0).all()
        assert (torch.linalg.eigvalsh(moved) > 0).all() and torch.equal(moved, moved.mT)
        assert (torch.linalg.cholesky_ex(moved).info == 0).all()


def test_full_qbvi_fixed_point_is_the_exact_posterior():
    """Known noise: the exact posterior N(m, Lambda^-1) is in the full Gaussian family, so it is
    QBVI's fixed point. On strongly correlated covariates (posterior correlation ~ -0.98: the best
    diagonal q is 1.6 nats from the posterior), 3 seeds, S = 100 draws, lr 0.05 then 0.01 and the
    iterates of the last 1000 of 2500 steps averaged: the mean within 0.1 posterior sd per
    coefficient, the whitened precision Lambda^-1/2 P Lambda^-1/2 within 0.1 of I in spectral
    norm, and the averaged q within 0.01 nats of the posterior (KL)."""
    x = correlated_rows(60, seed=0)
    seeds = [0, 1, 2]
    model = build_model(FULL, seeds=seeds)
    model.fit_posterior(x)
    lam, m = model.posterior_precision, model.posterior_mean
    floor = 0.5 * (torch.log(torch.diagonal(lam)).sum() - torch.logdet(lam))
    assert floor > 1.0
    mus, precisions = [], []
    with noise.replica_noise(seeds, "cpu"):
        step = get_method("qbvi")(model, lr=0.05, samples=100)
        for t in range(2500):
            step.lr = 0.05 if t < 1000 else 0.01
            step.step(x.expand(3, -1, -1))
            if t >= 1500:
                mus.append(model.mu.clone()), precisions.append(model.precision.clone())
    mu, precision = torch.stack(mus).mean(0), torch.stack(precisions).mean(0)
    sd = torch.linalg.inv(lam).diagonal().sqrt()
    assert ((mu - m).abs() < 0.1 * sd).all(), ((mu - m) / sd)
    w = torch.linalg.inv(torch.linalg.cholesky(lam))
    whitened = w @ precision @ w.T - torch.eye(3, dtype=torch.float64)
    assert (torch.linalg.matrix_norm(whitened, ord=2) < 0.1).all(), whitened
    model.mu.copy_(mu), model.precision.copy_(precision)
    assert (model.kl_to_posterior() < 0.01).all(), model.kl_to_posterior()


def test_full_precision_stays_positive_definite_over_a_long_run_with_large_steps():
    """2000 steps of full QBVI on the paper's logistic regression at 2.5x its step size (lr 0.2; at
    5x one replica's step overflows float64 near step 600 and that replica reads NaN, the next
    test): every iterate's precision is symmetric with a Cholesky factor and positive eigenvalues."""
    x = torch.as_tensor(data.load("glm_logistic").x["train"]).expand(2, -1, -1)
    config = {"family": "bayesian_glm", "layers": [4], "likelihood": "logistic", "intercept": True,
              "prior_mean": 1.0, "prior_variance": 5.0, "covariance": "full"}
    model = build_model(config, seeds=[0, 1])
    smallest = []
    with noise.replica_noise([0, 1], "cpu"):
        step = get_method("qbvi")(model, lr=0.2, xi=4.0)
        for _ in range(2000):
            assert torch.isfinite(step.step(x)["batch_elbo"]).all()
            assert torch.equal(model.precision, model.precision.mT)
            assert (torch.linalg.cholesky_ex(model.precision).info == 0).all()
            smallest.append(torch.linalg.eigvalsh(model.precision).amin())
    assert min(smallest) > 0


def test_a_step_beyond_float64_marks_only_that_replica_diverged():
    """exp(-step * 2000 / 2) underflows to 0: replica 0's precision is NaN (its run reads diverged), replica 1's
    is the exact update, and nothing raises."""
    precision = torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    direction = torch.stack([torch.diag(torch.tensor([-2000.0, 1.0], dtype=torch.float64)),
                             torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64))])
    moved = exponential_retraction(precision, 1.0, direction)
    assert torch.isnan(moved[0]).all()
    torch.testing.assert_close(moved[1], torch.diag(torch.exp(torch.tensor([-1.0, 1.0], dtype=torch.float64))))
    assert torch.isnan(exponential_retraction(moved, 0.1, direction)[0]).all()



def test_full_bbvi_gradient_is_autograd_of_the_score_function_surrogate_in_the_cholesky_factor():
    """For fixed draws theta_s, BBVI's first step (c = 0) ascends the gradient of mean_s f(theta_s)
    log q(theta_s) - KL(q || prior) in (mu, the factor: C's strictly lower entries and log-diagonal),
    q = N(mu, C C^T) by torch.distributions (scale_tril); the method leaves minus that gradient in .grad."""
    x = correlated_rows(20, seed=2)
    model = full_model([0], seed=4)
    with noise.replica_noise([0], "cpu"):
        theta = model.sample(10)[0]
    f = model.log_likelihood(theta[None], x[None])[0]
    step = get_method("bbvi")(model, samples=10)
    mu = model.mu[0].clone().requires_grad_()
    factor = step.factor[0].clone().requires_grad_()
    c = factor.tril(-1) + torch.diag(factor.diagonal().exp())
    torch.testing.assert_close(c @ c.T, model.covariance()[0])
    q = MultivariateNormal(mu, scale_tril=c)
    prior = MultivariateNormal(torch.ones(3, dtype=torch.float64), 2.0 * torch.eye(3, dtype=torch.float64))
    d_mu, d_factor = torch.autograd.grad((f * q.log_prob(theta)).mean() - kl_divergence(q, prior), [mu, factor])
    with noise.replica_noise([0], "cpu"):
        step.step(x[None])
    torch.testing.assert_close(-model.mu.grad[0], d_mu)
    torch.testing.assert_close(-step.factor.grad[0], d_factor.tril())
    c = step.factor[0].tril(-1) + torch.diag(step.factor[0].diagonal().exp())
    torch.testing.assert_close(model.precision[0], torch.linalg.inv(c @ c.T))


def test_full_bbvi_approaches_the_exact_correlated_posterior():
    """Adam on the Cholesky factor, S = 100, lr 0.01, 3000 steps, iterates of the last 1000
    averaged, on the correlated rows of the QBVI test: KL(q || posterior) below 0.1 nats, far below
    the 1.6 nats of the best diagonal q (BBVI's Adam noise floor is wider than QBVI's)."""
    x = correlated_rows(60, seed=0)
    seeds = [0, 1, 2]
    model = build_model(FULL, seeds=seeds)
    model.fit_posterior(x)
    mus, precisions = [], []
    with noise.replica_noise(seeds, "cpu"):
        step = get_method("bbvi")(model, lr=0.01, samples=100)
        for t in range(3000):
            step.step(x.expand(3, -1, -1))
            if t >= 2000:
                mus.append(model.mu.clone()), precisions.append(model.precision.clone())
    model.mu.copy_(torch.stack(mus).mean(0)), model.precision.copy_(torch.stack(precisions).mean(0))
    assert (model.kl_to_posterior() < 0.1).all(), model.kl_to_posterior()
