"""Missingness masks for data with missing values (Rubin 1976, "Inference and missing data",
Biometrika 63(3)): the engine masks a claim's training split with one (bench.engine.train), a
workload hides test entries with one to score imputations."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError

MCAR_SEED = 20200325  # the first data seed of Simkus, Rhodes & Gutmann 2023 (their experiment configs)


def mcar(shape: tuple[int, int], rate: float, seed: int = MCAR_SEED) -> np.ndarray:
    """A missing-completely-at-random mask (Rubin 1976): (N, D) bool, True = missing, each entry
    independently with probability `rate` in [0, 1), from numpy's default_rng(seed); the same
    mask for the same (shape, rate, seed)."""
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"missing_rate {rate} is outside [0, 1)")
    return np.random.default_rng(seed).random(shape) < rate


_MOMENT_CHUNK_BYTES = 2**25  # 32 MiB of float64 columns at a time


def observed_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Each value's mean and variance over its observed entries of x (N, D) (NaN = missing), in
    float64: (D,), (D,), the variance the biased (1/n) one, clamped at 1e-6. A ValueError when a value
    is observed fewer than twice.

    Computed a block of columns at a time (about 32 MiB of float64 each), so that MNIST's training
    set does not need a float64 copy and its temporaries (about 1 GB) at once; the sums' order may
    differ from one pass over the whole matrix by rounding (measured: 3e-16 relative on MNIST's shape)."""
    cols = max(1, _MOMENT_CHUNK_BYTES // (8 * max(1, x.shape[0])))
    counts, means, variances = [], [], []
    for block in x.split(cols, dim=1):
        block = block.to(torch.float64)
        count = torch.isfinite(block).sum(0)
        mean = block.nanmean(0)
        counts.append(count)
        means.append(mean)
        variances.append((block - mean).square_().nan_to_num_(0.0).sum(0) / count)
    count = torch.cat(counts)
    if int(count.min()) < 2:
        raise ValueError(f"value {int(count.argmin())} is observed in {int(count.min())} training examples; "
                         f"at least 2 are needed")
    return torch.cat(means), torch.cat(variances).clamp_min(1e-6)


def register_observed_moments(model: nn.Module, replicas: int, d: int, dtype: torch.dtype = torch.float64) -> None:
    """Give `model` the buffers ``observed_mean`` (zeros) and ``observed_sd`` (ones), (R, D) each:
    every value's observed training mean and standard deviation, fixed once set by
    `set_observed_moments`; what imputation methods centre and scale by and impute with."""
    model.register_buffer("observed_mean", torch.zeros(replicas, d, dtype=dtype))
    model.register_buffer("observed_sd", torch.ones(replicas, d, dtype=dtype))


@torch.no_grad()
def set_observed_moments(model: nn.Module, x_train: Tensor) -> tuple[Tensor, Tensor]:
    """Set the buffers of `register_observed_moments` from x_train (N, D) (NaN = missing), the same
    for every replica; return `observed_moments(x_train)`, the float64 mean and variance (D,), (D,).
    A ValueError when a value is observed fewer than twice."""
    mean, variance = observed_moments(x_train)
    model.observed_mean.copy_(mean.expand_as(model.observed_mean))
    model.observed_sd.copy_(variance.sqrt().expand_as(model.observed_sd))
    return mean, variance
