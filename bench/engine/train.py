"""The one training loop (DESIGN.md, rule 1): batching, timing, evaluation schedule, divergence.

The harness calls ``method.step(batch)``; only steps are timed (``torch.cuda.synchronize()``
before each clock read on a GPU); evaluation runs every ``eval_every`` epochs outside the timed
region. Every row records epoch, examples seen, updates and train seconds. R seeds train in
lock-step as replicas of one model, so ``train_seconds`` is the wall-clock of all R together.

A replica whose step returns NaN/inf, whose evaluation gives a non-finite metric, or whose
workload metric blows up (worse than at its first evaluation by more than BLOW_UP - 1 = 9 times
that value's magnitude: a log-likelihood of -1.7e7 nats from -125, a loss of 1e4 from 2) is marked
``diverged`` with its last good step; its rows stop there while the other replicas go on. The run's
status is ``ok`` or ``diverged`` (some seed diverged); the verdicts leave diverged seeds out and say so.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from bench.core import devices
from bench.core.errors import ConfigError
from bench.core.spec import RunSpec
from bench.engine import data as datasets
from bench.engine import results
from bench.engine.methods import get_method, source_files
from bench.models import build_model
from bench.workloads import workload_for
from bench.workloads.health import BLOW_UP_FACTOR as BLOW_UP
from bench.workloads.method import finite_mask


def prepare_data(spec: RunSpec, device: torch.device) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Split name -> (x float (N, D), labels (N,) or None) on the device.

    transform: 'none' keeps binary data as 0/1 (grey data must pick a transform),
    'unit_interval' divides grey pixels by 255, 'dynamic_binarize' keeps grey/255 as Bernoulli
    means and the loop draws a fresh binarization of each training batch (IWAE-style).
    holdout: a dataset without a validation split gets the last `holdout` training examples as
    'valid'; one stored as a single 'all' array (Frey faces) is shuffled once with a fixed seed and
    split into 'train' and the last `holdout` examples as 'test'. train_subset then applies to train.
    carve_valid (tuning runs): the last `carve_valid` examples of the training subset become 'valid'
    and the rest 'train', whatever validation split the dataset has.
    """
    ds = datasets.load(spec.dataset)
    if not ds.binary and spec.transform == "none":
        raise ConfigError(
            f"dataset {spec.dataset!r} is grey-scale: set transform to 'unit_interval' or 'dynamic_binarize'"
        )
    x, y = dict(ds.x), dict(ds.y)
    if spec.holdout:
        if "all" in x:
            order = np.random.default_rng(0).permutation(len(x["all"]))
            x["train"], x["test"] = x["all"][order[:-spec.holdout]], x["all"][order[-spec.holdout:]]
        elif "valid" not in x:
            x["valid"], x["train"] = x["train"][-spec.holdout:], x["train"][:-spec.holdout]
            if "train" in y:
                y["valid"], y["train"] = y["train"][-spec.holdout:], y["train"][:-spec.holdout]
    if spec.labels and not y:
        raise ConfigError(f"dataset {spec.dataset!r} has no labels, but the run asks for them (labels: true)")
    if spec.carve_valid:  # a validation split carved from the (subset of the) training data, for tuning
        n = spec.carve_valid
        subset = slice(None, spec.train_subset)
        x["train"], x["valid"] = x["train"][subset][:-n], x["train"][subset][-n:]
        if "train" in y:
            y["train"], y["valid"] = y["train"][subset][:-n], y["train"][subset][-n:]
    out = {}
    for split, xs in x.items():
        ys = y.get(split) if spec.labels else None
        if split == "train" and spec.train_subset is not None:
            xs = xs[: spec.train_subset]
            ys = ys[: spec.train_subset] if ys is not None else None
        scale = 255.0 if xs.dtype == np.uint8 and not ds.binary else 1.0
        out[split] = (torch.as_tensor(xs, dtype=torch.float32, device=device) / scale,
                      None if ys is None else torch.as_tensor(ys.astype(np.int64), device=device))
    return out


