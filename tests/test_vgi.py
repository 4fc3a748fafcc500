"""Factor analysis with missing data and variational Gibbs inference (bench/models/factor_analysis.py,
bench/workloads/factor_analysis.py, methods/fa_em_missing.py, methods/vgi.py,
methods/mean_imputation.py, the MCAR masks of bench/engine/data.py) against independent references
in float64: scipy's dense Gaussian log-density (complete and marginal over the missing entries),
scikit-learn's FactorAnalysis (its maximum-likelihood fit of complete data), a numpy EM step
written from Bishop's PRML eqs 12.66-12.70, EM's monotone observed-data log-likelihood, and the
closed-form Gaussian conditional that VGI's variational conditionals and imputations must reach."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.decomposition import FactorAnalysis as SklearnFA

from bench.core.missing import mcar
from bench.core.spec import RunSpec
from bench.engine.data import load
from bench.engine.methods import get_method
from bench.engine.train import prepare_data
from bench.models.factor_analysis import FactorAnalysis

D, Q = 8, 2


def synthetic(n: int, seed: int, d: int = D, q: int = Q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n draws of a factor analyser with known (mean, covariance); returns (x, mean, covariance)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, q))
    psi = rng.uniform(0.1, 0.5, d)
    mean = rng.uniform(-1, 1, d)
    cov = w @ w.T + np.diag(psi)
    return rng.multivariate_normal(mean, cov, size=n), mean, cov


def model_for(x: np.ndarray, seeds: tuple[int, ...] = (0,)) -> FactorAnalysis:
    model = FactorAnalysis([x.shape[1], Q], list(seeds))
    model.initialize_from_data(torch.as_tensor(x))
    return model


def replicate(x: np.ndarray, r: int) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).unsqueeze(0).expand(r, -1, -1).contiguous()


def dense(model: FactorAnalysis, r: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, W W^T + Psi) of replica r as numpy arrays."""
    w = model.weight[r].detach().numpy()
    return model.mean[r].detach().numpy(), w @ w.T + np.diag(model.noise_variance[r].detach().numpy())


