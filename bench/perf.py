"""Benchmarks (not tests): ratios measured side by side in one process, printed and saved.

    python -m bench.perf                 # every benchmark, results/perf/<name>-<device>.txt
    python -m bench.perf replicas        # one of them

Benchmarks are functions decorated with @benchmark, here or in a module ``bench/perf_<topic>.py``
(imported automatically), each returning the lines it prints.

Absolute times only mean something on a GPU; on a CPU read the ratios. Each benchmark warms up,
then reports the median of several repeats; the device and the commit go into the output.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import devices, results
from bench.estimators import importance_log_likelihood
from bench.models.helmholtz import HelmholtzMachine
from bench.registry import get_method

BENCHMARKS: dict[str, Callable[[torch.device], list[str]]] = {}


def benchmark(fn: Callable[[torch.device], list[str]]) -> Callable[[torch.device], list[str]]:
    BENCHMARKS[fn.__name__] = fn
    return fn


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of fn() over `repeats`, CUDA-synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _binary_batch(r: int, b: int, d: int, device: torch.device) -> torch.Tensor:
    return (torch.rand(r, b, d, device=device) < 0.15).float()


def lockstep_vs_sequential(lock, singles: list, x: torch.Tensor, steps: int, device: torch.device) -> list[str]:
    """Time `steps` steps of one R-replica method on x (R, B, D) against R single-replica methods
    stepping one after the other on their slices: what running seeds as replicas buys."""
    r = len(singles)

    def lockstep() -> None:
        for _ in range(steps):
            lock.step(x)

    def sequential() -> None:
        for i, m in enumerate(singles):
            for _ in range(steps):
                m.step(x[i:i + 1])

    t_lock, t_seq = timed(lockstep, device), timed(sequential, device)
    return [
        f"  {r} seeds in lock-step (R={r}):   {t_lock / steps * 1e3:8.2f} ms per step of all seeds",
        f"  {r} sequential R=1 models:       {t_seq / steps * 1e3:8.2f} ms per step of all seeds",
        f"  throughput ratio lock-step / sequential = {t_seq / t_lock:.2f}x",
    ]


@benchmark
def replicas(device: torch.device) -> list[str]:
    """R=5 seeds in lock-step vs 5 sequential single-seed models: RWS steps on the RWS paper's
    architecture (SBN 784-200-200-10, K=5, B=100)."""
    layers, r, steps = [784, 200, 200, 10], 5, 20
    lock = get_method("rws")(HelmholtzMachine(layers, list(range(r))).to(device), k=5, lr=0.1,
                             optimizer="momentum_ema", q_updates="wake+sleep", sleep_every=2, q_baseline=False)
    singles = [get_method("rws")(HelmholtzMachine(layers, [s]).to(device), k=5, lr=0.1, optimizer="momentum_ema",
                                 q_updates="wake+sleep", sleep_every=2, q_baseline=False) for s in range(r)]
    x = _binary_batch(r, 100, 784, device)
    return [f"RWS step, SBN {'-'.join(map(str, layers))}, K=5, B=100, {steps} steps per seed",
            *lockstep_vs_sequential(lock, singles, x, steps, device)]


@benchmark
def nrws_step(device: torch.device) -> list[str]:
    """One NRWS (and NBiHM) step relative to one RWS (BiHM) step with the same phases, on the
    authors' MNIST setup: SBN 784-200-100-10, B=32, K=5, one replica. The Fisher is refit every
    `fisher_every` steps (the authors' k_step_update in {0, 5, 10}); the time per step is averaged
    over a whole refresh period, so the factorization is amortized."""
    layers, b = [784, 200, 100, 10], 32
    x = _binary_batch(1, b, 784, device)
    common = dict(k=5, lr=0.02, optimizer="sgd")
    rws = dict(common, q_updates="wake+sleep", sleep_every=0, q_baseline=True)

    def per_step(name: str, hparams: dict, period: int) -> float:
        method = get_method(name)(HelmholtzMachine(layers, [0]).to(device), **hparams)

        def run() -> None:
            for _ in range(period):
                method.step(x)

        return timed(run, device, repeats=3) / period

    lines = [f"SBN {'-'.join(map(str, layers))}, B={b}, K=5, R=1, float32 model, float64 Fisher solves"]
    base = {"rws": per_step("rws", rws, 10), "bihm": per_step("bihm", common, 10)}
    lines.append(f"  RWS  step {base['rws'] * 1e3:8.2f} ms;  BiHM step {base['bihm'] * 1e3:8.2f} ms")
    for every in (1, 5, 10):
        for natural, plain, hp in (("nrws", "rws", rws), ("nbihm", "bihm", common)):
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
    x = _binary_batch(1, n, 784, device)
    t = timed(lambda: importance_log_likelihood(model.log_weights, x, k), device, repeats=3)
    return [
        f"IS log-likelihood, SBN 784-200-200-10, K={k}, {n} examples, R=1",
        f"  {t / n * 1e3:.2f} ms per test example -> {t / n * 10000:.1f} s for the 10k test set",
    ]


def _discover() -> dict[str, Callable[[torch.device], list[str]]]:
    """Import every bench/perf_<topic>.py and return the registry they filled: that of the module
    `bench.perf`, which under `python -m bench.perf` is not this __main__ module's BENCHMARKS."""
    import bench

    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("perf_"):
            importlib.import_module(f"bench.{info.name}")
    return importlib.import_module("bench.perf").BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    benchmarks = _discover()
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[[], *benchmarks], default=[], help="default: all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="results/perf")
    args = parser.parse_args(argv)
    device = devices.resolve(args.device)
    header = (f"device: {results.device_name(str(device))}; torch {torch.__version__}; "
              f"commit {results.git_state()['commit']}")
    for name in args.names or list(benchmarks):
        lines = [header, *benchmarks[name](device)]
        text = "\n".join(lines) + "\n"
        print(f"== {name}\n{text}", flush=True)
        out = Path(args.out) / f"{name}-{device.type}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