def dataset_checksum(name: str) -> str:
    """sha256 of the dataset file the run read ('generated' for a paper's in-memory toy)."""
    path = datasets.locate(name)
    return datasets.file_digest(path) if path is not None else "generated"


def _binarize_eval(x: Tensor, spec: RunSpec, seed: int) -> Tensor:
    """Evaluation sets under dynamic binarization get one fixed binarization, seeded by (dataset,
    split): every claim that scores a split scores the same binarized images."""
    if spec.transform != "dynamic_binarize":
        return x
    g = torch.Generator(device=x.device).manual_seed(seed)
    return (torch.rand(x.shape, generator=g, device=x.device) < x).to(x.dtype)


class _Recorder:
    """Collects tidy rows for the replicas that are still finite."""

    def __init__(self, spec: RunSpec, run_id: str):
        self.spec, self.run_id, self.rows = spec, run_id, []
        self.base = {
            "run_id": run_id, "method": spec.method, "dataset": spec.dataset,
            "model": spec.model_name, "profile": spec.profile,
        }

    def add(self, alive: Tensor, clock: dict[str, Any], split: str, metric: str, eval_k: int, values: Tensor) -> None:
        values = values.detach().double().cpu()
        for r, seed in enumerate(self.spec.seeds):
            if alive[r] and torch.isfinite(values[r]):
                self.rows.append({**self.base, **clock, "seed": seed, "split": split, "metric": metric,
                                  "eval_k": eval_k, "value": float(values[r])})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=results.CURVE_COLUMNS)


