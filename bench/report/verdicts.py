"""Per-claim evaluation (table, figure, verdict) and the report.

Outputs, for a profile P:
* ``results/P/claims/<claim>.json``  verdict, numbers, settings, devices (machine-readable)
* ``results/P/tables/<claim>.csv``   one row per method: final metric ± CI, best, epochs, seconds
* ``figures/P/<claim>.png``           the claim's figure
* ``results/P/summary.parquet``       every run's curve rows of the profile
* ``results/REPORT.md``               quick and paper profiles side by side (the smoke profile
                                      writes ``results/smoke/REPORT.md`` instead)
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.claims import stats
from bench.claims.catalog import Claim, ClaimPlan, expand, load_claims
from bench.core.layout import (
    MAIN_PROFILES,
    atomic_write,
    claim_paths,
    report_path,
    run_dir,
    summary_path,
)
from bench.engine import results
from bench.report import figures

VERDICT_MARK = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced",
                "inconclusive": "⚠️ inconclusive", "not run": "⏳ not run", "data unavailable": "🚫 data unavailable"}


def _headline(outcome: dict[str, Any], rule: str) -> str:
    """Our number in one line for the summary table."""
    nums = outcome["numbers"]
    if not nums:
        return "—"
    if rule in ("better", "ordering"):
        return "; ".join(f"Δ {n['diff']:+.2f} [{n['lo']:+.2f}, {n['hi']:+.2f}]" for n in nums)
    if rule == "faster_to_target":
        return "; ".join("target missed" if n.get("ratio") is None else
                         f"{n['x']} ratio {n['ratio']:.2f} [{n['lo']:.2f}, {n['hi']:.2f}]" for n in nums)
    return f"{nums[0]['mean']:.2f}"


def evaluate_claim(claim: Claim, profile: str, root: Path = Path(".")) -> dict[str, Any]:
    """Compute a claim's table, figure and verdict from its finished runs; write them; return the json."""
    plan: ClaimPlan = expand(claim, profile)
    out = claim_paths(root, profile, claim.id)
    base = {"claim": claim.id, "profile": profile, "statement": claim.spec["statement"],
            "paper": claim.spec.get("paper", ""), "rule": claim.spec["verdict"]["rule"],
            "claim_digest": claim.digest(), "computed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "figure": str(out["figure"].relative_to(root)), "table": str(out["table"].relative_to(root))}
    if plan.unavailable:
        figures.placeholder(out["figure"], claim.id, plan.unavailable)
        out["table"].parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(columns=["method"]).to_csv(out["table"], index=False)
        return _write_json(out["json"], {**base, "verdict": "data unavailable", "detail": plan.unavailable,
                                         "headline": "—", "numbers": [], "methods": []})
    run_dirs = {label: run_dir(Path(root) / "results", profile, spec.run_id) for label, spec in plan.runs.items()}
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
    metric = claim.metric
    table = stats.method_table(curves, metric, metas)
    outcome = stats.verdict(curves, claim.spec["verdict"], metric, claim.paper_numbers, profile)
    diverged = {label: int(n) for label, n in zip(table.method, table.diverged) if n}
    if diverged:
        outcome["detail"] += "; diverged seeds: " + ", ".join(f"{k}: {v}" for k, v in diverged.items())
    out["table"].parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out["table"], index=False)
    figures.claim_figure(out["figure"], curves, claim.id, claim.spec["statement"], metric, claim.paper_numbers,
                         profile, claim.x_axes, claim.yscale)
    settings = plan.runs[next(iter(plan.runs))]
    return _write_json(out["json"], {
        **base, **outcome, "headline": _headline(outcome, base["rule"]),
        "metric": metric, "methods": table.replace({np.nan: None}).to_dict("records"),
        "runs": {label: spec.run_id for label, spec in plan.runs.items()},
        "settings": {k: v for k, v in settings.to_dict().items() if k not in ("method", "hparams")},
        "hparams": {label: spec.hparams for label, spec in plan.runs.items()},
        "models": {label: spec.model for label, spec in plan.runs.items()},
        "devices": sorted({m["device"] for m in metas.values()}),
        "commits": sorted({str(m["git"]["commit"]) + ("+dirty" if m["git"]["dirty"] else "") for m in metas.values()}),
    })


def _write_json(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2, default=str)))
    return payload


# --------------------------------------------------------------------------- REPORT.md
def _paper_numbers(claim: Claim) -> str:
    nums = claim.paper_numbers
    if not nums:
        return "not found (NF): judged relatively"
    return "; ".join(f"{n.get('method', '')}: {n['value']} ({figures.PROVENANCE_WORDS.get(n['provenance'], n['provenance'])})"
                     for n in nums)


def _load_outcome(root: Path, profile: str, claim_id: str) -> dict[str, Any] | None:
    p = claim_paths(root, profile, claim_id)["json"]
    return json.loads(p.read_text()) if p.exists() else None


