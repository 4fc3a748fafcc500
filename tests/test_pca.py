"""PCA, the linear autoencoder and probabilistic PCA (bench/models/principal.py, linear_autoencoder.py,
ppca.py; bench/workloads/pca.py; methods/linear_ae.py, ppca_em.py) against independent references
in float64: scikit-learn's PCA (its reconstruction, and its probabilistic-PCA score and noise
variance), scipy's dense Gaussian log-density and principal angles, a numpy EM step written from
Tipping & Bishop's eqs 29-30, EM's monotone log-likelihood, and replicas that never mix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from sklearn.decomposition import PCA

from bench.engine.methods import get_method
from bench.models import build_model
from bench.models.ppca import PPCA, gaussian_log_prob
from bench.models.principal import TrainingPCA, subspace_distance
from bench.workloads import workload_for

D, K = 20, 4


def synthetic(n: int, seed: int, d: int = D) -> np.ndarray:
    """n points in d dimensions with a clearly ordered spectrum: x = z diag(s) A^T + 0.1 noise + offset."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    scales = np.linspace(3.0, 0.3, d)
    return (rng.standard_normal((n, d)) * scales) @ basis.T + 0.1 * rng.standard_normal((n, d)) + rng.uniform(-1, 1, d)


def replicate(x: np.ndarray, r: int) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).unsqueeze(0).expand(r, -1, -1).contiguous()


def fitted(x: np.ndarray, k: int = K, r: int = 1) -> TrainingPCA:
    ref = TrainingPCA(r, x.shape[1], k)
    ref.fit(torch.as_tensor(x))
    return ref


def ppca(x: np.ndarray, seeds: list[int], q: int = K) -> PPCA:
    model = build_model({"family": "ppca", "layers": [x.shape[1], q]}, seeds)
    workload_for("ppca").prepare(model, torch.as_tensor(x, dtype=torch.float32))
    return model


# --------------------------------------------------------------------------- PCA reference
def test_pca_error_is_the_sum_of_trailing_eigenvalues_and_equals_sklearn_reconstruction():
    """MSE_PCA = sum_{j > k} lambda_j equals the mean squared error of sklearn's PCA reconstruction
    (inverse_transform(transform(x))) on the training set, and our reconstruction is sklearn's."""
    x = synthetic(500, seed=0)
    ref = fitted(x, r=2)
    sk = PCA(n_components=K).fit(x)
    theirs = sk.inverse_transform(sk.transform(x))
    ours = ref.reconstruct(replicate(x, 2)).numpy()
    np.testing.assert_allclose(ours[1], theirs, atol=1e-10)
    sk_mse = np.square(x - theirs).sum(1).mean()
    np.testing.assert_allclose(ref.trailing_sum().numpy(), [sk_mse, sk_mse], rtol=1e-10)
    # sklearn's explained_variance_ divides by N - 1, ours by N (the ML covariance)
    np.testing.assert_allclose(ref.eigenvalues[0, :K].numpy() * 500 / 499, sk.explained_variance_, rtol=1e-10)