def run(spec: RunSpec, out_dir: Path, device: str = "auto", threads: int | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one run; write curve.parquet and run.json to out_dir. Returns run.json."""
    if threads:
        torch.set_num_threads(threads)
    dev = devices.resolve(device)
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    torch.manual_seed(zlib.crc32(repr(spec.seeds).encode()))  # the sampling noise of the whole run
    method_cls = get_method(spec.method)
    workload_for(spec.model["family"]).check_transform(spec.model, spec.transform)
    data = prepare_data(spec, dev)
    model = build_model(spec.model, list(spec.seeds)).to(dev)
    workload = workload_for(model.family)
    workload.prepare(model, data["train"][0])
    method = method_cls(model, **spec.hparams)
    x_train, y_train = data["train"]
    r, n_train = len(spec.seeds), x_train.shape[0]
    steps_per_epoch = n_train // spec.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size {spec.batch_size} exceeds the {n_train} training examples")

    eval_sets = {}
    for s in dict.fromkeys(spec.eval_splits + spec.final_eval_splits):
        if s not in data:
            raise ConfigError(f"dataset {spec.dataset!r} has no split {s!r} (it has {', '.join(data)}); "
                              f"set eval_splits/final_eval_splits, or holdout to carve one")
        xs, ys = data[s]
        eval_sets[s] = (_binarize_eval(xs[: spec.eval_subset], spec, zlib.crc32(f"{spec.dataset}/{s}".encode())),
                        None if ys is None else ys[: spec.eval_subset])

    rec = _Recorder(spec, spec.run_id)
    alive = torch.ones(r, dtype=torch.bool)
    last_good = [0] * r
    diverged_at: list[int | None] = [None] * r
    clock = {"step": 0, "epoch": 0, "examples": 0, "train_seconds": 0.0}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    health_metric, higher_is_better = workload.tuning_metric
    start: dict[str, Tensor] = {}  # split -> the health metric at the first evaluation, per replica
    last_evaluated = [0]  # the step of the last evaluation that found every replica healthy

    def evaluate(k: int, splits: tuple[str, ...]) -> float:
        """Record every metric on the given splits; return the last split's mean 'll'. A replica
        with a non-finite metric, or whose workload metric has blown up (worse than its first
        evaluation by more than BLOW_UP - 1 times that value's magnitude), is marked diverged at
        this step: its last good step is the previous one, and it records nothing more."""
        shown = float("nan")
        bad = torch.zeros(r, dtype=torch.bool)
        with torch.no_grad():
            for split in splits:
                xs, ys = eval_sets[split]
                xr, yr = xs.unsqueeze(0).expand(r, -1, -1), None if ys is None else ys.unsqueeze(0).expand(r, -1)
                for metric, values in workload.evaluate(model, method, xr, k, yr).items():
                    rec.add(alive, clock, split, metric, k, values)
                    values = values.detach().double().cpu()
                    bad |= ~torch.isfinite(values.reshape(r, -1)).all(-1)
                    if metric == health_metric:
                        first = start.setdefault(split, values)
                        worse = (first - values) if higher_is_better else (values - first)
                        bad |= worse > (BLOW_UP - 1) * first.abs()
                    if metric == "ll" and alive.any():
                        shown = float(values[alive].mean())
        for i in torch.nonzero(alive & bad).flatten().tolist():
            diverged_at[i], last_good[i] = clock["step"], last_evaluated[0]
        alive.logical_and_(~bad)  # in place: `alive` is the loop's
        last_evaluated[0] = clock["step"]
        return shown

    evaluate(spec.eval_k, spec.eval_splits)
    bar = tqdm(total=spec.epochs * steps_per_epoch, desc=f"{spec.method} {spec.run_id}", file=sys.stderr,
               mininterval=2.0, disable=not progress, unit="step")
    gens = [torch.Generator().manual_seed(int(s)) for s in spec.seeds]
    for epoch in range(1, spec.epochs + 1):
        perm = torch.stack([torch.randperm(n_train, generator=g) for g in gens]).to(dev)
        sums: dict[str, Tensor] = {}
        for b in range(steps_per_epoch):
            idx = perm[:, b * spec.batch_size:(b + 1) * spec.batch_size]
            x = x_train[idx]
            if spec.transform == "dynamic_binarize":
                x = (torch.rand_like(x) < x).to(x.dtype)
            batch = (x,) if y_train is None else (x, y_train[idx])
            sync()
            t0 = time.perf_counter()
            out = method.step(*batch)
            sync()
            clock["train_seconds"] += time.perf_counter() - t0
            clock["step"] += 1
            clock["examples"] += spec.batch_size
            ok = finite_mask(out).cpu()
            for i in torch.nonzero(alive & ~ok).flatten().tolist():
                diverged_at[i] = clock["step"]
            alive &= ok
            for i in torch.nonzero(alive).flatten().tolist():
                last_good[i] = clock["step"]
            for key, v in out.items():
                sums[key] = sums.get(key, 0) + v.detach()
            bar.update(1)
            if not alive.any():
                break
        clock["epoch"] = epoch
        for key, v in sums.items():
            rec.add(alive, clock, "train", key, 0, v / steps_per_epoch)
        if not alive.any():
            break
        if epoch % spec.eval_every == 0 or epoch == spec.epochs:
            bar.set_postfix_str(f"{spec.eval_splits[-1]} ll {evaluate(spec.eval_k, spec.eval_splits):.2f}", refresh=False)
    bar.close()
    if alive.any():
        evaluate(spec.final_eval_k, spec.final_eval_splits)

    status = {
        str(seed): ({"status": "ok"} if diverged_at[i] is None
                    else {"status": "diverged", "diverged_at_step": diverged_at[i], "last_good_step": last_good[i]})
        for i, seed in enumerate(spec.seeds)
    }
    meta = {
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "status": "ok" if all(d is None for d in diverged_at) else "diverged",
        "seeds": status,
        "steps_per_epoch": steps_per_epoch,
        "train_seconds": clock["train_seconds"],
        "device": results.device_name(str(dev)),
        "dataset_sha256": dataset_checksum(spec.dataset),
        "git": results.git_state(),
        "method_sources": results.sources_hash(source_files(method_cls)),
        "bench_sources": results.sources_hash(results.bench_sources()),
        "packages": results.package_versions(),
        "started": started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    results.write_run(Path(out_dir), rec.frame(), meta)
    return meta
