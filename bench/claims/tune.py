"""Short-horizon grid search for one method of a claim: `python -m bench tune`.

    python -m bench tune foof-beats-kfac FOOF --profile paper --updates 300 \\
        --grid lr=0.1,0.3,1 damping=1,10 --jobs 2

Papers often say "tuned per method" without the values at our scale (or only for another batch
size). Each grid point trains seed 0 of the label's run in the given profile (its data, model and
batch size) for `--updates` steps and scores the claim's metric on its split at the end; diverged
points score nothing. The table goes to results/<profile>/tuning/<claim>--<label>.csv, the record a
claim's notes cite for the values it keeps; finished points are kept under tuning/runs and are not
recomputed when the grid is rerun or widened.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.claims.catalog import expand, get_claim
from bench.core.errors import ConfigError
from bench.core.layout import tuning_run_dir, tuning_table
from bench.core.spec import RunSpec, parse_scalar
from bench.engine import train


def grid_specs(claim_id: str, label: str, profile: str, updates: int, grid: dict[str, list]) -> list[RunSpec]:
    """One single-seed, `updates`-step spec per grid point, the label's other settings unchanged."""
    plan = expand(get_claim(claim_id), profile)
    if label not in plan.runs:
        raise ConfigError(f"claim {claim_id!r} has no label {label!r}; it has {', '.join(plan.runs)}")
    base = plan.runs[label]
    unknown = set(grid) - set(base.hparams)
    if unknown:
        raise ConfigError(f"--grid {sorted(unknown)}: not hyper-parameters of {base.method} "
                          f"(it has {', '.join(sorted(base.hparams))})")
    split = plan.claim.metric["split"]
    short = replace(base, profile=f"{profile}-tuning", seeds=(0,), epochs=1, train_subset=updates * base.batch_size,
                    eval_splits=(split,), final_eval_splits=(split,), final_eval_k=base.eval_k)
    return [replace(short, hparams={**base.hparams, **dict(zip(grid, point))})
            for point in itertools.product(*grid.values())]


def _run_point(spec: RunSpec, root: Path) -> Path:
    out = tuning_run_dir(root, spec.profile.removesuffix("-tuning"), spec.run_id)
    if not (out / "run.json").exists():
        train.run(spec, out, threads=1, progress=False)
    return out


def score(run: Path, metric: dict) -> tuple[str, float]:
    """(status, the metric's last value on its split), NaN when the run diverged."""
    meta = json.loads((run / "run.json").read_text())
    if meta["status"] != "ok":
        return meta["status"], float("nan")
    curve = pd.read_parquet(run / "curve.parquet")
    rows = curve[(curve.split == metric["split"]) & (curve.metric == metric["name"])]
    return "ok", float(rows.sort_values("step").value.iloc[-1])


def tune(claim_id: str, label: str, profile: str, updates: int, grid: dict[str, list], jobs: int,
         root: Path = Path("results")) -> pd.DataFrame:
    specs = grid_specs(claim_id, label, profile, updates, grid)
    metric = get_claim(claim_id).metric
    with ProcessPoolExecutor(jobs) as pool:
        runs = list(pool.map(_run_point, specs, itertools.repeat(root)))
    rows = []
    for spec, run in zip(specs, runs):
        status, value = score(run, metric)
        rows.append({**{k: spec.hparams[k] for k in grid}, "status": status, metric["name"]: value,
                     "updates": updates, "run_id": spec.run_id})
    table = pd.DataFrame(rows).sort_values(metric["name"], ascending=not metric.get("higher_is_better", True))
    out = tuning_table(root, profile, claim_id, label)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def parse_grid(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: write name=v1,v2,...")
        key, values = item.split("=", 1)
        grid[key] = [parse_scalar(v) for v in values.split(",")]
    return grid
