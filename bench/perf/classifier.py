"""Benchmark: the cost of one step of each classifier method relative to SGD on the same network,
the MLP 784-256-256-10 (ReLU) of the quick large-batch and Entropy-SGD claims, on MNIST, R=1.

    python -m bench perf classifier_step_cost

Entropy-SGD's step is an outer step: L SGLD inner steps, each on its own sub-batch of B, then the
outer update, so it reads L*B examples (methods/entropy_sgd.py). Its cost is printed per outer step
and per effective epoch, i.e. per training example read, relative to SGD's per example (Chaudhari
et al. 2017 count effective epochs as L times the outer epochs, Sec. 5).
"""

from __future__ import annotations

from functools import partial

import torch

from bench.engine import data
from bench.engine.methods import get_method
from bench.models.mlp import MLP
from bench.perf import benchmark, interleaved_medians

LAYERS = [784, 256, 256, 10]
BATCH = 100
INNER_STEPS = 5  # Entropy-SGD's L in the quick claim (bench/claims/entropysgd.yaml)
TRAIN_SIZE = 60000  # MNIST's training set: the Bayesian methods' N (KL weight 1/N, Langevin's N/B)


def _step(name: str, x: torch.Tensor, y: torch.Tensor, device: torch.device, **hp):
    torch.manual_seed(0)
    model = MLP(LAYERS, seeds=[0], activations="relu", loss="categorical", init="kaiming").to(device)
    cls = get_method(name)
    method = cls(model, **{**cls.defaults, **hp})
    method.prepare(TRAIN_SIZE)
    return partial(method.step, x, y)


def _mnist(device: torch.device, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n MNIST training images in [0, 1] and their labels: (1, n, 784), (1, n)."""
    ds = data.load("mnist")
    x = torch.as_tensor(ds.x["train"][:n], dtype=torch.float32, device=device).unsqueeze(0) / 255.0
    return x, torch.as_tensor(ds.y["train"][:n], dtype=torch.long, device=device).unsqueeze(0)


@benchmark
def classifier_step_cost(device: torch.device) -> list[str]:
    """ms per step and ratio to SGD (median of 3 interleaved rounds of 20 steps, each method built
    afresh from the same initial network); Entropy-SGD also per effective epoch."""
    x, y = _mnist(device, INNER_STEPS * BATCH)
    xb, yb = x[:, :BATCH], y[:, :BATCH]
    configs = {
        "SGD (Nesterov momentum)": ("sgd", xb, yb, {}),
        "Adam": ("adam", xb, yb, {}),
        "LARS": ("lars", xb, yb, {}),
        "LAMB": ("lamb", xb, yb, {}),
        f"Entropy-SGD, one outer step (L={INNER_STEPS})": ("entropy_sgd", x, y, {"inner_steps": INNER_STEPS}),
        "Bayes by backprop": ("bayes_by_backprop", xb, yb, {}),
        "MC dropout (p = 0.5)": ("mc_dropout", xb, yb, {}),
        "Deep ensemble, 5 members": ("deep_ensemble", xb, yb, {"members": 5}),
        "Bernoulli gates, spike-and-slab prior": ("bernoulli_gsm", xb, yb, {}),
        "SGLD": ("sgld", xb, yb, {}),
        "Structured SGLD, K=3 layer groups": ("structured_sgld", xb, yb, {"groups": 3}),
        "SWAG (SGD steps, moments per snapshot)": ("swag", xb, yb, {}),
        "Laplace (Adam MAP steps; fit at eval)": ("laplace", xb, yb, {}),
    }
    times = interleaved_medians({label: (partial(_step, name, xs, ys, device, **hp), 20)
                                 for label, (name, xs, ys, hp) in configs.items()}, device)
    base = times["SGD (Nesterov momentum)"]
    lines = [f"MLP {'-'.join(map(str, LAYERS))} (ReLU), MNIST, B={BATCH}, R=1, {torch.get_num_threads()} threads;"
             f" ms per step, median of 3 interleaved rounds of 20 steps"]
    lines += [f"  {label:<40s} {t * 1e3:8.2f} ms   {t / base:5.2f}x SGD" for label, t in times.items()]
    outer = times[f"Entropy-SGD, one outer step (L={INNER_STEPS})"]
    lines.append(f"  {'Entropy-SGD per effective epoch':<40s} {'':8s}      {outer / (INNER_STEPS * base):5.2f}x SGD"
                 f"  (per training example read: one outer step reads {INNER_STEPS} x {BATCH})")
    return lines
