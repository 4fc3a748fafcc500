"""What a profile costs before it starts: every job the workflow would run, each projected from a few
steps measured on this device (issue 15).

    python -m bench plan --profile paper --estimate                # table: per claim, per kind, in total
    python -m bench plan --profile paper --estimate --share 4 --estimate-out estimate.csv   # or .json

**Jobs.** For every label of every claim (bench.claims.catalog.plan_all): its tuning runs, the
CONFIGS[profile] points of its initial grid (bench.claims.tuning.grid and tuning_spec: one tuning
seed, the claim's budget, a carved validation split), and its evaluation run: the tuned spec where a
selection already exists, else the base spec as a stand-in (tuning changes only the step size and
damping, which do not change the cost). Runs are deduplicated by run id, as Snakemake does; a run
several claims use is listed under each of them, marked shared, and counted once in the totals. Not
counted: the one-time widening of a grid whose best point lies on its edge (at most one more tuning
run per tuned knob of a label), Python start-up of each job, and the writing of the results. On a
GPU (or with `pack=True`) a grid that `bench select` packs (bench.claims.tuning, "Packing") is
costed as it trains: one lock-step run of its points as replicas, each point charged its share.

**Measurement.** Runs are grouped in cost classes: what sets the price of a step and of an
evaluation (method, model, dataset, transform, labels, batch size, replicas trained together, and
the hyper-parameters the tuning leaves alone, such as K). One run of each class is built exactly as
a run builds it (bench.engine.train.prepare_data, bench.engine.loop.Loop), then

* a step: `warmup` steps, then `blocks` blocks of `steps` steps each, batching included (a block
  covers at least one whole period of a method's `*_every` hyper-parameters, e.g. K-FAC's
  inverse_every = 20, so a periodic refresh is amortised as in a run), CUDA-synchronised; the step
  seconds are the mean of the fastest block (another process briefly taking the device or a CPU
  core slows one block, not both); fewer steps when they would take over `max_seconds` (the row
  says how many were timed);
* an evaluation at each K the class's runs use (the curve's eval_k, the final final_eval_k / 10
  and final_eval_k): one evaluation of 1, 4, 16, ... examples of the largest evaluated split, until
  it takes `min_eval_seconds` and twice the time of one example (or the split is used up, or
  `max_seconds` are spent, but never fewer than two slices; a longer stride while the fixed part
  dominates), fitted by least
  squares as fixed seconds + seconds per example: some metrics have a fixed part (BiHM's log Z
  from z_samples dreams, exact enumeration of a toy model's normaliser), the rest is linear in
  the examples. The fit is applied to each evaluated split's example count.

**Projection.** A run's seconds = groups x (setup + steps x step seconds + curve evaluations x the
evaluation of its eval_splits at eval_k + the final evaluation of its final_eval_splits at
final_eval_k / STABILITY_DIVISOR and at final_eval_k), where groups is R for `timing: per_seed`
(each seed trains alone) and 1 otherwise, the curve evaluations are epoch 0, every eval_every-th
epoch and the last (bench.engine.loop.Loop.run), and setup is the measured data preparation and
model construction. "Shared N ways" is the serial total divided by N: an optimistic bound that
ignores contention for the device.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bench.claims.catalog import ClaimPlan
from bench.claims.tuning import CONFIGS, grid, knobs, read_selection, tuned_spec, tuning_spec
from bench.core import devices
from bench.core.layout import atomic_write, run_dir, tuning_run_dir
from bench.core.spec import RunSpec
from bench.engine import data as datasets
from bench.engine import results
from bench.engine.loop import STABILITY_DIVISOR, Loop
from bench.engine.train import packable, prepare_data
from bench.nn import noise
from bench.workloads.method import finite_mask

GOAL_HOURS = 3.0  # issue 15: the whole paper catalogue in at most 3 hours on one H100/H200
TOP = 5  # dominating jobs shown
MAX_PERIOD = 50  # at most this many steps timed to cover a periodic refresh


# --------------------------------------------------------------------------- runs and their sizes
def split_sizes(spec: RunSpec) -> dict[str, int]:
    """Examples per split of a run, from the dataset's registered shapes, as prepare_data cuts them
    (holdout, carve_valid, train_subset; evaluated splits are cut to eval_subset later)."""
    sizes = {s: shape[0] for s, shape in datasets.get_spec(spec.dataset).shapes.items()}
    if spec.holdout:
        if "all" in sizes:
            sizes.update(train=sizes["all"] - spec.holdout, test=spec.holdout)
        elif "valid" not in sizes:
            sizes.update(valid=spec.holdout, train=sizes["train"] - spec.holdout)
    train = sizes.get("train", 0)
    if spec.train_subset is not None:
        train = min(train, spec.train_subset)
    if spec.carve_valid:
        sizes["valid"], train = spec.carve_valid, train - spec.carve_valid
    sizes["train"] = train
    return sizes


def evaluated_sizes(spec: RunSpec) -> dict[str, int]:
    """Examples of each evaluated split (cut to eval_subset), as bench.engine.loop.eval_sets does."""
    sizes = split_sizes(spec)
    cut = spec.eval_subset if spec.eval_subset is not None else math.inf
    return {s: int(min(sizes.get(s, 0), cut)) for s in dict.fromkeys(spec.eval_splits + spec.final_eval_splits)}


def curve_evaluations(spec: RunSpec) -> int:
    """Evaluations on the learning curve: epoch 0, every eval_every-th epoch and the last."""
    return 1 + sum(1 for e in range(1, spec.epochs + 1) if e % spec.eval_every == 0 or e == spec.epochs)


def final_ks(spec: RunSpec) -> list[int]:
    """K of the final evaluations (bench.engine.loop.Loop.run: K / STABILITY_DIVISOR first, then K)."""
    ks = [spec.final_eval_k // STABILITY_DIVISOR] if spec.final_eval_k >= STABILITY_DIVISOR else []
    return [*ks, spec.final_eval_k]


def groups_of(spec: RunSpec) -> int:
    """Lock-step groups a run trains one after the other: each seed alone under `timing: per_seed`."""
    return len(spec.seeds) if spec.timing == "per_seed" else 1


@dataclass
class Job:
    """One run the workflow would train: a tuning point or an evaluation run."""

    spec: RunSpec
    kind: str  # "tuning" | "evaluation"
    base_run_id: str  # the label's base configuration (its `select` job)
    uses: list[tuple[str, str]] = field(default_factory=list)  # (claim, label)
    stand_in: bool = False  # an evaluation run not tuned yet: its base spec stands in
    finished: bool = False  # its run.json exists already
    packed: int = 1  # tuning runs of its label trained together as the replicas of one run (itself included)

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def claims(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.uses))

    @property
    def shared(self) -> bool:
        return len(self.claims) > 1


def enumerate_jobs(plans: Iterable[ClaimPlan], results_root: Path = Path("results"),
                   pack: bool = False) -> dict[str, Job]:
    """run id -> Job: every tuning run and evaluation run of the plans, each once; `pack`: a label's
    tuning grid that bench.engine.train.packable accepts trains as the replicas of one run, as
    `bench select` packs it on a GPU."""
    jobs: dict[str, Job] = {}

    def add(spec: RunSpec, kind: str, base: RunSpec, claim: str, label: str, stand_in: bool = False,
            packed: int = 1) -> None:
        if spec.run_id not in jobs:
            folder = (tuning_run_dir if kind == "tuning" else run_dir)(results_root, spec.profile, spec.run_id)
            jobs[spec.run_id] = Job(spec, kind, base.run_id, stand_in=stand_in,
                                    finished=(folder / "run.json").exists(), packed=packed)
        if (claim, label) not in jobs[spec.run_id].uses:
            jobs[spec.run_id].uses.append((claim, label))

    for plan in plans:
        for label, base in plan.runs.items():
            specs = [tuning_spec(base, point) for point in grid(base, CONFIGS[base.profile])]
            packed = len(specs) if pack and packable(specs) is None else 1
            for spec in specs:
                add(spec, "tuning", base, plan.claim.id, label, packed=packed)
            selection = read_selection(results_root, base)
            add(tuned_spec(selection) if selection else base, "evaluation", base, plan.claim.id, label,
                stand_in=selection is None)
    return jobs


# --------------------------------------------------------------------------- cost classes and measurement
def _group_spec(spec: RunSpec) -> RunSpec:
    """The spec of one lock-step group (one seed under `timing: per_seed`)."""
    return replace(spec, seeds=spec.seeds[:1]) if spec.timing == "per_seed" else spec


def eval_class(spec: RunSpec) -> str:
    """What sets the price of an evaluation: the model, the method and the hyper-parameters the
    tuning leaves alone, the data and its transform, the replicas evaluated together."""
    tuned = set(knobs(spec))
    return json.dumps({"method": spec.method, "model": spec.model, "dataset": spec.dataset,
                       "transform": spec.transform, "labels": spec.labels, "replicas": len(_group_spec(spec).seeds),
                       "hparams": {k: v for k, v in spec.hparams.items() if k not in tuned}}, sort_keys=True)


def step_class(spec: RunSpec) -> str:
    """What sets the price of a step: the evaluation's class and the batch size."""
    return json.dumps({"eval": eval_class(spec), "batch_size": spec.batch_size}, sort_keys=True)


