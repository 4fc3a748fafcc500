"""Keskar et al.'s 1-D parametric plot between two trained runs (Keskar, Mudigere, Nocedal,
Smelyanskiy & Tang, "On Large-Batch Training for Deep Learning: Generalization Gap and Sharp
Minima", ICLR 2017, arXiv 1609.04836, Sec. 2.2.1, Figure 3; the authors' plot_parametric_plot.py):

    f(alpha) = f((1 - alpha) x_a + alpha x_b),   alpha in ALPHAS (25 points of [-1, 2]),

x_a (the small-batch minimizer, alpha = 0) and x_b (the large-batch one, alpha = 1) the final
parameters of one seed in two runs that kept them (`keep_params`, bench.engine.results.PARAMS),
every entry of the model's state mixed alike. f is each metric of the model's workload
(`Workload.metrics`: for an mlp classifier 'loss', the mean cross-entropy in nats, and 'error', the
misclassification rate) on each evaluated split of run a (its eval_subset, as its own evaluations
read it), so alpha = 0 and alpha = 1 give each run's own final numbers. Evaluation only: nothing
is trained, nothing random is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError
from bench.core.spec import RunSpec
from bench.engine import results
from bench.engine.loop import Data, eval_sets
from bench.engine.methods import get_method
from bench.engine.train import prepare_data
from bench.models import build_model
from bench.nn import noise
from bench.workloads import workload_for

ALPHAS = tuple(float(a) for a in np.linspace(-1.0, 2.0, 25))  # Keskar's grid: 25 points of [-1, 2], step 0.125
METRICS = ("loss", "error")
COLUMNS = ["seed", "alpha", "split", "metric", "value"]
SHARED = ("dataset", "transform", "labels", "model", "eval_subset", "train_subset", "holdout", "downsample")

State = dict[str, Tensor]
Metrics = Callable[[nn.Module, Tensor, Tensor | None], dict[str, Tensor]]  # (model, x (R, N, D), y) -> name -> (R,)


def mix(a: State, b: State, alpha: float) -> State:
    """(1 - alpha) a + alpha b, entry by entry, for two states of one model (same names, shapes)."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ConfigError("the two runs' parameters differ in names or shapes: interpolate runs of one model")
    return {k: (1 - alpha) * a[k] + alpha * b[k] for k in a}


def interpolate(model: nn.Module, metrics: Metrics, a: State, b: State, sets: Data, seeds: Sequence[int],
                alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """The metrics along the line from state a (alpha 0) to state b (alpha 1): for each alpha, `model`
    (R replicas, one per seed) loads mix(a, b, alpha) and `metrics(model, x, y)` -> {name: (R,)} is
    read on each split of `sets` (split -> (x (N, D), y (N,) or None), the same for every replica).
    Returns the tidy table COLUMNS, one row per (seed, alpha, split, metric in METRICS)."""
    r = len(seeds)
    rows = []
    with torch.no_grad():
        for alpha in alphas:
            model.load_state_dict(mix(a, b, alpha))
            for split, (xs, ys) in sets.items():
                x = xs.unsqueeze(0).expand(r, -1, -1)
                y = None if ys is None else ys.unsqueeze(0).expand(r, -1)
                values = metrics(model, x, y)
                for name in METRICS:
                    for seed, v in zip(seeds, values[name].double().cpu().tolist()):
                        rows.append({"seed": seed, "alpha": alpha, "split": split, "metric": name, "value": v})
    return pd.DataFrame(rows, columns=COLUMNS)


def _healthy(meta: dict) -> set[int]:
    return {int(s) for s, record in meta["seeds"].items() if record["status"] == "ok"}


def run_interpolation(spec_a: RunSpec, dir_a: Path, spec_b: RunSpec, dir_b: Path,
                      alphas: Sequence[float] = ALPHAS, device: str = "cpu") -> pd.DataFrame:
    """Keskar's interpolation between the final parameters of the finished runs in dir_a (alpha 0)
    and dir_b (alpha 1), per seed both ran without diverging, on run a's evaluated splits (its
    eval_splits and final_eval_splits, cut to its eval_subset). The runs must read the same data
    and model (SHARED fields; a ConfigError otherwise); a run that kept no parameters is a
    CorruptRun naming the fix. Returns interpolate's table."""
    fields_a, fields_b = spec_a.to_dict(), spec_b.to_dict()
    differ = [f for f in SHARED if fields_a.get(f) != fields_b.get(f)]
    if differ:
        raise ConfigError(f"runs {spec_a.run_id} and {spec_b.run_id} differ in {', '.join(differ)}: an interpolation "
                          f"needs two runs of one model on the same data")
    (_, meta_a), (_, meta_b) = results.read_run(dir_a), results.read_run(dir_b)
    (seeds_a, state_a), (seeds_b, state_b) = results.read_params(dir_a), results.read_params(dir_b)
    seeds = sorted(set(seeds_a) & set(seeds_b) & _healthy(meta_a) & _healthy(meta_b))
    if not seeds:
        raise ConfigError(f"runs {spec_a.run_id} and {spec_b.run_id} share no seed that trained without diverging")
    a = {k: v[[seeds_a.index(s) for s in seeds]] for k, v in state_a.items()}
    b = {k: v[[seeds_b.index(s) for s in seeds]] for k, v in state_b.items()}
    dev = torch.device(device)
    sets = eval_sets(spec_a, prepare_data(spec_a, dev))
    with noise.replica_noise(seeds, dev):
        model = build_model(spec_a.model, seeds).to(dev)
        method = get_method(spec_a.method)(model, **spec_a.hparams)
    workload = workload_for(spec_a.model["family"])
    a, b = ({k: v.to(dev) for k, v in s.items()} for s in (a, b))
    return interpolate(model, lambda m, x, y: workload.metrics(m, method, x, spec_a.final_eval_k, y),
                       a, b, sets, seeds, alphas)
