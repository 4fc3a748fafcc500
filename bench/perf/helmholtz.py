"""Benchmarks of the Helmholtz-machine methods: lock-step replicas, the NRWS/NBiHM step cost, IS evaluation."""

from __future__ import annotations

import torch

from bench.engine.methods import get_method
from bench.estimators.importance import importance_log_likelihood
from bench.models.helmholtz import HelmholtzMachine
from bench.perf import benchmark, binary_batch, lockstep_vs_sequential, timed


@benchmark
def replicas(device: torch.device) -> list[str]:
    """R=5 seeds in lock-step vs 5 sequential single-seed models: RWS steps on the RWS paper's
    architecture (SBN 784-200-200-10, K=5, B=100)."""
    layers, r, steps = [784, 200, 200, 10], 5, 20
    lock = get_method("rws")(HelmholtzMachine(layers, list(range(r))).to(device), k=5, lr=0.1,
                             optimizer="momentum_ema", q_updates="wake+sleep", sleep_every=2, q_baseline=False)
    singles = [get_method("rws")(HelmholtzMachine(layers, [s]).to(device), k=5, lr=0.1, optimizer="momentum_ema",
                                 q_updates="wake+sleep", sleep_every=2, q_baseline=False) for s in range(r)]
    x = binary_batch(r, 100, 784, device)
    return [f"RWS step, SBN {'-'.join(map(str, layers))}, K=5, B=100, {steps} steps per seed",
            *lockstep_vs_sequential(lock, singles, x, steps, device)]


@benchmark
def nrws_step(device: torch.device) -> list[str]:
    """One NRWS (and NBiHM) step relative to one RWS (BiHM) step with the same phases (RWS with
    the authors' joint scheme: method rws_joint), on the authors' MNIST setup: SBN 784-200-100-10,
    B=32, K=5, one replica. The Fisher is refit every `fisher_every` steps (the authors'
    k_step_update in {0, 5, 10}); the time per step is averaged over a whole refresh period, so
    the factorization is amortized."""
    layers, b = [784, 200, 100, 10], 32
    x = binary_batch(1, b, 784, device)
    common = dict(k=5, lr=0.02, optimizer="sgd")
    rws = dict(common, q_baseline=True)

    def per_step(name: str, hparams: dict, period: int) -> float:
        method = get_method(name)(HelmholtzMachine(layers, [0]).to(device), **hparams)

        def run() -> None:
            for _ in range(period):
                method.step(x)

        return timed(run, device, repeats=3) / period

    lines = [f"SBN {'-'.join(map(str, layers))}, B={b}, K=5, R=1, float32 model, float64 Fisher solves"]
    base = {"RWS": per_step("rws_joint", rws, 10), "BiHM": per_step("bihm", common, 10)}
    lines.append(f"  RWS  step {base['RWS'] * 1e3:8.2f} ms;  BiHM step {base['BiHM'] * 1e3:8.2f} ms")
    for every in (1, 5, 10):
        for natural, plain, hp in (("nrws", "RWS", rws), ("nbihm", "BiHM", common)):
            t = per_step(natural, dict(hp, damping=0.01, fisher_every=every, clip=1e-3), max(every, 1) * 2)
            lines.append(f"  {natural.upper():5s} fisher_every={every:2d}: {t * 1e3:8.2f} ms per step = "
                         f"{t / base[plain]:5.2f}x {plain.upper()}")
    return lines


@benchmark
def is_eval(device: torch.device) -> list[str]:
    """Cost of the K=5000 importance-sampled test log-likelihood per test example (IWAE protocol),
    SBN 784-200-200-10, one replica, on a 100-example slice; extrapolated to the 10k test set."""
    model = HelmholtzMachine([784, 200, 200, 10], [0]).to(device)
    n, k = (100, 5000) if device.type == "cuda" else (10, 5000)
    x = binary_batch(1, n, 784, device)
    t = timed(lambda: importance_log_likelihood(model.log_weights, x, k), device, repeats=3)
    return [
        f"IS log-likelihood, SBN 784-200-200-10, K={k}, {n} examples, R=1",
        f"  {t / n * 1e3:.2f} ms per test example -> {t / n * 10000:.1f} s for the 10k test set",
    ]
