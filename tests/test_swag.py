"""SWAG (methods/swag.py): its moments against numpy's on a fixed sequence of iterates, its samples'
covariance by Monte Carlo, its collection schedule on real SGD steps, and its predictive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import classification_data, float64_classifier

from bench.core.errors import ConfigError
from bench.nn import noise
from methods.swag import SWAG, SWAGMoments


def _iterates(t: int = 30, r: int = 2, p: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(t, r, p)).cumsum(0) * 0.1 + rng.normal(size=(1, r, p))  # a drifting "SGD path"


def test_moments_equal_numpys_sample_moments_in_float64():
    """theta_SWA = the mean of the snapshots, Sigma_diag their (1/n) variance, D's columns the last K
    deviations from the running mean (Maddox et al. 2019, Alg. 1), D^T D / (K - 1) their low-rank
    covariance."""
    thetas, rank = _iterates(), 6
    moments = SWAGMoments(thetas.shape[1], thetas.shape[2], rank)
    for theta in thetas:
        moments.collect(torch.from_numpy(theta))
    running = np.cumsum(thetas, 0) / np.arange(1, len(thetas) + 1)[:, None, None]
    deviations = (thetas - running)[-rank:].transpose(1, 0, 2)  # (R, K, P)
    np.testing.assert_allclose(moments.mean.numpy(), thetas.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.variance().numpy(), thetas.var(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(moments.deviations.numpy(), deviations, rtol=1e-12, atol=1e-12)
    low_rank = np.einsum("rkp,rkq->rpq", deviations, deviations) / (rank - 1)
    expected = np.stack([np.diag(v) for v in thetas.var(0)]) / 2 + low_rank / 2
    np.testing.assert_allclose(moments.covariance().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_samples_have_the_stated_covariance():
    """200000 samples: their mean and covariance match theta_SWA and Sigma_diag / 2 + D^T D / (2 (K - 1))
    within Monte-Carlo error (per entry, sd about sqrt((S_ii S_jj + S_ij^2) / n) < 0.004 max S_ii).
    The draws are one call of `sample` on n replicas holding the same moments."""
    thetas = _iterates(t=12, r=2, p=4)
    moments = SWAGMoments(2, 4, rank=5)
    for theta in thetas:
        moments.collect(torch.from_numpy(theta))
    n, cov = 200_000, moments.covariance().numpy()
    torch.manual_seed(0)
    for r in range(2):
        copies = SWAGMoments(n, 4, rank=5)
        copies.n = moments.n
        copies.mean, copies.sq_mean = moments.mean[r].expand(n, -1), moments.sq_mean[r].expand(n, -1)
        copies.deviations = moments.deviations[r].expand(n, -1, -1)
        draws = copies.sample().numpy()
        scale = cov[r].diagonal().max()
        np.testing.assert_allclose(draws.mean(0), moments.mean[r].numpy(), atol=5 * np.sqrt(scale / n))
        np.testing.assert_allclose(np.cov(draws.T), cov[r], atol=0.02 * scale)


def test_collection_schedule_on_sgd_iterates():
    """40 examples, minibatches of 10: 4 updates per epoch; swa_start 1 epoch, 2 snapshots per
    epoch: the iterates after updates 6, 8, 10, 12 are collected, and the moments are theirs."""
    x, y = classification_data(2)
    model = float64_classifier([0, 1], (6, 8, 3))
    method = SWAG(model, lr=0.05, swa_start=1, snapshots_per_epoch=2, rank=3)
    method.prepare(40)
    path = []
    with noise.replica_noise([0, 1], "cpu"):
        for i in range(12):
            b = slice(10 * (i % 4), 10 * (i % 4 + 1))
            method.step(x[:, b], y[:, b])
            path.append(method.flat_parameters().clone())
    kept = torch.stack([path[u - 1] for u in (6, 8, 10, 12)])
    assert method.moments.n == 4
    torch.testing.assert_close(method.moments.mean, kept.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(method.moments.variance(), kept.var(0, unbiased=False), rtol=1e-9, atol=1e-12)
    assert method.moments.deviations.shape == (2, 3, method.flat_parameters().shape[1])


def test_predictive_is_the_iterate_before_collection_and_spread_after():
    x, y = classification_data(2)
    model = float64_classifier([0, 1], (6, 8, 3))
    method = SWAG(model, lr=0.05, swa_start=0, snapshots_per_epoch=4, rank=3)
    method.prepare(40)
    with noise.replica_noise([0, 1], "cpu"):
        before = method.extra_metrics(x, 5, y)
        nll = torch.nn.functional.cross_entropy(model(x).transpose(1, 2), y, reduction="none").mean(1)
        torch.testing.assert_close(before["bma_nll"], nll)
        assert torch.all(before["mutual_information"] == 0) and torch.all(before["swag_snapshots"] == 0)
        for i in range(8):
            method.step(x[:, 10 * (i % 4):10 * (i % 4 + 1)], y[:, 10 * (i % 4):10 * (i % 4 + 1)])
        after = method.extra_metrics(x, 5, y)
    assert torch.all(after["swag_snapshots"] == 8) and torch.all(after["mutual_information"] > 0)


@pytest.mark.parametrize("bad", [{"rank": 1}, {"swa_start": -1}, {"snapshots_per_epoch": 0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="swag"):
        SWAG(float64_classifier([0], (6, 8, 3)), **bad)