@dataclass
class Fit:
    """Seconds of one evaluation of n examples of one split: fixed + per_example x n."""

    fixed: float
    per_example: float
    examples: list[int]  # the slices measured

    def __call__(self, n: int) -> float:
        return self.fixed + self.per_example * n if n else 0.0


@dataclass
class Measured:
    step_seconds: float
    timed_steps: int
    setup_seconds: float
    evals: dict[int, Fit]  # K -> fit


def _period(spec: RunSpec) -> int:
    """Steps after which a method's periodic work repeats: the lcm of its `*_every` hyper-parameters."""
    period = 1
    for name, value in spec.hparams.items():
        if name.endswith("_every") and isinstance(value, int) and not isinstance(value, bool) and value > 1:
            period = math.lcm(period, value)
    return min(period, MAX_PERIOD)


class Meter:
    """Measures cost classes on one device, once each; data prepared for the last few data settings
    are kept (tuning runs of a label share theirs)."""

    def __init__(self, device: torch.device, warmup: int = 3, steps: int = 5, blocks: int = 2,
                 max_seconds: float | None = None, min_eval_seconds: float | None = None,
                 log: Callable[[str], None] = lambda line: None, keep: Path | None = None):
        self.dev = device
        self.cuda = device.type == "cuda"
        self.warmup, self.steps, self.blocks = warmup, steps, max(1, blocks)
        self.max_seconds = max_seconds if max_seconds is not None else (10.0 if self.cuda else 15.0)
        self.min_eval_seconds = min_eval_seconds if min_eval_seconds is not None else (0.05 if self.cuda else 0.3)
        self.log = log
        self.steps_cache: dict[str, tuple[float, int, float]] = {}  # step class -> step seconds, timed, setup
        self.evals: dict[tuple[str, int], Fit] = {}  # (eval class, K) -> fit
        self._data: dict[str, tuple[Any, float]] = {}
        self.keep = Path(keep) if keep is not None else None
        if self.keep is not None and self.keep.exists():
            self._load(self.keep)

    def _load(self, path: Path) -> None:
        """Measurements an earlier estimate kept in `path` (a ValueError when they were taken on
        another device: a step's price is the device's)."""
        doc = json.loads(path.read_text())
        here = results.device_name(str(self.dev))
        if doc.get("device") != here:
            raise ValueError(f"{path}: its measurements were taken on {doc.get('device')!r}, not on this device "
                             f"({here!r}); use another --estimate-keep file here (or delete this one)")
        self.steps_cache.update({k: (v[0], int(v[1]), v[2]) for k, v in doc["steps"].items()})
        self.evals.update({(e["class"], int(e["k"])): Fit(e["fixed"], e["per_example"], e["examples"])
                           for e in doc["evals"]})
        self.log(f"  {len(doc['steps'])} step and {len(doc['evals'])} evaluation measurements read from {path}")

    def _save(self) -> None:
        """Keep every measurement so far in `keep` (atomically, after each class): an estimate stopped
        by a time limit continues where it stopped, and parts measured in several sessions (where the
        data of some runs sits on another machine) add up to one estimate."""
        if self.keep is None:
            return
        doc = {"device": results.device_name(str(self.dev)),
               "steps": {k: list(v) for k, v in self.steps_cache.items()},
               "evals": [{"class": c, "k": k, "fixed": f.fixed, "per_example": f.per_example, "examples": f.examples}
                         for (c, k), f in self.evals.items()]}
        atomic_write(self.keep, lambda tmp: tmp.write_text(json.dumps(doc) + "\n"))

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    def _prepared(self, spec: RunSpec) -> tuple[Any, float]:
        key = json.dumps([spec.dataset, spec.transform, spec.labels, spec.holdout, spec.train_subset,
                          spec.carve_valid])
        if key not in self._data:
            if len(self._data) >= 2:
                self._data.pop(next(iter(self._data)))
            t0 = time.perf_counter()
            prepared = prepare_data(spec, self.dev)
            self._data[key] = (prepared, time.perf_counter() - t0)
        return self._data[key]

    def measure(self, spec: RunSpec) -> Measured:
        """The cost of `spec`'s class: its step, its setup and its evaluation at each K it uses."""
        group = _group_spec(spec)
        skey, ekey = step_class(spec), eval_class(spec)
        ks = sorted({group.eval_k, *final_ks(group)})
        if skey not in self.steps_cache or any((ekey, k) not in self.evals for k in ks):
            prepared, data_seconds = self._prepared(group)
            with noise.replica_noise(group.seeds, self.dev):
                t0 = time.perf_counter()
                loop = Loop(group, group.run_id, prepared, self.dev)
                self._sync()
                setup = data_seconds + time.perf_counter() - t0
                if skey not in self.steps_cache:
                    t0 = time.perf_counter()
                    step, timed = self._time_steps(loop, group)
                    self.steps_cache[skey] = (step, timed, setup)
                    self.log(f"  step {group.method} {group.model_name} B={group.batch_size} R={len(group.seeds)}: "
                             f"{step * 1e3:.2f} ms ({timed} steps timed in {time.perf_counter() - t0:.1f} s)")
                warm = False
                for k in ks:
                    if (ekey, k) not in self.evals:
                        t0 = time.perf_counter()
                        self.evals[(ekey, k)] = fit = self._time_evaluation(loop, k, warm)
                        warm = True
                        self.log(f"  evaluation {group.method} {group.model_name} R={len(group.seeds)} K={k}: "
                                 f"{fit.fixed:.3f} s + {fit.per_example * 1e3:.3f} ms per example (examples "
                                 f"{', '.join(map(str, fit.examples))}; {time.perf_counter() - t0:.1f} s)")
            self._save()
        step, timed, setup = self.steps_cache[skey]
        return Measured(step, timed, setup, {k: self.evals[(ekey, k)] for k in ks})

    def _time_steps(self, loop: Loop, spec: RunSpec) -> tuple[float, int]:
        """Mean wall-clock seconds of a step after the warm-up: batching (and the fresh binarization
        of dynamic_binarize) and the method's step, as in Loop._epoch."""
        x_train, y_train, n = loop.x_train, loop.y_train, loop.x_train.shape[0]
        r, b = len(spec.seeds), spec.batch_size

        def step() -> None:
            idx = torch.randint(n, (r, b), device=x_train.device)
            x = x_train[idx]
            if spec.transform == "dynamic_binarize":
                x = (noise.rand(x.shape, x) < x).to(x.dtype)
            ok = finite_mask(loop.method.step(*((x,) if y_train is None else (x, y_train[idx]))))
            if not self.cuda:  # the loop reads the divergence flags back every step on a CPU
                bool(ok.any())

        last = 0.0
        for _ in range(max(1, self.warmup)):
            self._sync()
            t0 = time.perf_counter()
            step()
            self._sync()
            last = time.perf_counter() - t0
        timed = max(self.steps, _period(spec))
        blocks = self.blocks
        if last * timed * blocks > self.max_seconds:
            blocks = 1
            timed = max(2, min(timed, int(self.max_seconds / max(last, 1e-9))))
        means = []
        for _ in range(blocks):
            self._sync()
            t0 = time.perf_counter()
            for _ in range(timed):
                step()
            self._sync()
            means.append((time.perf_counter() - t0) / timed)
        return min(means), timed * blocks

    def _time_evaluation(self, loop: Loop, k: int, warm: bool) -> Fit:
        """Fixed + per-example seconds of one evaluation at K, from growing slices of the largest
        evaluated split (unless `warm`, a first call on one example is a warm-up)."""
        sets = loop.eval_sets
        split = max(sets, key=lambda s: sets[s][0].shape[0])
        xs, ys = sets[split]
        total = xs.shape[0]

        def once(n: int) -> float:
            loop.eval_sets = {split: (xs[:n], None if ys is None else ys[:n])}
            self._sync()
            t0 = time.perf_counter()
            loop.evaluate(k, (split,))
            self._sync()
            return time.perf_counter() - t0

        try:
            if not warm:
                once(1)
            points = [(1, once(1))]
            spent = points[0][1]
            # a second slice even past max_seconds: one point cannot tell a fixed part (an RBM's AIS
            # log Z) from a per-example one, and calling it all per-example over-states a run 10^4-fold
            while points[-1][0] < total and (len(points) < 2 or spent < self.max_seconds and (
                    points[-1][1] < self.min_eval_seconds or points[-1][1] < 2 * points[0][1])):
                # a time still dominated by the fixed part: a longer stride, so the slope shows
                fixed = len(points) > 1 and points[-1][1] < 1.25 * points[0][1]
                n = min(total, points[-1][0] * (16 if fixed else 4))
                points.append((n, once(n)))
                spent += points[-1][1]
        finally:
            loop.eval_sets = sets
        loop.rows.clear()  # the measurement's rows are not needed
        if len(points) < 2:  # a split of one example
            (n, t), = points
            return Fit(t, 0.0, [n])
        # least squares through every slice: the small ones pin the fixed part, the large one the slope
        mean_n = sum(n for n, _ in points) / len(points)
        mean_t = sum(t for _, t in points) / len(points)
        per = sum((n - mean_n) * (t - mean_t) for n, t in points) / sum((n - mean_n) ** 2 for n, _ in points)
        per = max(per, 0.0)
        return Fit(max(mean_t - per * mean_n, 0.0), per, [n for n, _ in points])