def _method_markdown(outcome: dict[str, Any]) -> str:
    rows = []
    for m in outcome["methods"]:
        ci = f" [{m['final_lo']:.2f}, {m['final_hi']:.2f}]" if m.get("final_lo") is not None else ""
        secs = f"{m['train_seconds']:.1f}" + (f" [{m['train_seconds_lo']:.1f}, {m['train_seconds_hi']:.1f}]"
                                              if m.get("train_seconds_lo") is not None else "")
        rows.append({
            "method": m["method"],
            f"final {outcome['metric']['split']} {outcome['metric']['name']} (K={m['eval_k']})": f"{m['final']:.2f}{ci}",
            "best (curve K)": f"{m['best']:.2f}" if m.get("best") is not None else "—",
            "epochs": f"{m['epochs']:g}",
            "train s": secs,
            "s / epoch": f"{m['seconds_per_epoch']:.2f}",
            "seeds (diverged)": f"{m['seeds']} ({m['diverged']})",
            "device": m["device"],
        })
    return pd.DataFrame(rows).to_markdown(index=False)


def write_report(root: Path, profile: str, claims: dict[str, Claim] | None = None) -> Path:
    """REPORT.md: one summary row per claim, then a section per claim with its table and figure."""
    claims = load_claims() if claims is None else claims
    shown = MAIN_PROFILES if profile in MAIN_PROFILES else (profile,)
    out = report_path(root, profile)
    rel = "../" if profile in MAIN_PROFILES else "../../"
    lines = [
        "# claimbench report", "",
        f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `snakemake` "
        f"(`python -m bench report --profile {profile}`). Profiles shown: {', '.join(shown)}.",
        "",
        "Log-likelihoods are in nats per example (higher is better), estimated by importance sampling with the "
        "recognition model as proposal; each table states K. Verdicts are computed from the runs with a 95% "
        "bootstrap CI over seeds (see `bench/stats.py`): **reproduced**, **not reproduced**, **inconclusive** "
        "(the seeds do not decide), **not run**, **data unavailable**. The *quick* profile is a reduced setup "
        "(smaller data, networks, K and budgets) that runs on a 2-core CPU in minutes: its verdicts are qualitative "
        "and never claim the paper's numbers. Paper numbers carry their provenance; only numbers read in a primary "
        "source are ever used as thresholds, the others are reference lines.",
        "", "## Summary", "",
    ]
    summary = []
    for claim in claims.values():
        row = {"claim": f"[{claim.id}](#{claim.id})", "statement": claim.spec["statement"],
               "paper's number": _paper_numbers(claim)}
        for p in shown:
            o = _load_outcome(root, p, claim.id)
            row[f"{p}: ours"] = o["headline"] if o else "—"
            row[f"{p}: verdict"] = VERDICT_MARK[o["verdict"]] if o else VERDICT_MARK["not run"]
        figs = [f"[{p}]({rel}figures/{p}/{claim.id}.png)" for p in shown if (Path(root) / "figures" / p / f"{claim.id}.png").exists()]
        row["figure"] = " ".join(figs) or "—"
        summary.append(row)
    lines += [pd.DataFrame(summary).to_markdown(index=False), ""]
    for claim in claims.values():
        lines += [f"## {claim.id}", "", f"**Paper:** {claim.spec.get('paper', '')}  ", f"**Statement:** {claim.spec['statement']}  ",
                  f"**Paper's numbers:** {_paper_numbers(claim)}  ", f"**Rule:** `{json.dumps(claim.spec['verdict'])}`", ""]
        if claim.spec.get("notes"):
            lines += [claim.spec["notes"].strip(), ""]
        for p in shown:
            o = _load_outcome(root, p, claim.id)
            if o is None:
                lines += [f"### {p} profile: {VERDICT_MARK['not run']}", ""]
                continue
            lines += [f"### {p} profile: {VERDICT_MARK[o['verdict']]}", "", o["detail"], ""]
            if o["methods"]:
                s = o["settings"]
                lines += [f"Setup: `{s['dataset']}`, model `{json.dumps(s['model'])}`, seeds {list(s['seeds'])}, "
                          f"{s['epochs']} epochs, batch {s['batch_size']}, train subset {s['train_subset'] or 'all'}, "
                          f"curve K={s['eval_k']} on {s['eval_subset'] or 'all'} examples, final K={s['final_eval_k']}. "
                          f"Devices: {', '.join(o['devices'])}; commits: {', '.join(o['commits'])}.", "",
                          _method_markdown(o), "",
                          "Hyper-parameters: " + "; ".join(f"{k}: `{json.dumps(v)}`" for k, v in o["hparams"].items()), ""]
                models = o.get("models", {})
                if len({json.dumps(m, sort_keys=True) for m in models.values()}) > 1:  # per-label model variants
                    lines += ["Models: " + "; ".join(f"{k}: `{json.dumps(v)}`" for k, v in models.items()), ""]
            lines += [f"![{claim.id} ({p})]({rel}{o['figure']})", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda p: p.write_text("\n".join(lines)))
    return out


def write_summary(root: Path, profile: str) -> Path:
    """results/<profile>/summary.parquet: all finished runs' curve rows of the profile."""
    run_root = run_dir(Path(root) / "results", profile, "")
    dirs = sorted(d for d in run_root.glob("*") if (d / "run.json").exists()) if run_root.exists() else []
    out = summary_path(root, profile)
    frame = results.load_curves(dirs)
    atomic_write(out, lambda p: frame.to_parquet(p, index=False))
    return out
