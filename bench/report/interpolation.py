"""A claim's 1-D interpolation (its figure's `interpolation: [label_a, label_b]`): Keskar et al.'s
parametric plot between the two labels' tuned evaluation runs, seed by seed
(bench.engine.interpolation), written as a tidy table and a figure (bench.core.layout.interpolation_paths):

* ``results/P/tables/<claim>--interpolation.csv``  seed, alpha, split, metric, value
* ``figures/P/<claim>--interpolation.png``          cross-entropy and accuracy against alpha
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.claims.catalog import Claim, expand
from bench.claims.tuning import evaluation_spec
from bench.core.errors import ConfigError
from bench.core.layout import atomic_write, interpolation_paths, run_dir
from bench.engine.interpolation import COLUMNS, run_interpolation
from bench.report import figures


def write_interpolation(claim: Claim, profile: str, root: Path = Path(".")) -> dict[str, Path]:
    """Compute and write the claim's interpolation table and figure (a placeholder figure and an
    empty table when its data is unavailable); returns their paths. A claim without an
    interpolation is a ConfigError; an untuned label or unfinished run names what to run first."""
    labels = claim.interpolation
    if labels is None:
        raise ConfigError(f"claim {claim.id!r} has no figure.interpolation: name two labels there to interpolate")
    out = interpolation_paths(root, profile, claim.id)
    plan = expand(claim, profile)
    if plan.unavailable:
        atomic_write(out["table"], lambda p: pd.DataFrame(columns=COLUMNS).to_csv(p, index=False))
        figures.placeholder(out["figure"], claim.id, plan.unavailable)
        return out
    results_root = Path(root) / "results"
    specs = [evaluation_spec(results_root, plan.runs[label], claim.id, label) for label in labels]
    dirs = [run_dir(results_root, profile, spec.run_id) for spec in specs]
    for label, d in zip(labels, dirs):
        if not (d / "run.json").exists():
            raise ConfigError(f"claim {claim.id!r}, label {label!r}: run {d.name} has not finished; run `snakemake` first")
    table = run_interpolation(specs[0], dirs[0], specs[1], dirs[1])
    atomic_write(out["table"], lambda p: table.to_csv(p, index=False))
    figures.interpolation_figure(out["figure"], table, claim.id, labels, profile)
    return out
