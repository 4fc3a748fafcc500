"""The training loop of one lock-step group of seeds (DESIGN.md, rule 1), and its checkpoints.

The harness calls ``method.step(batch)``; only steps are timed (CUDA events on a GPU, so that
nothing waits for the device inside an epoch); evaluation runs every ``eval_every`` epochs outside
the timed region. Every row records epoch, examples seen, updates and train seconds. R seeds train in
lock-step as replicas of one model, so ``train_seconds`` is the wall-clock of all R together.

A replica whose step returns NaN/inf, whose evaluation gives a non-finite metric, or whose
workload metric blows up (worse than at its first evaluation by more than BLOW_UP - 1 = 9 times
that value's magnitude: a log-likelihood of -1.7e7 nats from -125, a loss of 1e4 from 2) is marked
``diverged`` with its last good step; its rows stop there while the other replicas go on.

The final evaluation runs at final_eval_k / STABILITY_DIVISOR and then at final_eval_k, so a
verdict can check that its estimate is stable in K (bench.claims.stats).

**Checkpoints.** At the end of an epoch, when ``checkpoint_every`` seconds have passed since the
last one, the loop's whole state (model, method with its optimiser and curvature caches, the rows
so far, the clock, each seed's data-order and training-noise generators; evaluation generators are
made afresh for each evaluation, so they have no state to keep) is written atomically to the
checkpoint file. A loop started on an existing checkpoint of the same run and seeds resumes after
its epoch and ends with the numbers an uninterrupted run gives, bit for bit on a CPU
(tests/test_resume.py); the train seconds count the timed steps of both sessions.
"""

from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from bench.core.errors import ConfigError
from bench.core.layout import atomic_write
from bench.core.spec import RunSpec
from bench.engine import results
from bench.engine.methods import get_method
from bench.models import build_model
from bench.nn import noise
from bench.workloads import workload_for
from bench.workloads.health import BLOW_UP_FACTOR as BLOW_UP
from bench.workloads.method import finite_mask

STABILITY_DIVISOR = 10  # the final metric is also evaluated with K / 10 samples
DEVICE_CHECK_EVERY = 50  # steps between reading a GPU's divergence flags back to the host
Data = dict[str, tuple[Tensor, Tensor | None]]


class StepTimer:
    """Seconds spent in method steps. On a CPU, perf_counter around each step; on a GPU, a pair of
    CUDA events per step, read once by `seconds()` (one synchronisation per epoch, not two per
    step): evaluation and data handling stay outside the clock either way."""

    def __init__(self, dev: torch.device):
        self.cuda, self.total, self.events = dev.type == "cuda", 0.0, []
        self._t0 = 0.0

    def start(self) -> None:
        if self.cuda:
            self.events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.events[-1][0].record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            self.events[-1][1].record()
        else:
            self.total += time.perf_counter() - self._t0

    def seconds(self) -> float:
        if self.cuda and self.events:
            self.events[-1][1].synchronize()
            self.total += sum(a.elapsed_time(b) for a, b in self.events) / 1000.0
            self.events = []
        return self.total


def _binarize_eval(x: Tensor, spec: RunSpec, seed: int) -> Tensor:
    """Evaluation sets under dynamic binarization get one fixed binarization, seeded by (dataset,
    split): every claim that scores a split scores the same binarized images."""
    if spec.transform != "dynamic_binarize":
        return x
    g = torch.Generator(device=x.device).manual_seed(seed)
    return (torch.rand(x.shape, generator=g, device=x.device) < x).to(x.dtype)


def eval_sets(spec: RunSpec, data: Data) -> Data:
    """The evaluated splits, cut to eval_subset (binarized once under dynamic binarization)."""
    out = {}
    for s in dict.fromkeys(spec.eval_splits + spec.final_eval_splits):
        if s not in data:
            raise ConfigError(f"dataset {spec.dataset!r} has no split {s!r} (it has {', '.join(data)}); "
                              f"set eval_splits/final_eval_splits, or holdout to carve one")
        xs, ys = data[s]
        out[s] = (_binarize_eval(xs[: spec.eval_subset], spec, zlib.crc32(f"{spec.dataset}/{s}".encode())),
                  None if ys is None else ys[: spec.eval_subset])
    return out


