"""Equal-budget tuning, a stage of the workflow (DESIGN.md, "Fair comparisons").

Every method label of every claim, the proposed method and each baseline alike, gets the same
search before its evaluation run: CONFIGS[profile] configurations on a log grid around the claim's
value of each knob the method declares (`Method.tuned_knobs`: its step size, and damping for the
natural-gradient and Kronecker-factored methods), spaced STEP decades apart, as a full grid when
the knobs allow (one knob: CONFIGS points; two knobs: sqrt(CONFIGS) per knob). Each configuration
trains at the claim's own budget (epochs, data, batch, model) with TUNING_SEED, a seed disjoint
from every evaluation seed, and is scored by the workload's tuning metric (the log-likelihood, or
the loss for MLPs) on a validation split carved from its training data (the last
VALID_FRACTION of it, at most the claim's eval_subset examples). A diverged configuration scores
worst. When the best configuration sits on the edge of the grid in a knob of at least 3 values, the
grid is widened once by one point beyond that edge; if the best is then still on the edge, the
selection says so. (A knob of 2 values has no interior: at CONFIGS = 4 a two-knob method's 2 x 2
grid is not widened, so it never gets more configurations than a one-knob method's 4 + 1.)

A plain grid, not Optuna's samplers: it is deterministic, the same for every method, cheap to
explain in the report, and its few points per knob leave a sampler nothing to learn from.

The selection of one base run (a label's configuration before tuning; claims that share a run
share its tuning) is written to results/<profile>/tuning/<base-run-id>.json with every point, its
score, the choice, the edge flags and the tuned evaluation spec, whose run is what the claim's
verdict reads. Tuning points are cached like every run under results/<profile>/tuning/runs/.

**Packing.** A grid whose points differ in the learning rate alone, of a method whose learning rate
acts only through its optimizer (`Method.packs_lr`), trains as the replicas of one run
(bench.engine.train.run_packed): same seed, replica r at point r's rate. On a GPU a step of these
small models costs about the same for 1 or 9 replicas, so a label's tuning costs about one run
instead of CONFIGS runs; the scores equal those of the points trained one at a time up to float
rounding (tests/test_packing.py). `select` packs on a GPU by default (`bench select --pack`).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

from bench.core import devices
from bench.core.errors import ConfigError
from bench.core.layout import atomic_write, tuning_run_dir, tuning_selection
from bench.core.spec import RunSpec
from bench.engine import data, results, train
from bench.engine.methods import get_method
from bench.workloads import workload_for

CONFIGS = {"smoke": 4, "quick": 4, "paper": 9}  # configurations per label and profile: the equal budget
STEP = 0.5  # decades between grid points
TUNING_SEED = 1000  # evaluation seeds must be smaller
VALID_FRACTION = 0.2


def knobs(base: RunSpec) -> tuple[str, ...]:
    return get_method(base.method).tuned_knobs(base.hparams)


def grid(base: RunSpec, configs: int) -> list[dict[str, float]]:
    """The initial grid: per knob m = round(configs ** (1 / n_knobs)) log-spaced values centred on
    the base value, STEP decades apart (a method with no knob: the base configuration alone, which
    `select` does not train: there is nothing to choose)."""
    names = knobs(base)
    if not names:
        return [{}]
    m = max(1, round(configs ** (1 / len(names))))
    axes = [[_value(base, name, i - (m - 1) / 2) for i in range(m)] for name in names]
    return [dict(zip(names, point)) for point in product(*axes)]


def _value(base: RunSpec, name: str, offset: float) -> float:
    center = float(base.hparams[name])
    if center <= 0:
        raise ConfigError(f"cannot tune {name}={center} of method {base.method!r} on a log grid: it must be > 0")
    return float(f"{center * 10 ** (STEP * offset):.6g}")


def tuning_spec(base: RunSpec, point: dict[str, float]) -> RunSpec:
    """The base configuration with `point`, one tuning seed, scored on a carved validation split at
    the end of training only (the learning curve of a tuning run is not needed), keeping no
    parameters (keep_params is for the evaluation run's analyses)."""
    if max(base.seeds) >= TUNING_SEED:
        raise ConfigError(f"evaluation seeds must be < {TUNING_SEED} (the tuning seed); got {list(base.seeds)}")
    n_train = min(base.train_subset or math.inf, _train_size(base))  # a subset larger than the data is all of it
    carve = max(1, min(int(VALID_FRACTION * n_train), base.eval_subset or n_train))
    # full-batch training stays full-batch on the smaller training set
    batch = min(base.batch_size, n_train - carve)
    return replace(base, hparams={**base.hparams, **point}, seeds=(TUNING_SEED,), carve_valid=carve, batch_size=batch,
                   eval_every=base.epochs, eval_splits=("valid",), final_eval_splits=("valid",),
                   final_eval_k=base.eval_k, keep_params=False)


def _train_size(base: RunSpec) -> int:
    """The dataset's training examples (from its registered shapes)."""
    shapes = data.get_spec(base.dataset).shapes
    return shapes["train"][0] if "train" in shapes else shapes["all"][0] - (base.holdout or 0)


def score(run: Path, metric: str, higher_is_better: bool) -> tuple[str, float]:
    """(status, the tuning metric on 'valid' at the end: the mean of the estimates at the last step);
    a diverged run scores the worst value."""
    curve, meta = results.read_run(run)
    rows = curve[(curve.split == "valid") & (curve.metric == metric)]
    worst = -math.inf if higher_is_better else math.inf
    if meta["status"] != "ok" or rows.empty:
        return meta["status"] if meta["status"] != "ok" else "no score", worst
    value = float(rows[rows.step == rows.step.max()].value.mean())
    return "ok", value if math.isfinite(value) else worst


def _run_points(points: list[dict], base: RunSpec, results_root: Path, metric: str, better: bool,
                threads: int, pack: bool) -> list[dict[str, Any]]:
    """Train the points not trained yet (`pack`: as the replicas of one run where they differ in the
    learning rate alone, bench.engine.train.run_packed; else one after the other) and score all."""
    specs = [tuning_spec(base, point) for point in points]
    folders = [tuning_run_dir(results_root, base.profile, spec.run_id) for spec in specs]
    todo = [i for i, folder in enumerate(folders) if not (folder / "run.json").exists()]
    if pack and not train.packable([specs[i] for i in todo]):
        train.run_packed([specs[i] for i in todo], [folders[i] for i in todo], threads=threads, progress=False)
    else:
        for i in todo:
            train.run(specs[i], folders[i], threads=threads, progress=False)
    out = []
    for point, spec, folder in zip(points, specs, folders):
        status, value = score(folder, metric, better)
        out.append({**point, "status": status, "score": value, "run_id": spec.run_id})
    return out


def _best(rows: list[dict], better: bool) -> dict:
    """The best-scoring configuration; the first of equals (grid order), so the choice is deterministic."""
    return sorted(rows, key=lambda r: -r["score"] if better else r["score"])[0]


def _edges(rows: list[dict], best: dict, names: tuple[str, ...]) -> dict[str, str]:
    """knob -> 'low'/'high' where the best value is the grid's smallest/largest of that knob. A knob
    with fewer than 3 values has no interior, so no edge to test (and is never widened: widening it
    would give a two-knob method more configurations than a one-knob one)."""
    out = {}
    for name in names:
        values = sorted({r[name] for r in rows})
        if len(values) < 3:
            continue
        if best[name] == values[0]:
            out[name] = "low"
        elif best[name] == values[-1]:
            out[name] = "high"
    return out


def select(base: RunSpec, results_root: Path = Path("results"), threads: int = 1,
           pack: bool | None = None) -> dict[str, Any]:
    """Run the grid (and its one widening), choose, write and return the selection. `pack`: train a
    grid that differs in the learning rate alone as the replicas of one run (None: on a GPU, where
    replicas cost little more than one run, not on a CPU, where they cost about as much as the runs
    one after the other); the scores are the same up to float rounding."""
    names = knobs(base)
    if pack is None:
        pack = devices.resolve("auto").type == "cuda"
    metric, better = workload_for(base.model["family"]).tuning_score(base.model)
    rows: list[dict[str, Any]] = []
    widened: list[dict[str, float]] = []
    chosen: dict[str, float] = {}
    still: dict[str, str] = {}
    if names:  # a method with no knob (EM) has nothing to search: its base configuration is evaluated, untrained here
        rows = _run_points(grid(base, CONFIGS[base.profile]), base, results_root, metric, better, threads, pack)
        best = _best(rows, better)
        for name, side in _edges(rows, best, names).items():
            values = sorted({r[name] for r in rows})
            beyond = values[0] / 10 ** STEP if side == "low" else values[-1] * 10 ** STEP
            widened.append({**{n: best[n] for n in names}, name: float(f"{beyond:.6g}")})
        if widened:
            rows += _run_points(widened, base, results_root, metric, better, threads, pack)
            best = _best(rows, better)
        still = _edges(rows, best, names)
        chosen = {name: best[name] for name in names}
    evaluation = replace(base, hparams={**base.hparams, **chosen})
    selection = {
        "base_run_id": base.run_id, "method": base.method, "knobs": list(names), "metric": metric,
        "higher_is_better": better, "configs": CONFIGS[base.profile], "step_decades": STEP,
        "seed": TUNING_SEED, "carve_valid": tuning_spec(base, chosen).carve_valid,
        "points": [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.items()}
                   for r in rows],  # strict JSON: a diverged point's score is null
        "chosen": chosen, "widened": bool(widened),
        "on_edge": still, "all_diverged": bool(rows) and all(r["status"] != "ok" for r in rows),
        "eval_run_id": evaluation.run_id, "eval_spec": evaluation.to_dict(),
    }
    out = tuning_selection(results_root, base.profile, base.run_id)
    atomic_write(out, lambda p: p.write_text(json.dumps(selection, indent=2)))
    return selection


