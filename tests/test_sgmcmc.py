"""SGLD and structured SGLD (methods/sgld.py, methods/structured_sgld.py, bench/nn/langevin.py) and
their metrics (bench/workloads/posterior.py, bench/estimators/mixing.py) against closed forms, in
float64.

* SGLD on Bayesian linear regression samples the closed-form posterior: a linear mlp [D, D] with the
  unit-variance Gaussian loss and no bias (the mlp family's Gaussian output reconstructs its input,
  so each output row i is a regression of x_i on x), full batch, so U is the exact negative log
  joint; each row's posterior is N(Lambda^-1 X^T x_i, Lambda^-1), Lambda = X^T X + I / prior_std^2:
  mean within 0.1 posterior sd, covariance within 10% (relative Frobenius error), with 128 chains of
  10000 steps at lr Lambda_max = 0.016 (SGLD's discretisation inflates a variance by
  1 / (1 - lr lambda / 2), under 1%).
* Structured SGLD with one group per weight (K = d = D^2) on the same correlated Gaussian, started
  at the MAP by its deterministic steps (as the paper's chains), samples the mean-field solution:
  the posterior mean, and marginal variances 1 / Lambda_ii (within 10%), not the posterior's
  Sigma_ii (1.49 times larger here): the block mean-field bias of the paper. (From a
  start far from the mean, the means converge slowly: each group follows the others' lagged
  buffer, a delayed coordinate ascent.)
* Structured SGLD with K = 1 is SGLD bit for bit (parameters and metrics), on a classifier with
  deterministic steps, thinning and a ring that wraps.
* Replicas are independent: a seed's chain beside others equals the chain of that seed alone.
* The integrated autocorrelation time of an AR(1) chain matches (1 + rho) / (1 - rho).
* The Bayesian-model-average metrics against scikit-learn's log_loss and accuracy_score.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss

from bench.core.errors import ConfigError
from bench.estimators.mixing import integrated_autocorrelation_time
from bench.models.mlp import MLP
from bench.nn import noise
from bench.nn.langevin import LangevinChain
from bench.workloads.posterior import chain_metrics
from methods.sgld import SGLD
from methods.structured_sgld import StructuredSGLD

N, D, RHO, PRIOR_STD = 20, 2, 0.6, 1.0


def _regression() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Correlated inputs x (N, D) with X^T X = N [[1, RHO], [RHO, 1]] exactly, and the closed-form posterior
    of the linear Gaussian autoencoder's weights W (D, D) (no bias, unit noise, N(0, PRIOR_STD^2)
    prior): row i regresses x_i on x, so the rows are independent, each N(M_i, Lambda^-1) with
    Lambda = X^T X + I / PRIOR_STD^2 and M_i = Lambda^-1 X^T x_i. Returns x, M (D, D), Lambda^-1."""
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((N, D)))[0]
    x = np.sqrt(N) * q @ np.linalg.cholesky(np.array([[1.0, RHO], [RHO, 1.0]])).T
    cov = np.linalg.inv(x.T @ x + np.eye(D) / PRIOR_STD**2)
    return torch.tensor(x), (cov @ x.T @ x).T, cov


def _chains(method_cls, steps: int, chains: int, **hp) -> np.ndarray:
    """Run `chains` replicas full-batch on the regression; their posterior samples of W (S * chains, D, D)."""
    x, _, _ = _regression()
    torch.manual_seed(0)
    model = MLP([D, D], list(range(chains)), activations=[], loss="gaussian", bias=False, init="kaiming").double()
    method = method_cls(model, prior_std=PRIOR_STD, **hp)
    method.prepare(N)
    xs = x.expand(chains, -1, -1)
    for _ in range(steps):
        method.step(xs)
    return torch.stack([sample[0] for sample in method.chain.posterior_samples()]).reshape(-1, D, D).numpy()


def test_sgld_samples_the_linear_regression_posterior():
    _, mean, cov = _regression()
    w = _chains(SGLD, steps=10000, chains=128, lr=5e-4, burn_in=2000, thinning=50, samples=160)
    sd = np.sqrt(np.diag(cov))
    for i in range(D):
        assert np.all(np.abs(w[:, i].mean(0) - mean[i]) < 0.1 * sd), (i, w[:, i].mean(0), mean[i])
        emp = np.cov(w[:, i].T)
        assert np.linalg.norm(emp - cov) / np.linalg.norm(cov) < 0.10, (i, emp, cov)


def test_structured_sgld_one_group_per_coordinate_gives_mean_field_variances():
    _, mean, cov = _regression()
    w = _chains(StructuredSGLD, steps=9500, chains=64, lr=5e-4, deterministic_steps=1500, burn_in=4500,
                thinning=25, samples=200, groups=D * D, partition="permuted")
    mean_field = 1.0 / np.diag(np.linalg.inv(cov))
    sd = np.sqrt(np.diag(cov))
    for i in range(D):
        assert np.all(np.abs(w[:, i].mean(0) - mean[i]) < 0.1 * sd), (i, w[:, i].mean(0), mean[i])
        var = w[:, i].var(0)
        assert np.all(np.abs(var / mean_field - 1) < 0.10), (i, var, mean_field, np.diag(cov))
        assert np.all(var < 0.8 * np.diag(cov))


