"""Benchmarks of the Gaussian-latent models (discovered by ``python -m bench.perf``).

* ``vae_is_eval``: the IWAE protocol's K=5000 importance-sampled test log-likelihood (the harness's
  ``importance_log_likelihood``, float64 accumulation, at most 50,000 (example, sample) rows alive),
  per test example and extrapolated to the 10k MNIST test set, for the IWAE paper's 1-layer model
  (q 784-[200,200]-50, p 50-[200,200]-784) with R=1 and R=3 replicas.
* ``vae_replicas``: IWAE (k=5, B=20) steps of R=5 seeds in lock-step vs 5 sequential single-seed models.
"""

from __future__ import annotations

import torch

from bench.engine.methods import get_method
from bench.estimators.importance import importance_log_likelihood
from bench.models.vae import VAE
from bench.perf import benchmark, lockstep_vs_sequential, timed

IWAE_NET = {"layers": [784, 50], "hidden": [[200, 200]]}


def _mnist_like(r: int, n: int, device: torch.device) -> torch.Tensor:
    return (torch.rand(r, n, 784, device=device) < 0.13).float()


@benchmark
def vae_is_eval(device: torch.device) -> list[str]:
    """K=5000 IS log-likelihood cost per test example (IWAE 1-layer MNIST model)."""
    k, n = 5000, (200 if device.type == "cuda" else 10)
    lines = [f"IS log-likelihood, VAE 784-[200,200]-50 (IWAE's 1-layer net), K={k}, {n} examples, "
             f"chunks of <= 50,000 rows, float64 log-mean-exp"]
    for r in (1, 3):
        model = VAE(seeds=list(range(r)), **IWAE_NET).to(device)
        x = _mnist_like(r, n, device)
        with torch.no_grad():
            t = timed(lambda: importance_log_likelihood(model.log_weights, x, k), device, repeats=3)
        lines.append(f"  R={r}: {t / n * 1e3:8.2f} ms per test example (all replicas) -> "
                     f"{t / n * 10000:8.1f} s for the 10k test set")
    return lines


@benchmark
def vae_replicas(device: torch.device) -> list[str]:
    """R=5 seeds in lock-step vs 5 sequential R=1 models: IWAE k=5 steps, B=20, IWAE's 1-layer net."""
    r, steps = 5, 20
    cls = get_method("iwae")

    def method(seeds: list[int]):
        return cls(VAE(seeds=seeds, **IWAE_NET).to(device), **{**cls.defaults, "k": 5})

    lock, singles = method(list(range(r))), [method([s]) for s in range(r)]
    x = _mnist_like(r, 20, device)
    return [f"IWAE step (k=5, B=20), VAE 784-[200,200]-50, {steps} steps per seed",
            *lockstep_vs_sequential(lock, singles, x, steps, device)]