# --------------------------------------------------------------------------- projection
@dataclass
class Projection:
    job: Job
    groups: int
    steps_per_epoch: int
    steps_total: int
    step_seconds: float
    timed_steps: int
    curve_evaluations: int
    train_seconds: float  # all groups
    curve_eval_seconds: float
    final_eval_seconds: float
    setup_seconds: float

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.curve_eval_seconds + self.final_eval_seconds + self.setup_seconds

    def why(self) -> str:
        s = self.job.spec
        g = f"{self.groups} seeds one at a time (timing: per_seed) x " if self.groups > 1 else ""
        if self.job.packed > 1:
            g = f"1/{self.job.packed} of a run of {self.job.packed} packed tuning runs as replicas: " + g
        sizes = evaluated_sizes(s)
        curve = "+".join(f"{sizes[x]} {x}" for x in s.eval_splits)
        final = "+".join(f"{sizes[x]} {x}" for x in s.final_eval_splits)
        return (f"{g}{self.steps_total // self.groups} steps ({s.epochs} epochs x {self.steps_per_epoch}) x "
                f"{self.step_seconds * 1e3:.3g} ms = {_h(self.train_seconds)}; {self.curve_evaluations} "
                f"evaluations at K={s.eval_k} of {curve} examples = {_h(self.curve_eval_seconds)}; final at "
                f"K={'/'.join(map(str, final_ks(s)))} of {final} = {_h(self.final_eval_seconds)}; data and model "
                f"set-up {_h(self.setup_seconds)}")


