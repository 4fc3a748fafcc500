"""The report documents, rendered with Jinja2 from ``bench/report/templates``:

* ``REPORT.md.j2`` -> ``results/REPORT.md`` (quick and paper side by side; another profile P
  writes ``results/P/REPORT.md``): a summary row per claim, then a section per claim.
* ``REPORT.rst.j2`` -> ``results/P/REPORT.rst``: the profile's verdict summary as a
  reStructuredText table, which the Snakemake HTML report opens on (``bench/report/assets/workflow.rst``
  includes it).

This module only gathers what the templates show (each claim's json written by
:func:`bench.report.verdicts.evaluate_claim`); the wording and layout are in the templates. What a
profile runs instead of the paper's setup (the claim's ``substitutions``) is printed with its
verdict: in the summary row's verdict cell, and in the verdict line under each claim's profile
heading. The markdown tables stay ``pandas.DataFrame.to_markdown`` (tabulate pads each column to its
widest cell).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from bench.claims import convergence
from bench.claims.catalog import Claim, load_claims
from bench.claims.stats import estimate_words
from bench.core.layout import MAIN_PROFILES, atomic_write, claim_paths, interpolation_paths, report_path
from bench.report import figures
from bench.workloads import health

TEMPLATES = Path(__file__).resolve().parent / "templates"

VERDICT_MARK = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced",
                "inconclusive": "⚠️ inconclusive", "not run": "⏳ not run", "data unavailable": "🚫 data unavailable",
                "degenerate": "🩺 degenerate", "not testable at this budget": "🚧 not testable at this budget"}


def summary_rst_path(root: Path, profile: str) -> Path:
    """results/<profile>/REPORT.rst: the profile's verdict summary for the Snakemake HTML report."""
    return Path(root) / "results" / profile / "REPORT.rst"


def _rst_text(value: Any) -> str:
    """Plain text for one reStructuredText table cell: one line, inline markup characters escaped."""
    text = " ".join(str(value).split())
    for char in "\\`*_|":
        text = text.replace(char, "\\" + char)
    return text


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["json"] = json.dumps  # not Jinja's |tojson, which HTML-escapes
    env.filters["rst"] = _rst_text
    return env


def paper_numbers(claim: Claim) -> str:
    nums = claim.paper_numbers
    if not nums:
        return "not found (NF): judged relatively"
    return "; ".join(f"{n.get('method', '')}: {n['value']} ({figures.PROVENANCE_WORDS.get(n['provenance'], n['provenance'])})"
                     for n in nums)


def load_outcome(root: Path, profile: str, claim_id: str) -> dict[str, Any] | None:
    p = claim_paths(root, profile, claim_id)["json"]
    return json.loads(p.read_text()) if p.exists() else None


def _num(value: float | None, spec: str = ".2f") -> str:
    """A number for a table, or "—" for a value that does not exist (no finished seed: None/NaN)."""
    return "—" if value is None or value != value else format(value, spec)


def _interval(lo: float | None, hi: float | None) -> str:
    """' [lo, hi]'; nothing without bounds; never an interval of zero width (every seed gave the
    same number, e.g. one clock shared by the seeds in lock-step): that is said instead."""
    if lo is None or hi is None or lo != lo:
        return ""
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        return " (the same for every seed: no interval)"
    return f" [{lo:.2f}, {hi:.2f}]"


def _estimate(x: float | None, lo: float | None, hi: float | None) -> str:
    """A table cell 'x [lo, hi]' with the decimals the interval needs; no zero-width interval."""
    if x is None or x != x or lo is None or hi is None or lo != lo or hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        return _num(x) + _interval(lo, hi)
    return estimate_words(x, lo, hi)


def _method_markdown(outcome: dict[str, Any]) -> str:
    metric = outcome["metric"]
    rows = []
    for m in outcome["methods"]:
        row = {
            "method": m["method"],
            f"final {metric['split']} {metric['name']} (K={m['eval_k']})": _estimate(m["final"], m.get("final_lo"), m.get("final_hi")),
        }
        sem = m.get("final_sem")
        if sem is not None and sem == sem:  # the interval over the evaluated examples
            row["± over examples (1.96 s.e.)"] = _num(1.96 * sem, ".2g")
        if "heldout" in m:  # a training-loss claim also shows the held-out loss
            row[f"final {m['heldout_split']} {metric['name']}"] = _estimate(m["heldout"], m.get("heldout_lo"), m.get("heldout_hi"))
        rows.append({
            **row,
            "best (curve K)": _num(m.get("best")),
            "epochs": _num(m["epochs"], "g"),
            "train s": _estimate(m["train_seconds"], m.get("train_seconds_lo"), m.get("train_seconds_hi")),
            "s / epoch": _num(m["seconds_per_epoch"]),
            "seeds (diverged)": f"{m['seeds']} ({m['diverged']})",
            "device": m["device"],
        })
    return pd.DataFrame(rows).to_markdown(index=False)


ZERO_WIDTH = re.compile(r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?) \[\1, \1\]")


def no_zero_width(text: str) -> str:
    """An interval printed with zero width (verdicts computed before the protocol: one clock shared
    by the seeds, an evaluation grid) is no interval: say so instead of printing it."""
    return ZERO_WIDTH.sub(r"\1 (one value for all seeds: no interval)", text)


