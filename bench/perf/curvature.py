"""Benchmark: the cost of a K-FAC and a FOOF step relative to an SGD step on the deep autoencoder
of Martens & Grosse (784-1000-500-250-30-250-500-1000-784, logistic units, linear code, Bernoulli
output), at their minibatch of 1000, one replica.

    python -m bench.perf kfac_step_cost

K-FAC's inverses are refreshed every T3 = 20 steps (and its gamma grid tried then), so its cost is
amortized: the time of 20 consecutive steps, which contain exactly one refresh, divided by 20. The
paper promises that a K-FAC step costs at most "several times" an SGD step; our goal is <= 1.5x.
"""

from __future__ import annotations

from functools import partial

import torch

from bench.engine import data
from bench.engine.methods import get_method
from bench.models.mlp import MLP
from bench.perf import benchmark, interleaved_medians

LAYERS = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
ACTIVATIONS = ["sigmoid"] * 3 + ["linear"] + ["sigmoid"] * 3
PERIOD = 20


def _method(name: str, device: torch.device, **hp) -> object:
    model = MLP(LAYERS, seeds=[0], activations=ACTIVATIONS, loss="bernoulli", l2=1e-5).to(device)
    cls = get_method(name)
    return cls(model, **{**cls.defaults, **hp})


def _mnist_batch(device: torch.device, n: int = 1000) -> torch.Tensor:
    """The first n MNIST training images in [0, 1] (the cost depends on them only through the
    parameters' path, but a benchmark runs on the real data): (1, n, 784)."""
    x = data.load("mnist").x["train"][:n]
    return torch.as_tensor(x, dtype=torch.float32, device=device).unsqueeze(0) / 255.0


@benchmark
def kfac_step_cost(device: torch.device) -> list[str]:
    """ms per step and ratio to SGD, amortized over one inversion period of 20 steps.

    Every round builds each method afresh from the same initial network, takes the 3 steps in
    which K-FAC refreshes its inverses every time, then times the next steps (20 for the methods
    with a period of 20, which hold exactly one refresh; 5 for the others). Methods take turns
    (round-robin, median of 3 rounds), so load from other processes on a shared machine hits all
    of them alike. Denormals are flushed while timing, so that a trajectory that saturates the
    logistic units does not turn the measurement into one of denormal arithmetic."""
    x = _mnist_batch(device)
    configs = {
        "SGD (Nesterov momentum)": ("sgd", {"lr": 0.003, "momentum": 0.9}, 5),
        "K-FAC, paper (adaptive alpha, mu, lambda, gamma; T3=20)": ("kfac", {}, PERIOD),
        "K-FAC, fixed lr and damping (T3=20)": ("kfac", {"adaptive": False, "lr": 0.01, "damping": 1.0}, PERIOD),
        "FOOF (inverse every 20 steps)": ("foof", {"inverse_every": PERIOD, "lr": 0.01, "damping": 1.0}, PERIOD),
        "FOOF (inverse every step, Benzing's script default)": ("foof", {"inverse_every": 1, "lr": 0.01, "damping": 1.0}, 5),
    }
    flushed = torch.set_flush_denormal(True)
    try:
        times = interleaved_medians({label: (lambda name=name, hp=hp: partial(_method(name, device, **hp).step, x), steps)
                                     for label, (name, hp, steps) in configs.items()}, device)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
    base = times["SGD (Nesterov momentum)"]
    lines = [f"deep autoencoder {'-'.join(map(str, LAYERS))}, MNIST, B=1000, R=1, {torch.get_num_threads()} threads;"
             f" ms per step (amortized over its inversion period), median of 3 interleaved rounds"]
    lines += [f"  {label:<56s} {t * 1e3:8.1f} ms   {t / base:5.2f}x SGD" for label, t in times.items()]
    return lines
