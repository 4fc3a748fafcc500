"""Benchmarks (not tests): ratios measured side by side in one process, printed and saved.

    python -m bench perf                 # every benchmark, results/perf/<name>-<device>.txt
    python -m bench perf replicas        # one of them

A benchmark is a function decorated with ``@benchmark`` in a module of this package (imported
automatically), returning the lines it prints. Absolute times only mean something on a GPU; on a
CPU read the ratios. Each benchmark warms up, then reports the median of several repeats; the
device and the commit go into the output.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.core import devices
from bench.core.registry import Registry
from bench.engine import results

Benchmark = Callable[[torch.device], list[str]]
BENCHMARKS: Registry[Benchmark] = Registry("benchmark", packages=("bench.perf",))


def benchmark(fn: Callable[[torch.device], list[str]]) -> Callable[[torch.device], list[str]]:
    return BENCHMARKS.add(fn.__name__, fn)


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


def interleaved_medians(configs: dict[str, tuple[Callable[[], Callable[[], object]], int]], device: torch.device,
                        rounds: int = 3, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each label's step over `rounds` interleaved rounds. configs maps a
    label to (make, n): make() builds the method afresh from the same initial state and returns its
    step; each round takes `warmup` steps, then times the next n (a period that holds one refresh
    of a cached curvature, say) and divides by n. Labels take turns (round-robin), so load from
    other processes on a shared machine hits all of them alike."""
    times: dict[str, list[float]] = {label: [] for label in configs}
    for _ in range(rounds):
        for label, (make, n) in configs.items():
            step = make()
            for _ in range(warmup):
                step()
            times[label].append(timed(lambda: [step() for _ in range(n)], device, repeats=1, warmup=0) / n)
    return {label: statistics.median(ts) for label, ts in times.items()}


def binary_batch(r: int, b: int, d: int, device: torch.device) -> torch.Tensor:
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


def run_benchmarks(names: list[str], device_name: str = "auto", out: Path = Path("results/perf")) -> None:
    """Run the named benchmarks (all when empty) and write results/perf/<name>-<device type>.txt."""
    device = devices.resolve(device_name)
    header = (f"device: {results.device_name(str(device))}; torch {torch.__version__}; "
              f"commit {results.git_state()['commit']}")
    for name in names or list(BENCHMARKS):
        text = "\n".join([header, *BENCHMARKS.get(name)(device)]) + "\n"
        print(f"== {name}\n{text}", flush=True)
        path = Path(out) / f"{name}-{device.type}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