def _verdict_mark(outcome: dict[str, Any] | None) -> str:
    """The verdict with its mark; one computed before the tuning/convergence/health protocol (no
    tuning record in its json) says so, so that an old 'reproduced' is not read as a current one."""
    if outcome is None:
        return VERDICT_MARK["not run"]
    mark = VERDICT_MARK[outcome["verdict"]]
    legacy = "tuning" not in outcome and outcome["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    return f"{mark} (before the protocol)" if legacy else mark


def _tuning_markdown(outcome: dict[str, Any]) -> str:
    """Every configuration the equal-budget tuning tried, per label, with its validation score."""
    rows = []
    knobs = list(dict.fromkeys(k for t in outcome["tuning"].values() for k in t["knobs"]))
    for label, t in outcome["tuning"].items():
        if not t["points"]:  # a method with no knob: its base configuration, no tuning run
            rows.append({"method": label, **{k: "—" for k in knobs}, f"validation {t['metric']}": "—",
                         "status": "nothing to tune (no knob)", "chosen": "✔"})
        for point in t["points"]:
            chosen = all(point[k] == v for k, v in t["chosen"].items())
            rows.append({"method": label, **{k: f"{point[k]:g}" if k in point else "—" for k in knobs},
                         f"validation {t['metric']}": _num(point["score"]), "status": point["status"],
                         "chosen": "✔" if chosen else ""})
    return pd.DataFrame(rows).to_markdown(index=False)


def _existing(path: Path, root: Path) -> str | None:
    """path relative to root when the file exists (a figure the report links), else None."""
    return Path(path).relative_to(root).as_posix() if Path(path).exists() else None


def _claim_entries(root: Path, shown: tuple[str, ...], claims: dict[str, Claim]) -> list[dict[str, Any]]:
    """What the templates show of each claim: its spec's words and, per profile, its outcome (or None)."""
    entries = []
    for claim in claims.values():
        profiles = []
        for p in shown:
            o = load_outcome(root, p, claim.id)
            models = (o or {}).get("models", {})
            # what the profile ran instead of the paper's setup: the verdict's own record, or (a verdict
            # computed before claims listed them, or none yet) the claim's list, added to the detail
            subs = o["substitutions"] if o and "substitutions" in o else claim.substitutions(p)
            detail = no_zero_width(o["detail"]) if o else ""
            if o and "substitutions" not in o and subs:
                detail += f"; substitutions: {'; '.join(subs)}"
            profiles.append({
                "name": p, "outcome": o,
                "verdict": _verdict_mark(o),
                "substitutions": subs,
                "verdict_line": _verdict_mark(o) + (f" (substitutions: {'; '.join(subs)})" if subs else ""),
                "headline": no_zero_width(o["headline"]) if o else "—",
                "detail": detail,
                "method_table": _method_markdown(o) if o and o["methods"] else "",
                "tuning_table": _tuning_markdown(o) if o and o.get("tuning") else "",
                "models_differ": len({json.dumps(m, sort_keys=True) for m in models.values()}) > 1,
                "figure_exists": (Path(root) / "figures" / p / f"{claim.id}.png").exists(),
                "interpolation_figure": _existing(interpolation_paths(root, p, claim.id)["figure"], root),
                "interpolation_table": _existing(interpolation_paths(root, p, claim.id)["table"], root),
            })
        entries.append({"id": claim.id, "statement": claim.spec["statement"], "paper": claim.spec.get("paper", ""),
                        "paper_numbers": paper_numbers(claim), "rule": claim.spec["verdict"],
                        "notes": (claim.spec.get("notes") or "").strip(), "interpolation": claim.interpolation,
                        "profiles": profiles})
    return entries


def _summary_markdown(entries: list[dict[str, Any]], rel: str) -> str:
    rows = []
    for c in entries:
        row = {"claim": f"[{c['id']}](#{c['id']})", "statement": c["statement"], "paper's number": c["paper_numbers"]}
        for p in c["profiles"]:
            row[f"{p['name']}: ours"] = p["headline"]
            row[f"{p['name']}: verdict"] = p["verdict_line"]
        figs = [f"[{p['name']}]({rel}figures/{p['name']}/{c['id']}.png)" for p in c["profiles"] if p["figure_exists"]]
        row["figure"] = " ".join(figs) or "—"
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def render_markdown(root: Path, profile: str, claims: dict[str, Claim], now: dt.datetime) -> str:
    shown = MAIN_PROFILES if profile in MAIN_PROFILES else (profile,)
    rel = "../" if profile in MAIN_PROFILES else "../../"  # from REPORT.md's folder up to the root
    entries = _claim_entries(root, shown, claims)
    return _environment().get_template("REPORT.md.j2").render(
        generated=f"{now:%Y-%m-%d %H:%M}", profile=profile, shown=shown, rel=rel,
        summary_table=_summary_markdown(entries, rel), claims=entries, convergence_threshold=convergence.THRESHOLD,
        convergence_tail=convergence.TAIL, blow_up=health.BLOW_UP_FACTOR)


def render_summary_rst(root: Path, profile: str, claims: dict[str, Claim], now: dt.datetime) -> str:
    return _environment().get_template("REPORT.rst.j2").render(
        generated=f"{now:%Y-%m-%d %H:%M}", profile=profile, claims=_claim_entries(root, (profile,), claims),
        markdown_path=report_path(".", profile).as_posix())


def write_report(root: Path, profile: str, claims: dict[str, Claim] | None = None) -> Path:
    """REPORT.md (one summary row per claim, then a section per claim with its table and figure) and
    the profile's REPORT.rst summary; returns REPORT.md's path."""
    claims = load_claims() if claims is None else claims
    now = dt.datetime.now(dt.timezone.utc)
    out = report_path(root, profile)
    text = render_markdown(root, profile, claims, now)
    atomic_write(out, lambda p: p.write_text(text))
    rst = render_summary_rst(root, profile, claims, now)
    atomic_write(summary_rst_path(root, profile), lambda p: p.write_text(rst))
    return out