def project(job: Job, meter: Meter) -> Projection:
    """A run's seconds; a tuning run packed with others is its share (1 / packed) of the packed run,
    measured as a lock-step run of `packed` replicas."""
    spec, n = job.spec, job.packed
    if n > 1:
        spec = replace(spec, seeds=spec.seeds * n, timing="lockstep")
    group = _group_spec(spec)
    m = meter.measure(spec)
    groups = groups_of(spec)
    steps_per_epoch = split_sizes(spec)["train"] // spec.batch_size
    sizes = evaluated_sizes(spec)
    n_curve = curve_evaluations(spec)
    curve = n_curve * sum(m.evals[group.eval_k](sizes[s]) for s in spec.eval_splits)
    final = sum(m.evals[k](sizes[s]) for k in final_ks(spec) for s in spec.final_eval_splits)
    steps = spec.epochs * steps_per_epoch
    return Projection(job, groups, steps_per_epoch, groups * steps, m.step_seconds, m.timed_steps, n_curve,
                      groups * steps * m.step_seconds / n, groups * curve / n, groups * final / n,
                      groups * m.setup_seconds / n)


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.3g} h" if seconds >= 360 else f"{seconds:.3g} s"


@dataclass
class Estimate:
    profile: str
    device: str
    date: str
    share: int
    configs: int
    runs: list[Projection]
    plans: list[ClaimPlan]
    measure_seconds: float
    failed: dict[str, str] = field(default_factory=dict)  # run id -> why it could not be measured (not in the totals)

    @property
    def total_seconds(self) -> float:
        return sum(p.seconds for p in self.runs)

    def kind_seconds(self, kind: str) -> float:
        return sum(p.seconds for p in self.runs if p.job.kind == kind)

    def claim_rows(self, claim: str) -> list[Projection]:
        return [p for p in self.runs if claim in p.job.claims]

    def jobs(self) -> list[dict[str, Any]]:
        """Snakemake's jobs: one `select` per base configuration (its tuning runs, each counted once)
        and one `train` per evaluation run, most expensive first."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.runs:
            key = ("select " if p.job.kind == "tuning" else "train ") + (
                p.job.base_run_id if p.job.kind == "tuning" else p.job.run_id)
            j = out.setdefault(key, {"job": key, "kind": p.job.kind, "seconds": 0.0, "runs": [], "uses": []})
            j["seconds"] += p.seconds
            j["runs"].append(p)
            j["uses"] += [u for u in p.job.uses if u not in j["uses"]]
        return sorted(out.values(), key=lambda j: -j["seconds"])


def estimate(plans: list[ClaimPlan], results_root: Path = Path("results"), device: str = "auto", share: int = 4,
             threads: int | None = 1, log: Callable[[str], None] = lambda line: None, pack: bool | None = None,
             **meter_options: Any) -> Estimate:
    """Project every job of the plans on `device` (threads: CPU threads, 1 like a workflow run);
    `pack`: tuning grids packed as replicas (None: on a GPU, as `bench select` does)."""
    if threads:
        torch.set_num_threads(threads)
    dev = devices.resolve(device)
    started = time.perf_counter()
    jobs = enumerate_jobs(plans, results_root, pack=dev.type == "cuda" if pack is None else pack)
    meter = Meter(dev, log=log, **meter_options)
    ordered = sorted(jobs.values(), key=lambda j: (j.spec.dataset, j.spec.transform, j.spec.holdout or 0,
                                                   j.spec.train_subset or 0, j.spec.carve_valid or 0))
    runs, failed = [], {}
    for job in ordered:  # a run that cannot be built or stepped here is listed, not a reason to stop
        try:
            runs.append(project(job, meter))
        except Exception as exc:  # noqa: BLE001 -- the message goes into the estimate
            failed[job.run_id] = f"{job.spec.method} on {job.spec.dataset}: {type(exc).__name__}: {exc}"[:300]
            log(f"  FAILED {job.run_id}: {failed[job.run_id]}")
    order = {run_id: i for i, run_id in enumerate(jobs)}
    runs.sort(key=lambda p: order[p.job.run_id])  # back in plan order
    profile = plans[0].profile if plans else "?"
    return Estimate(profile, results.device_name(str(dev)), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    share, CONFIGS.get(profile, 0), runs, plans, time.perf_counter() - started, failed)


# --------------------------------------------------------------------------- output
def _hours(seconds: float) -> str:
    """A duration in the unit that reads best: seconds, minutes or hours."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def table(est: Estimate) -> str:
    """The estimate as text: per claim (its labels' tuning and evaluation), per kind, in total, the
    dominating jobs and why."""
    n = est.share
    lines = [(f"cost estimate of the {est.profile!r} profile on {est.device} ({est.date}); "
             f"measured in {est.measure_seconds:.0f} s"),
             (f"tuning: {est.configs} configurations per label, 1 seed, the claim's budget (the one-time widening of a "
             f"grid whose best point is on its edge is not counted); evaluation runs not tuned yet: their base spec "
             f"stands in (same cost)"), ""]
    header = f"  {'label':28s} {'base run':12s} {'method':14s} {'tuning':>10s} {'evaluation':>10s}  "
    for plan in est.plans:
        if plan.unavailable:
            lines.append(f"{plan.claim.id}: not estimated, {plan.unavailable}")
            continue
        rows = est.claim_rows(plan.claim.id)
        total = sum(p.seconds for p in rows)
        shared = sum(p.seconds for p in rows if p.job.shared)
        lines.append(f"{plan.claim.id}: {_hours(total)} serial"
                     + (f" ({_hours(shared)} of it in runs shared with other claims)" if shared else ""))
        lines.append(header)
        for label, base in plan.runs.items():
            mine = [p for p in rows if (plan.claim.id, label) in p.job.uses]
            tune = sum(p.seconds for p in mine if p.job.kind == "tuning")
            ev = sum(p.seconds for p in mine if p.job.kind == "evaluation")
            others = sorted({c for p in mine for c in p.job.claims} - {plan.claim.id})
            mark = f"shared with {len(others)} other claim{'s' * (len(others) > 1)}" if others else ""
            lines.append(f"  {label[:28]:28s} {base.run_id:12s} {base.method[:14]:14s} {_hours(tune):>10s} "
                         f"{_hours(ev):>10s}  {mark}")
    total = est.total_seconds
    done = sum(p.seconds for p in est.runs if p.job.finished)
    lines += ["", f"{'':24s} {'runs':>6s} {'serial':>10s} {f'shared {n} ways':>16s}"]
    for kind in ("tuning", "evaluation"):
        count = sum(1 for p in est.runs if p.job.kind == kind)
        s = est.kind_seconds(kind)
        lines.append(f"{kind:24s} {count:6d} {_hours(s):>10s} {_hours(s / n):>16s}")
    lines.append(f"{'total':24s} {len(est.runs):6d} {_hours(total):>10s} {_hours(total / n):>16s}")
    if done:
        lines.append(f"{'of which finished':24s} {sum(p.job.finished for p in est.runs):6d} {_hours(done):>10s}")
    lines += [f"shared {n} ways = the serial total / {n}: an optimistic bound that ignores contention for the device",
              f"total: {total / 3600:.2f} h serial, {total / 3600 / n:.2f} h shared {n} ways on {est.device}"]
    steps = sum(p.steps_total for p in est.runs)
    lines.append(f"steps: {steps:,} in all, one after another within a run; "
                 f"{sum(p.train_seconds for p in est.runs) / max(steps, 1) * 1e3:.3g} ms each on average here")
    if est.profile == "paper":
        lines.append(f"the goal of {GOAL_HOURS:g} h leaves {GOAL_HOURS * 3600 / max(steps, 1) * 1e6:.0f} us per step "
                     f"(before any evaluation): the runs with the most steps set the cost on any device")
        met = total / 3600 <= GOAL_HOURS
        lines.append(f"goal: the paper profile in <= {GOAL_HOURS:g} h on one H100/H200 -- on this device "
                     f"{'met' if met else 'not met'} serially ({total / 3600:.2f} h)"
                     + ("" if torch.cuda.is_available() else "; measured on a CPU, so it says which runs "
                        "dominate, not whether a GPU meets the goal"))
    if est.failed:
        lines += ["", f"NOT MEASURED ({len(est.failed)} runs, not in the totals above; a run would fail alike):"]
        lines += [f"  {run_id}: {why}" for run_id, why in est.failed.items()]
    lines += ["", f"the {TOP} jobs that dominate (a `select` job trains a label's tuning runs one after the other):"]
    for j in est.jobs()[:TOP]:
        p = max(j["runs"], key=lambda r: r.seconds)
        who = ", ".join(f"{c}/{label}" for c, label in j["uses"][:3]) + (" ..." if len(j["uses"]) > 3 else "")
        count = f"{len(j['runs'])} runs, the largest: " if len(j["runs"]) > 1 else ""
        lines.append(f"  {_hours(j['seconds']):>9s}  {j['job']} ({p.job.spec.method}, {p.job.spec.dataset}; {who})")
        lines.append(f"             {count}{p.why()}")
    return "\n".join(lines)