class Loop:
    """Trains spec.seeds in lock-step on `data` (split -> (x, y)); `run()` returns the tidy rows
    (results.CURVE_COLUMNS) and each seed's status record. `replica_names`: what the rows' `seed`
    column and the status records call each replica (default: its seed; a packed tuning run, whose
    replicas share one seed, names them 0..R-1)."""

    def __init__(self, spec: RunSpec, run_id: str, data: Data, dev: torch.device,
                 replica_names: list[int] | None = None):
        self.spec, self.run_id, self.dev = spec, run_id, dev
        self.names = list(spec.seeds) if replica_names is None else replica_names
        self.x_train, self.y_train = data["train"]
        self.steps_per_epoch = self.x_train.shape[0] // spec.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size {spec.batch_size} exceeds the {self.x_train.shape[0]} training examples")
        self.eval_sets = eval_sets(spec, data)
        self.model = build_model(spec.model, list(spec.seeds)).to(dev)
        self.workload = workload_for(self.model.family)
        self.workload.prepare(self.model, self.x_train, self.y_train)
        self.method = get_method(spec.method)(self.model, **spec.hparams)
        self.method.prepare(self.x_train.shape[0], None if self.y_train is None else self.y_train.unique())
        r = len(spec.seeds)
        self.rows: list[dict[str, Any]] = []
        self.alive = torch.ones(r, dtype=torch.bool)
        self.last_good = [0] * r
        self.diverged_at: list[int | None] = [None] * r
        self.clock = {"step": 0, "epoch": 0, "examples": 0, "train_seconds": 0.0}
        self.start: dict[str, Tensor] = {}  # split -> the health metric at the first evaluation, per replica
        self.last_evaluated = 0  # the step of the last evaluation that found every replica healthy
        self.order = noise.replica_generators(spec.seeds)  # each seed's data order
        self.resumed = False

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything the loop needs to go on: pickled whole by torch.save (the method keeps its
        reference to the model, its optimiser and curvature caches)."""
        return {"run_id": self.run_id, "seeds": list(self.spec.seeds), "model": self.model, "method": self.method,
                "rows": self.rows, "alive": self.alive, "last_good": self.last_good, "diverged_at": self.diverged_at,
                "clock": self.clock, "start": self.start, "last_evaluated": self.last_evaluated,
                "order": [g.get_state() for g in self.order], "noise": noise.states()}

    def restore(self, state: dict[str, Any]) -> None:
        self.model, self.method, self.rows = state["model"], state["method"], state["rows"]
        self.alive, self.last_good, self.diverged_at = state["alive"], state["last_good"], state["diverged_at"]
        self.clock, self.start, self.last_evaluated = state["clock"], state["start"], state["last_evaluated"]
        for g, saved in zip(self.order, state["order"]):
            g.set_state(saved)
        noise.set_states(state["noise"])

    def _resume(self, state: dict[str, Any] | None) -> bool:
        """Go on from a checkpoint's state when it is one of this run and these seeds."""
        if state is None or state.get("run_id") != self.run_id or state.get("seeds") != list(self.spec.seeds):
            return False
        self.restore(state)
        self.resumed = True
        return True

    # ------------------------------------------------------------------ recording and evaluation
    def _record(self, split: str, metric: str, eval_k: int, values: Tensor) -> None:
        values = values.detach().double().cpu()
        base = {"run_id": self.run_id, "method": self.spec.method, "dataset": self.spec.dataset,
                "model": self.spec.model_name, "profile": self.spec.profile}
        for r, seed in enumerate(self.names):
            if self.alive[r] and torch.isfinite(values[r]):
                self.rows.append({**base, **self.clock, "seed": seed, "split": split, "metric": metric,
                                  "eval_k": eval_k, "value": float(values[r])})

    def evaluate(self, k: int, splits: tuple[str, ...], final: bool = False) -> float:
        """Record every metric on the given splits; return the last split's mean of the workload's
        tuning metric over the live replicas (the progress bar shows it). A replica
        with a non-finite metric, or whose workload metric has blown up (worse than its first
        evaluation by more than BLOW_UP - 1 times that value's magnitude), is marked diverged at
        this step: its last good step is the previous one, and it records nothing more. `final`:
        the run's last evaluation, which adds the workload's analyses of the trained model
        (Workload.final_metrics, e.g. Keskar's sharpness). Each split draws from its own evaluation
        generators, keyed by (split, step, k, final) (bench.nn.noise.evaluation_noise): training
        noise is untouched, and the numbers do not depend on the evaluations made before."""
        r = len(self.spec.seeds)
        health_metric, higher_is_better = self.workload.tuning_metric
        shown, bad = float("nan"), torch.zeros(r, dtype=torch.bool)
        with torch.no_grad():
            for split in splits:
                xs, ys = self.eval_sets[split]
                xr, yr = xs.unsqueeze(0).expand(r, -1, -1), None if ys is None else ys.unsqueeze(0).expand(r, -1)
                with noise.evaluation_noise(split, self.clock["step"], k, final):
                    metrics = self.workload.evaluate(self.model, self.method, xr, k, yr,
                                                     final_split=split if final else None)
                for metric, values in metrics.items():
                    self._record(split, metric, k, values)
                    values = values.detach().double().cpu()
                    bad |= ~torch.isfinite(values.reshape(r, -1)).all(-1)
                    if metric == health_metric:
                        first = self.start.setdefault(split, values)
                        worse = (first - values) if higher_is_better else (values - first)
                        bad |= worse > (BLOW_UP - 1) * first.abs()
                        if self.alive.any():
                            shown = float(values[self.alive].mean())
        for i in torch.nonzero(self.alive & bad).flatten().tolist():
            self.diverged_at[i], self.last_good[i] = self.clock["step"], self.last_evaluated
        self.alive &= ~bad
        self.last_evaluated = self.clock["step"]
        return shown

    # ------------------------------------------------------------------ training
    def _epoch(self, bar: tqdm) -> None:
        """One pass over the training data. On a GPU nothing waits for the device inside the epoch:
        steps are timed by CUDA events and a divergence is found on the device (the exact step is
        kept) and read back every DEVICE_CHECK_EVERY steps; on a CPU both happen every step."""
        spec, dev = self.spec, self.dev
        timer = StepTimer(dev)
        check_every = 1 if dev.type == "cpu" else DEVICE_CHECK_EVERY
        perm = torch.stack([torch.randperm(self.x_train.shape[0], generator=g) for g in self.order]).to(dev)
        alive = self.alive.to(dev)
        first_bad = torch.full_like(alive, -1, dtype=torch.long)  # the step at which a replica diverged
        sums: dict[str, Tensor] = {}
        for b in range(self.steps_per_epoch):
            idx = perm[:, b * spec.batch_size:(b + 1) * spec.batch_size]
            x = self.x_train[idx]
            if spec.transform == "dynamic_binarize":
                x = (noise.rand(x.shape, x) < x).to(x.dtype)
            batch = (x,) if self.y_train is None else (x, self.y_train[idx])
            timer.start()
            out = self.method.step(*batch)
            timer.stop()
            self.clock["step"] += 1
            self.clock["examples"] += spec.batch_size
            ok = finite_mask(out)
            first_bad = torch.where(alive & ~ok & (first_bad < 0), self.clock["step"], first_bad)
            alive = alive & ok
            for key, v in out.items():
                sums[key] = sums.get(key, 0) + v.detach()
            bar.update(1)
            if (b + 1) % check_every == 0 and not bool(alive.any()):
                break
        self.clock["train_seconds"] += timer.seconds()
        for i, step in enumerate(first_bad.cpu().tolist()):
            if step >= 0:
                self.diverged_at[i], self.last_good[i] = step, step - 1
        self.alive = alive.cpu()
        for i in torch.nonzero(self.alive).flatten().tolist():
            self.last_good[i] = self.clock["step"]
        self.clock["epoch"] += 1
        for key, v in sums.items():
            self._record("train", key, 0, v / self.steps_per_epoch)

    def run(self, checkpoint: Path | None = None, checkpoint_every: float = 300.0, progress: bool = True,
            saved: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
        """Train (from `saved`, the state last written to `checkpoint`, when it is this run's) and
        evaluate; checkpoint every `checkpoint_every` seconds at an epoch end."""
        spec = self.spec
        if not self._resume(saved):
            self.evaluate(spec.eval_k, spec.eval_splits)
        bar = tqdm(total=spec.epochs * self.steps_per_epoch, initial=self.clock["epoch"] * self.steps_per_epoch,
                   desc=f"{spec.method} {self.run_id} seeds {list(spec.seeds)}", file=sys.stderr,
                   mininterval=2.0, disable=not progress, unit="step")
        last_save = time.monotonic()
        while self.clock["epoch"] < spec.epochs and self.alive.any():
            self._epoch(bar)
            epoch = self.clock["epoch"]
            if self.alive.any() and (epoch % spec.eval_every == 0 or epoch == spec.epochs):
                shown = self.evaluate(spec.eval_k, spec.eval_splits)
                bar.set_postfix_str(f"{spec.eval_splits[-1]} {self.workload.tuning_metric[0]} {shown:.4g}", refresh=False)
            if checkpoint is not None and epoch < spec.epochs and time.monotonic() - last_save >= checkpoint_every:
                atomic_write(checkpoint, lambda p: torch.save(self.state(), p))
                last_save = time.monotonic()
        bar.close()
        if self.alive.any() and spec.final_eval_k >= STABILITY_DIVISOR:  # the estimate's stability in K
            self.evaluate(spec.final_eval_k // STABILITY_DIVISOR, spec.final_eval_splits)
        if self.alive.any():
            self.evaluate(spec.final_eval_k, spec.final_eval_splits, final=True)
        seeds = {
            str(seed): ({"status": "ok"} if self.diverged_at[i] is None
                        else {"status": "diverged", "diverged_at_step": self.diverged_at[i],
                              "last_good_step": self.last_good[i]})
            for i, seed in enumerate(self.names)
        }
        return pd.DataFrame(self.rows, columns=results.CURVE_COLUMNS), seeds