def test_subspace_distance_is_the_sine_of_scipys_largest_principal_angle():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((D, K)), np.linalg.qr(rng.standard_normal((D, K)))[0]
    near = b + 1e-4 * rng.standard_normal((D, K))  # a tiny angle, where sqrt(1 - cos^2) loses digits
    for basis, expected in ((a, np.sin(scipy.linalg.subspace_angles(a, b).max())),
                            (near, np.sin(scipy.linalg.subspace_angles(near, b).max())), (b @ rng.standard_normal((K, K)), 0.0)):
        ours = subspace_distance(torch.as_tensor(basis)[None], torch.as_tensor(b)[None])
        np.testing.assert_allclose(ours.numpy(), [expected], rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- PPCA: the closed form
def test_closed_form_ml_matches_sklearn_pca_score_and_noise_variance():
    """sklearn's PCA is the probabilistic-PCA ML fit with the N - 1 covariance: its noise_variance_ is
    our sigma^2_ML * N / (N - 1), and its score (mean log-likelihood) is our Gaussian log-density
    with its parameters; with ours, the log-density is the closed form
    -1/2 (D log 2 pi + sum_{j <= q} log lambda_j + (D - q) log sigma^2_ML + D) (eqs 4, 7-8)."""
    n = 400
    x = synthetic(n, seed=1).astype(np.float32).astype(np.float64)  # the float32 data the engine gives
    model = ppca(x, seeds=[0])
    weight, variance = model.maximum_likelihood()
    sk = PCA(n_components=K).fit(x)
    np.testing.assert_allclose(variance.numpy() * n / (n - 1), [sk.noise_variance_], rtol=1e-10)
    sk_weight = torch.as_tensor(sk.components_.T * np.sqrt(sk.explained_variance_ - sk.noise_variance_))[None]
    sk_ll = gaussian_log_prob(replicate(x, 1), model.mean, sk_weight, torch.tensor([sk.noise_variance_], dtype=torch.float64))
    np.testing.assert_allclose(sk_ll.mean().item(), sk.score(x), rtol=1e-12)
    lam = model.reference.eigenvalues[0].numpy()
    closed = -0.5 * (D * np.log(2 * np.pi) + np.log(lam[:K]).sum() + (D - K) * np.log(lam[K:].mean()) + D)
    ours = gaussian_log_prob(replicate(x, 1), model.mean, weight, variance)
    np.testing.assert_allclose(ours.mean().item(), closed, rtol=1e-12)


def test_gaussian_log_prob_equals_scipys_dense_multivariate_normal():
    rng = np.random.default_rng(4)
    x, mean, w = rng.standard_normal((30, D)), rng.standard_normal(D), rng.standard_normal((D, K))
    ours = gaussian_log_prob(replicate(x, 1), torch.as_tensor(mean)[None], torch.as_tensor(w)[None],
                             torch.tensor([0.7], dtype=torch.float64))
    dense = scipy.stats.multivariate_normal(mean, w @ w.T + 0.7 * np.eye(D)).logpdf(x)
    np.testing.assert_allclose(ours[0].numpy(), dense, rtol=1e-12)


# --------------------------------------------------------------------------- PPCA: EM
def numpy_em_step(x: np.ndarray, mean: np.ndarray, w: np.ndarray, s2: float) -> tuple[float, np.ndarray, float]:
    """Tipping & Bishop eqs 29-30 with S formed: (mean log-likelihood before the step, W~, sigma~^2)."""
    e = x - mean
    s = e.T @ e / len(x)
    m = w.T @ w + s2 * np.eye(w.shape[1])
    new_w = s @ w @ np.linalg.inv(s2 * np.eye(w.shape[1]) + np.linalg.inv(m) @ w.T @ s @ w)
    new_s2 = np.trace(s - s @ w @ np.linalg.inv(m) @ new_w.T) / x.shape[1]
    ll = scipy.stats.multivariate_normal(mean, w @ w.T + s2 * np.eye(x.shape[1])).logpdf(x).mean()
    return ll, new_w, new_s2


def test_one_em_step_equals_the_numpy_eqs_29_30():
    x = synthetic(300, seed=2).astype(np.float32).astype(np.float64)
    model = ppca(x, seeds=[0, 1])
    start_w, start_s2 = model.weight.clone().numpy(), model.variance.clone().numpy()
    out = get_method("ppca_em")(model).step(replicate(x, 2).float())
    for r in range(2):
        ll, w, s2 = numpy_em_step(x, model.mean[r].numpy(), start_w[r], start_s2[r])
        np.testing.assert_allclose(out["batch_ll"][r].item(), ll, rtol=1e-11)
        np.testing.assert_allclose(model.weight[r].numpy(), w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.variance[r].item(), s2, rtol=1e-10)


def test_em_log_likelihood_never_decreases_and_reaches_the_closed_form():
    """On 20-D synthetic data (the notes' PPCA-1 toy), every EM iteration raises the training
    log-likelihood (up to 1e-12 relative rounding) and EM ends at the ML solution: ll_gap < 1e-9
    nats, sigma^2 = sigma^2_ML, span(W) = span(U_q)."""
    x = synthetic(1000, seed=5)
    model = ppca(x, seeds=[0, 1, 2])
    em, batch = get_method("ppca_em")(model), replicate(x, 3)
    lls = torch.stack([em.step(batch)["batch_ll"] for _ in range(300)]).numpy()  # (steps, R)
    assert (np.diff(lls, axis=0) >= -1e-12 * np.abs(lls[1:])).all()
    metrics = workload_for("ppca").evaluate(model, em, batch, 1)
    assert (metrics["ll_gap"] >= -1e-10).all() and (metrics["ll_gap"] < 1e-9).all(), metrics["ll_gap"]
    np.testing.assert_allclose(model.variance.numpy(), model.maximum_likelihood()[1].numpy(), rtol=1e-8)
    assert (metrics["subspace_distance"] < 1e-6).all()


# --------------------------------------------------------------------------- the linear autoencoder
def train_linear_ae(x: np.ndarray, seeds: list[int], steps: int, **hparams) -> tuple:
    model = build_model({"family": "linear_autoencoder", "layers": [x.shape[1], K]}, seeds)
    workload = workload_for("linear_autoencoder")
    xt = torch.as_tensor(x, dtype=torch.float32)
    workload.prepare(model, xt)
    method = get_method("linear_ae")(model, **hparams)
    batches = replicate(x, len(seeds)).float().split(100, dim=1)
    for i in range(steps):
        method.step(batches[i % len(batches)])
    return model, workload.evaluate(model, method, replicate(x, len(seeds)), 1)


def test_sgd_trained_linear_autoencoder_finds_the_pca_subspace():
    """A linear autoencoder trained by minibatch SGD with a decaying step on synthetic data with a
    clear eigengap reaches PCA's training error (excess < 1e-4) and subspace (sin angle < 1e-2);
    its untrained start is far from both."""
    x = synthetic(1000, seed=6)
    _, start = train_linear_ae(x, [0], steps=0)
    assert start["excess_mse"].item() > 0.3 and start["subspace_distance"].item() > 0.5
    _, end = train_linear_ae(x, [0, 1], steps=3000, lr=0.02, decay_steps=500)
    assert (end["excess_mse"] >= -1e-6).all() and (end["excess_mse"] < 1e-4).all(), end["excess_mse"]
    assert (end["subspace_distance"] < 1e-2).all(), end["subspace_distance"]
    mse_pca = fitted(x).trailing_sum().item()
    np.testing.assert_allclose(end["mse"].numpy(), mse_pca, rtol=1e-4)


# --------------------------------------------------------------------------- replicas
@pytest.mark.parametrize("family", ["linear_autoencoder", "ppca"])
def test_a_seed_trained_beside_others_equals_the_seed_alone(family):
    """Replica 1 of seeds [0, 3, 7] follows seed 3 trained alone (same start, same trajectory), and
    the replicas differ from one another."""
    x = synthetic(300, seed=8)
    if family == "linear_autoencoder":
        together, _ = train_linear_ae(x, [0, 3, 7], steps=50)
        alone, _ = train_linear_ae(x, [3], steps=50)
        params = lambda m: [m.encoder, m.decoder, m.encoder_bias, m.decoder_bias]  # noqa: E731
    else:
        together, alone = ppca(x, [0, 3, 7]), ppca(x, [3])
        for model in (together, alone):
            em = get_method("ppca_em")(model)
            for _ in range(3):
                em.step(replicate(x, len(model.variance)))
        params = lambda m: [m.weight, m.variance]  # noqa: E731
    for a, b in zip(params(together), params(alone)):
        torch.testing.assert_close(a[1], b[0], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(a[0], a[1])