COLUMNS = ["run_id", "kind", "base_run_id", "claims", "labels", "shared", "stand_in", "finished", "packed", "method",
           "dataset",
           "model", "seeds", "groups", "batch_size", "epochs", "steps_per_epoch", "steps_total", "step_seconds",
           "timed_steps", "curve_evaluations", "eval_k", "final_eval_k", "train_seconds", "curve_eval_seconds",
           "final_eval_seconds", "setup_seconds", "seconds", "hours"]


def rows(est: Estimate) -> list[dict[str, Any]]:
    out = []
    for p in est.runs:
        s, j = p.job.spec, p.job
        out.append({"run_id": j.run_id, "kind": j.kind, "base_run_id": j.base_run_id, "claims": " ".join(j.claims),
                    "labels": "; ".join(f"{c}/{label}" for c, label in j.uses), "shared": j.shared,
                    "stand_in": j.stand_in, "finished": j.finished, "packed": j.packed, "method": s.method, "dataset": s.dataset,
                    "model": s.model_name, "seeds": len(s.seeds), "groups": p.groups, "batch_size": s.batch_size,
                    "epochs": s.epochs, "steps_per_epoch": p.steps_per_epoch, "steps_total": p.steps_total,
                    "step_seconds": round(p.step_seconds, 6), "timed_steps": p.timed_steps,
                    "curve_evaluations": p.curve_evaluations, "eval_k": s.eval_k, "final_eval_k": s.final_eval_k,
                    "train_seconds": round(p.train_seconds, 2), "curve_eval_seconds": round(p.curve_eval_seconds, 2),
                    "final_eval_seconds": round(p.final_eval_seconds, 2), "setup_seconds": round(p.setup_seconds, 2),
                    "seconds": round(p.seconds, 2), "hours": round(p.seconds / 3600, 4)})
    return out


def write(est: Estimate, path: Path) -> Path:
    """One row per run as CSV, or (a .json path) the totals, the dominating jobs and the rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        total = est.total_seconds
        doc = {"profile": est.profile, "device": est.device, "date": est.date, "share": est.share,
               "configs_per_label": est.configs, "measure_seconds": round(est.measure_seconds, 1),
               "hours": {"serial": total / 3600, f"shared_{est.share}_ways": total / 3600 / est.share,
                         **{kind: est.kind_seconds(kind) / 3600 for kind in ("tuning", "evaluation")}},
               "claims": {plan.claim.id: (plan.unavailable or sum(p.seconds for p in est.claim_rows(plan.claim.id)) / 3600)
                          for plan in est.plans},
               "dominating": [{"job": j["job"], "hours": j["seconds"] / 3600,
                               "why": max(j["runs"], key=lambda r: r.seconds).why()} for j in est.jobs()[:TOP]],
               "runs": rows(est), "failed": est.failed}
        path.write_text(json.dumps(doc, indent=1) + "\n")
    else:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows(est))
    return path