def read_selection(results_root: Path, base: RunSpec) -> dict[str, Any] | None:
    path = tuning_selection(results_root, base.profile, base.run_id)
    return json.loads(path.read_text()) if path.exists() else None


def tuned_spec(selection: dict[str, Any]) -> RunSpec:
    """The evaluation run a selection names."""
    return RunSpec.from_dict(selection["eval_spec"])


def evaluation_spec(results_root: Path, base: RunSpec, claim_id: str, label: str) -> RunSpec:
    """The tuned evaluation run of a label, or a ConfigError saying how to tune it first."""
    selection = read_selection(results_root, base)
    if selection is None:
        raise ConfigError(f"claim {claim_id!r}, label {label!r}: not tuned yet (no {tuning_selection(results_root, base.profile, base.run_id)}); "
                          f"run `python -m bench select --spec '{base.to_json()}'` or `snakemake`")
    return tuned_spec(selection)


def trained_packed(selection: dict[str, Any], results_root: Path, profile: str) -> int:
    """How many of the selection's points trained as replicas of one run (their run.json's
    `packed`, bench.engine.train.run_packed); 0 when each trained alone."""
    metas = [results.read_run(tuning_run_dir(results_root, profile, p["run_id"]))[1] for p in selection["points"]]
    return sum(1 for meta in metas if meta.get("packed"))


def selection_words(selection: dict[str, Any]) -> str:
    """The choice in one line for the report."""
    if not selection["knobs"]:
        return "nothing to tune (the method declares no knob)"
    chosen = ", ".join(f"{k}={v:g}" for k, v in selection["chosen"].items())
    words = f"{chosen} (best of {len(selection['points'])} configurations by validation {selection['metric']})"
    if selection["widened"]:
        words += "; grid widened once"
    coarse = [k for k in selection["knobs"] if len({p[k] for p in selection["points"]}) < 3]
    if coarse:
        words += f"; {', '.join(coarse)}: 2 values, too few to tell whether the best lies inside the grid"
    if selection["on_edge"]:
        words += "; still on the edge of the grid in " + ", ".join(f"{k} ({v})" for k, v in selection["on_edge"].items())
    if selection["all_diverged"]:
        words += "; every configuration diverged"
    return words
