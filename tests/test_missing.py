"""bench.core.missing: observed moments against numpy's nan-aware float64 reference."""

import numpy as np
import pytest
import torch

from bench.core import missing


@pytest.mark.parametrize("chunk_bytes", [8 * 50 * 3, 2**25])  # 3 columns a block, and one block
def test_observed_moments_match_numpy_on_observed_entries(monkeypatch, chunk_bytes):
    monkeypatch.setattr(missing, "_MOMENT_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (50, 11))
    x[missing.mcar(x.shape, 0.4, seed=3)] = np.nan
    mean, variance = missing.observed_moments(torch.as_tensor(x, dtype=torch.float32))
    x32 = x.astype(np.float32).astype(np.float64)  # the values the float32 input holds
    assert mean.dtype == variance.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), np.nanmean(x32, 0), rtol=1e-13)
    np.testing.assert_allclose(variance.numpy(), np.nanvar(x32, 0), rtol=1e-12)


def test_observed_moments_name_a_value_seen_fewer_than_twice():
    x = torch.ones(5, 4)
    x[1:, 2] = float("nan")
    with pytest.raises(ValueError, match="value 2 is observed in 1 training examples"):
        missing.observed_moments(x)
