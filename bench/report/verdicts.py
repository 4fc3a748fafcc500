"""Per-claim evaluation (table, figure, verdict); the report documents are rendered by
:mod:`bench.report.markdown` (``write_report`` is re-exported here for the command line).

Outputs, for a profile P:
* ``results/P/claims/<claim>.json``  verdict, numbers, settings, devices (machine-readable)
* ``results/P/tables/<claim>.csv``   one row per method: final metric ± CI, best, epochs, seconds
* ``figures/P/<claim>.png``           the claim's figure
* ``results/P/summary.parquet``       every run's curve rows of the profile
* ``results/REPORT.md``               quick and paper profiles side by side (the smoke profile
                                      writes ``results/smoke/REPORT.md`` instead), by markdown.py
* ``results/P/REPORT.rst``            the profile's verdict summary (Snakemake HTML report), by markdown.py
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.claims import stats
from bench.claims.catalog import Claim, ClaimPlan, expand
from bench.claims.diagnostics import diagnose, rule_labels
from bench.claims.tuning import read_selection, selection_words, tuned_spec
from bench.core.layout import (
    atomic_write,
    claim_paths,
    run_dir,
    summary_path,
)
from bench.engine import results
from bench.report import figures
from bench.report.markdown import write_report
from bench.workloads import workload_for

__all__ = ["evaluate_claim", "write_report", "write_summary"]


def _headline(outcome: dict[str, Any], rule: str) -> str:
    """Our number in one line for the summary table."""
    nums = outcome["numbers"]
    if not nums:
        return "—"
    if rule in ("better", "ordering", "equivalent", "not_worse"):
        return "; ".join(f"Δ {stats.estimate_words(n['diff'], n['lo'], n['hi'], '+')}" for n in nums)
    if rule == "faster_to_target":
        return "; ".join("target missed" if n.get("ratio") is None else
                         f"{n['x']} ratio {stats.estimate_words(n['ratio'], n['lo'], n['hi'])}" for n in nums)
    return f"{nums[0]['mean']:.2f}"


def evaluate_claim(claim: Claim, profile: str, root: Path = Path(".")) -> dict[str, Any]:
    """Compute a claim's table, figure and verdict from its finished runs; write them; return the json."""
    plan: ClaimPlan = expand(claim, profile)
    out = claim_paths(root, profile, claim.id)
    base = {"claim": claim.id, "profile": profile, "statement": claim.spec["statement"],
            "paper": claim.spec.get("paper", ""), "rule": claim.spec["verdict"]["rule"],
            "claim_digest": claim.digest(), "computed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "figure": str(out["figure"].relative_to(root)), "table": str(out["table"].relative_to(root)),
            "substitutions": claim.substitutions(profile)}
    if plan.unavailable:
        figures.placeholder(out["figure"], claim.id, plan.unavailable)
        out["table"].parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(columns=["method"]).to_csv(out["table"], index=False)
        return _write_json(out["json"], {**base, "verdict": "data unavailable", "detail": plan.unavailable,
                                         "headline": "—", "numbers": [], "methods": []})
    results_root = Path(root) / "results"
    selections = {label: read_selection(results_root, spec) for label, spec in plan.runs.items()}
    untuned = [label for label, s in selections.items() if s is None]
    if untuned:
        detail = f"not tuned yet: {', '.join(untuned)} (the equal-budget tuning stage runs first)"
        figures.placeholder(out["figure"], claim.id, detail)
        return _write_json(out["json"], {**base, "verdict": "not run", "detail": detail, "headline": "—",
                                         "numbers": [], "methods": []})
    runs = {label: tuned_spec(selections[label]) for label in plan.runs}
    run_dirs = {label: run_dir(results_root, profile, spec.run_id) for label, spec in runs.items()}
    missing = [label for label, d in run_dirs.items() if not (d / "run.json").exists()]
    if missing:
        detail = f"runs not finished for: {', '.join(missing)}"
        figures.placeholder(out["figure"], claim.id, detail)
        return _write_json(out["json"], {**base, "verdict": "not run", "detail": detail, "headline": "—",
                                         "numbers": [], "methods": []})
    metas, frames = {}, []
    for label, d in run_dirs.items():
        curve, meta = results.read_run(d)
        frames.append(curve.assign(label=label))
        metas[label] = meta
    curves = pd.concat(frames, ignore_index=True)
    # diverged seeds stay in the figure but leave the statistics (their last values are not final ones)
    gone = {(label, int(seed)): s for label, m in metas.items() for seed, s in m["seeds"].items() if s["status"] != "ok"}
    healthy = curves[[(label, int(seed)) not in gone for label, seed in zip(curves.label, curves.seed)]]
    metric = claim.metric
    table = stats.method_table(healthy, metric, metas)
    diagnosis = diagnose(healthy, {label: spec.model for label, spec in runs.items()}, metric)
    outcome = stats.verdict(healthy, claim.spec["verdict"], metric, claim.paper_numbers, profile, diagnosis.unconverged)
    outcome = diagnosis.veto(outcome, rule_labels(claim.spec["verdict"]), metric["name"])
    commits = sorted({str(m["git"]["commit"]) + ("+dirty" if m["git"]["dirty"] else "") for m in metas.values()})
    if len(commits) > 1 or any(c.endswith("+dirty") for c in commits):
        outcome["detail"] += (f"; provenance: runs from {', '.join(commits)} (not one clean commit: rerun "
                              f"`snakemake --forcerun train` on a clean checkout to recompute them together)")
    if gone:
        outcome["detail"] += "; diverged seeds, left out of the statistics: " + ", ".join(
            f"{label} seed {seed} (at step {s.get('diverged_at_step')}, last good step {s.get('last_good_step')})"
            for (label, seed), s in gone.items())
    no_healthy = [label for label, m in metas.items() if all(s["status"] != "ok" for s in m["seeds"].values())]
    if no_healthy:
        outcome["detail"] += f"; no healthy seed: {', '.join(no_healthy)}"
    out["table"].parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out["table"], index=False)
    exact = all(metric["name"] in workload_for(spec.model["family"]).exact_metrics(spec.model) for spec in runs.values())
    figures.claim_figure(out["figure"], curves, claim.id, claim.spec["statement"], metric, claim.paper_numbers,
                         profile, claim.x_axes, claim.yscale, exact)
    settings = runs[next(iter(runs))]
    return _write_json(out["json"], {
        **base, **outcome, "headline": _headline(outcome, base["rule"]),
        "metric": metric, "methods": table.replace({np.nan: None}).to_dict("records"),
        "runs": {label: spec.run_id for label, spec in runs.items()},
        "settings": {k: v for k, v in settings.to_dict().items() if k not in ("method", "hparams")},
        "hparams": {label: spec.hparams for label, spec in runs.items()},
        "models": {label: spec.model for label, spec in runs.items()},
        "batch_sizes": {label: spec.batch_size for label, spec in runs.items()},
        "tuning": {label: {"words": selection_words(s), "knobs": s["knobs"], "metric": s["metric"],
                           "points": s["points"], "chosen": s["chosen"], "on_edge": s["on_edge"]}
                   for label, s in selections.items()},
        **diagnosis.to_json(),
        "devices": sorted({m["device"] for m in metas.values()}),
        "commits": commits,
    })


def _write_json(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Write a verdict; what the profile runs instead of the paper's setup ends its verdict line,
    whatever the verdict."""
    if payload["substitutions"]:
        payload = {**payload, "detail": f"{payload['detail']}; substitutions: {'; '.join(payload['substitutions'])}"}
    atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2, default=str)))
    return payload


def write_summary(root: Path, profile: str) -> Path:
    """results/<profile>/summary.parquet: all finished runs' curve rows of the profile."""
    run_root = run_dir(Path(root) / "results", profile, "")
    dirs = sorted(d for d in run_root.glob("*") if (d / "run.json").exists()) if run_root.exists() else []
    out = summary_path(root, profile)
    frame = results.load_curves(dirs)
    atomic_write(out, lambda p: frame.to_parquet(p, index=False))
    return out