def test_log_prob_matches_scipy_complete_and_marginal():
    x, _, _ = synthetic(50, 0)
    model = model_for(x, seeds=(0, 3))
    mean, cov = dense(model, 1)
    full = model.log_prob(replicate(x, 2))[1].detach().numpy()
    np.testing.assert_allclose(full, scipy.stats.multivariate_normal(mean, cov).logpdf(x), rtol=1e-10)
    mask = mcar(x.shape, 0.4, seed=7)
    holed = np.where(mask, np.nan, x)
    got = model.log_prob(replicate(holed, 2))[1].detach().numpy()
    for n in range(len(x)):
        o = ~mask[n]
        want = scipy.stats.multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[n, o]) if o.any() else 0.0
        assert got[n] == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_conditional_mean_is_the_gaussian_conditional():
    x, _, _ = synthetic(20, 1)
    model = model_for(x)
    mean, cov = dense(model)
    mask = mcar(x.shape, 0.5, seed=3)
    got = model.conditional_mean(replicate(np.where(mask, np.nan, x), 1))[0].detach().numpy()
    for n in range(len(x)):
        m, o = mask[n], ~mask[n]
        want = mean[m] + cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)], x[n, o] - mean[o])
        np.testing.assert_allclose(got[n, m], want, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(got[n, o], x[n, o])


def numpy_em_step(x: np.ndarray, mean: np.ndarray, w: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One EM iteration of complete-data factor analysis, Bishop PRML eqs 12.66-12.70 (mu fixed)."""
    g = np.linalg.inv(np.eye(w.shape[1]) + w.T @ np.diag(1 / psi) @ w)
    ez = (x - mean) @ (g @ w.T @ np.diag(1 / psi)).T
    ezz = len(x) * g + ez.T @ ez
    w_new = (x - mean).T @ ez @ np.linalg.inv(ezz)
    s = (x - mean).T @ (x - mean) / len(x)
    psi_new = np.diag(s - w_new @ ez.T @ (x - mean) / len(x))
    return w_new, psi_new


def test_em_without_missing_values_is_complete_data_em_and_reaches_sklearn():
    x, _, _ = synthetic(400, 2)
    model = model_for(x)
    em = get_method("fa_em_missing")(model)
    w, psi = model.weight[0].detach().numpy().copy(), model.noise_variance[0].detach().numpy().copy()
    em.step(replicate(x, 1))
    w_ref, psi_ref = numpy_em_step(x, x.mean(0), w, psi)
    np.testing.assert_allclose(model.weight[0].detach().numpy(), w_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.noise_variance[0].detach().numpy(), psi_ref, rtol=1e-9)
    np.testing.assert_allclose(model.mean[0].detach().numpy(), x.mean(0), atol=1e-12)
    for _ in range(3000):
        em.step(replicate(x, 1))
    reference = SklearnFA(n_components=Q, tol=1e-10, max_iter=10000).fit(x).score(x)
    assert float(model.log_prob(replicate(x, 1)).mean().detach()) == pytest.approx(reference, abs=1e-6)


def test_em_with_missing_values_never_decreases_the_observed_likelihood():
    x, _, _ = synthetic(300, 4)
    holed = np.where(mcar(x.shape, 0.5, seed=1), np.nan, x)
    model = model_for(holed, seeds=(0, 1))
    em = get_method("fa_em_missing")(model)
    lls = torch.stack([em.step(replicate(holed, 2))["batch_ll"] for _ in range(200)])  # (steps, R)
    assert (lls[1:] - lls[:-1] >= -1e-10).all()
    assert (lls[-1] - lls[0] > 0.1).all()
    assert float((lls[-1] - lls[-2]).abs().max()) < 1e-4  # converged: the ML fit of the observed data


def test_mcar_rate_and_determinism():
    first, again, other = mcar((2000, 20), 0.5, seed=1), mcar((2000, 20), 0.5, seed=1), mcar((2000, 20), 0.5, seed=2)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    assert abs(first.mean() - 0.5) < 0.01  # 40000 Bernoulli(0.5) draws: sd 0.0025
    assert abs(mcar((2000, 20), 0.2, seed=1).mean() - 0.2) < 0.01


def known_model(d: int, q: int, seed: int) -> FactorAnalysis:
    """A factor analyser with fixed random parameters (the 'true' Gaussian), one replica."""
    rng = np.random.default_rng(seed)
    model = FactorAnalysis([d, q], [0])
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(rng.standard_normal((1, d, q))))
        model.log_noise.copy_(torch.as_tensor(np.log(rng.uniform(0.1, 0.5, (1, d)))))
        model.mean.copy_(torch.as_tensor(rng.uniform(-1, 1, (1, d))))
    return model


def test_vgi_conditionals_and_imputations_reach_the_closed_form_gaussian_conditional():
    """With the density model held fixed (lr = 0), VGI's variational conditionals q(x_j | x_-j) must
    reach the model's exact conditionals N(mu_j + C_j,-j C_-j,-j^-1 (x_-j - mu_-j), 1 / (C^-1)_jj),
    and its Gibbs chains must sample p(x_m | x_o): the imputations' average over copies and sweeps
    is the closed-form conditional mean E[x_m | x_o]."""
    d, n = 4, 200
    torch.manual_seed(0)
    model = known_model(d, 1, seed=5)
    mean, cov = dense(model)
    x = np.random.default_rng(1).multivariate_normal(mean, cov, size=n)
    holed = np.where(mcar(x.shape, 0.5, seed=2), np.nan, x)
    vgi = get_method("vgi")(model, lr=0.0, lr_q=0.01, copies=4, hidden=16, delay=100)
    vgi.prepare(n)
    for t in range(1000):
        if t == 700:  # annealed, as the paper anneals q's step size: a smaller step leaves less noise
            vgi.opt_q.param_groups[0]["lr"] = 0.001
        vgi.step(replicate(holed, 1))
    # the variational conditionals at fresh points, value j marked missing (as in training)
    points = torch.as_tensor(np.random.default_rng(3).multivariate_normal(mean, cov, size=300)).unsqueeze(0)
    precision = np.linalg.inv(cov)
    for j in range(d):
        dims = torch.full((1, 300), j)
        q_mean, q_var = vgi.conditional(points, torch.nn.functional.one_hot(dims, d).bool(), dims)
        rest = [k for k in range(d) if k != j]
        exact = mean[j] + (points[0, :, rest].numpy() - mean[rest]) @ np.linalg.solve(cov[np.ix_(rest, rest)], cov[rest, j])
        sd = precision[j, j] ** -0.5
        assert np.sqrt(np.mean((q_mean[0].detach().numpy() - exact) ** 2)) < 0.15 * sd
        assert np.median(q_var[0].detach().numpy()) == pytest.approx(sd**2, rel=0.2)
    # the chains: imputations averaged over 4 copies x 300 sweeps against E[x_m | x_o]
    total = torch.zeros_like(vgi.pool)
    for _ in range(300):
        vgi.gibbs(4)
        total += vgi.pool
    average = (total / 300).mean(2)[0]  # (N, D), rows in the method's order
    rows = vgi._rows(replicate(holed, 1))
    exact = model.conditional_mean(rows)[0].detach()
    missing = ~torch.isfinite(rows[0])
    rmse = float((average - exact)[missing].square().mean().sqrt())
    unconditional = float((model.mean[0].detach() - exact)[missing].square().mean().sqrt())  # ignoring x_o
    assert rmse < 0.1 * float(np.sqrt(np.diag(cov)).mean())
    assert rmse < 0.25 * unconditional


def test_minibatches_impute_the_training_means_and_run_vgi_degraded():
    """On a minibatch (the smoke profile) mean imputation still fills in the whole training set's
    observed means, and VGI (fresh copies per batch) returns finite values."""
    x, _, _ = synthetic(40, 6)
    holed = np.where(mcar(x.shape, 0.3, seed=1), np.nan, x)
    model = model_for(holed)
    half = holed[:20]
    completed = np.where(np.isnan(half), np.nanmean(holed, 0), half)
    want = model.log_prob(replicate(completed, 1)).mean(1).detach()
    got = get_method("mean_imputation")(model).step(replicate(half, 1))["ll_imputed"]
    torch.testing.assert_close(got, want)
    vgi = get_method("vgi")(model_for(holed), delay=0)
    vgi.prepare(40)
    for _ in range(3):
        out = vgi.step(replicate(half, 1))
    assert all(torch.isfinite(v).all() for v in out.values())


def test_mean_imputation_fits_the_mean_completed_data():
    """Its fixed point is the complete-data ML fit of the mean-imputed training set (scikit-learn)."""
    x, _, _ = synthetic(300, 7)
    holed = np.where(mcar(x.shape, 0.3, seed=1), np.nan, x)
    completed = np.where(np.isnan(holed), np.nanmean(holed, 0), holed)
    model = model_for(holed)
    method = get_method("mean_imputation")(model, lr=0.02)
    method.prepare(300)
    for _ in range(3000):
        ll = method.step(replicate(holed, 1))["ll_imputed"]
    reference = SklearnFA(n_components=Q, tol=1e-10, max_iter=10000).fit(completed).score(completed)
    assert float(ll) == pytest.approx(reference, abs=2e-3)


def test_missing_rate_masks_the_training_split_only_and_downsample_pools():
    """The engine's data keys on the real Frey faces: 4 x 4 average pooling (checked against numpy
    on the raw frames), NaN at the fixed MCAR mask of the training split (also in a validation
    split carved from it), the test split complete and equal with and without the mask."""
    base = dict(profile="smoke", dataset="frey_faces", model={"family": "factor_analysis", "layers": [35, 5]},
                method="fa_em_missing", hparams={}, seeds=(0,), epochs=1, batch_size=10, transform="unit_interval",
                holdout=265, downsample=4)
    complete = prepare_data(RunSpec(**base), torch.device("cpu"))
    holed = prepare_data(RunSpec(**base, missing_rate=0.5), torch.device("cpu"))
    carved = prepare_data(RunSpec(**base, missing_rate=0.5, carve_valid=100), torch.device("cpu"))
    raw = load("frey_faces").x["all"][np.random.default_rng(0).permutation(1965)[-265:]] / 255.0
    pooled = raw.reshape(265, 7, 4, 5, 4).mean((2, 4)).reshape(265, 35)
    np.testing.assert_allclose(complete["test"][0].numpy(), pooled, rtol=1e-6)
    torch.testing.assert_close(holed["test"][0], complete["test"][0])
    train, full = holed["train"][0], complete["train"][0]
    assert train.shape == full.shape == (1700, 35)  # no frame lost all 35 values
    missing = torch.isnan(train)
    assert abs(float(missing.float().mean()) - 0.5) < 0.01
    torch.testing.assert_close(train[~missing], full[~missing])
    np.testing.assert_array_equal(missing.numpy(), mcar((1700, 35), 0.5))
    assert torch.isnan(carved["valid"][0]).any() and not torch.isnan(complete["test"][0]).any()


@pytest.mark.parametrize("method", ["vgi", "mean_imputation", "fa_em_missing"])
def test_a_diverged_replica_is_marked_not_fatal(method):
    """A replica whose parameters are not finite (a tuning grid's largest rate) gives NaN step
    values, so that the loop marks it diverged, and the other replica's values are unchanged: its
    posterior precision cannot be factored, which raised LinAlgError and killed the whole tuning job
    at the paper profile (vgi-fa-near-em)."""
    x, _, _ = synthetic(40, 6)
    holed = replicate(np.where(mcar(x.shape, 0.3, seed=1), np.nan, x), 2)

    def first_step(poison: bool) -> dict[str, torch.Tensor]:
        model = model_for(np.where(mcar(x.shape, 0.3, seed=1), np.nan, x), seeds=(0, 3))
        if poison:
            with torch.no_grad():
                model.weight[1] = float("nan")
        torch.manual_seed(0)  # VGI's conditionals are initialised from the global generator
        step = get_method(method)(model, **({"delay": 0} if method == "vgi" else {}))
        step.prepare(40)
        return step.step(holed)

    clean, poisoned = first_step(False), first_step(True)
    for name, values in poisoned.items():
        assert not torch.isfinite(values[1]), f"{name}: the poisoned replica looks healthy"
        torch.testing.assert_close(values[0], clean[name][0])