def _classifier_run(method_cls, seeds: list[int], steps: int = 40, **hp):
    """A small classifier trained for `steps` under per-replica noise: (model, method, x_eval, y_eval)."""
    hp = {"lr": 1e-3, "deterministic_steps": 5, "burn_in": 8, "thinning": 1, "samples": 25, **hp}
    with noise.replica_noise(seeds, "cpu"):
        model = MLP([5, 4, 3], seeds, activations="tanh", loss="categorical", init="kaiming").double()
        method = method_cls(model, **hp)
        method.prepare(200)
        for step in range(steps):
            xs, ys = [], []
            for seed in seeds:
                g = torch.Generator().manual_seed(1000 * step + seed)
                xs.append(torch.randn(16, 5, generator=g, dtype=torch.float64))
                ys.append(torch.randint(0, 3, (16,), generator=g))
            method.step(torch.stack(xs), torch.stack(ys))
    g = torch.Generator().manual_seed(7)
    x_eval = torch.randn(50, 5, generator=g, dtype=torch.float64).expand(len(seeds), -1, -1)
    y_eval = torch.randint(0, 3, (50,), generator=g).expand(len(seeds), -1)
    return model, method, x_eval, y_eval


def test_structured_sgld_with_one_group_is_sgld_bit_for_bit():
    seeds = [0, 1, 2]
    ref_model, ref, x, y = _classifier_run(SGLD, seeds)
    model, method, _, _ = _classifier_run(StructuredSGLD, seeds, groups=1, partition="permuted")
    assert method.chain.buffer.size == ref.chain.buffer.size == 25  # the ring wrapped
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    expected, got = ref.extra_metrics(x, 1, y), method.extra_metrics(x, 1, y)
    assert set(expected) >= {"bma_error", "bma_nll", "bma_ece_10", "mutual_information", "iac_ll", "iac_prob"}
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


@pytest.mark.parametrize("hp", [{"groups": 3, "partition": "random"},
                                {"groups": 2, "partition": "layer", "variant": "dropout", "vi_batch": 3}])
def test_replicas_are_independent(hp):
    together, _, _, _ = _classifier_run(StructuredSGLD, [0, 1, 2], **hp)
    alone, _, _, _ = _classifier_run(StructuredSGLD, [1], **hp)
    for a, b in zip(together.parameters(), alone.parameters()):
        torch.testing.assert_close(a[1:2], b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_iac_of_an_ar1_chain(rho):
    g = np.random.default_rng(1)
    e = g.standard_normal((4, 40000))
    f = np.empty_like(e)
    f[:, 0] = e[:, 0] / np.sqrt(1 - rho**2)
    for i in range(1, e.shape[1]):
        f[:, i] = rho * f[:, i - 1] + e[:, i]
    iac = integrated_autocorrelation_time(f)
    np.testing.assert_allclose(iac, (1 + rho) / (1 - rho), rtol=0.15)


def test_iac_needs_four_draws():
    with pytest.raises(ValueError, match="at least 4 draws"):
        integrated_autocorrelation_time(np.zeros((2, 3)))


def test_model_average_metrics_match_scikit_learn():
    g = torch.Generator().manual_seed(3)
    log_probs = torch.log_softmax(3 * torch.randn(30, 2, 200, 4, generator=g, dtype=torch.float64), -1)
    y = torch.randint(0, 4, (2, 200), generator=g)
    out = chain_metrics(log_probs, y, thinning=5)
    bma = log_probs.exp().mean(0).numpy()
    for r in range(2):
        assert out["bma_nll"][r].item() == pytest.approx(log_loss(y[r].numpy(), bma[r], labels=range(4)), rel=1e-10)
        assert out["bma_error"][r].item() == pytest.approx(1 - accuracy_score(y[r].numpy(), bma[r].argmax(-1)))
    assert out["bma_samples"].tolist() == [30.0, 30.0]
    assert torch.all(out["iac_prob"] > 0) and torch.all(out["iac_ll"] > 0)


def test_bad_settings_are_refused():
    model = MLP([5, 4, 3], [0], activations="tanh", loss="categorical", init="kaiming")
    with pytest.raises(ConfigError, match="one group per layer"):
        StructuredSGLD(model, groups=3, partition="layer")
    with pytest.raises(ConfigError, match="keep_prob"):
        StructuredSGLD(model, groups=2, variant="dropout", keep_prob=0.0)
    with pytest.raises(ConfigError, match="l2"):
        SGLD(MLP([5, 4, 3], [0], loss="categorical", l2=0.1))



def test_chain_schedule_deterministic_steps_thinning_and_ring():
    """No noise in the deterministic steps; the chain's start, then every thinning-th iterate, in
    a ring that keeps the newest; burn-in leaves out the samples of steps <= burn_in."""
    p = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    hp = {"lr": 0.01, "prior_std": 1.0, "temperature": 1.0, "deterministic_steps": 3,
          "burn_in": 6, "thinning": 2, "samples": 3}
    chain = LangevinChain("test", [p], hp)
    zero = (torch.zeros_like(p),)
    for _ in range(3):
        chain.advance(zero)
    assert torch.equal(p, torch.zeros_like(p)) and chain.buffer.steps == [3]
    iterates = []
    for _ in range(7):
        chain.advance(zero)
        iterates.append(p.detach().clone())
    assert not torch.equal(p, torch.zeros_like(p))
    assert [chain.buffer.steps[s] for s in chain.buffer.slots(after=0)] == [5, 7, 9]
    samples = [sample[0] for sample in chain.posterior_samples()]
    assert len(samples) == 2 and torch.equal(samples[0], iterates[3]) and torch.equal(samples[1], iterates[5])
