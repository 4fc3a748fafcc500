"""A claim's runs checked before its verdict is believed (DESIGN.md, "Health and convergence"):
convergence of every label's curve of the claim's metric (bench.claims.convergence) and the health
checks its workload declares (bench.workloads.health).

* a degenerate finding on a run the verdict reads turns the verdict into **degenerate**, naming the
  method, the seed and the check;
* a saturated finding on the claim's own metric turns it into **not testable at this budget**;
* unconverged labels are passed to the verdict rule, where a comparison standing on them reads
  **inconclusive** ("not converged", see bench.claims.stats).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.claims.convergence import Convergence, run_convergence
from bench.claims.stats import curve_rows
from bench.workloads import workload_for
from bench.workloads.health import Finding, run_checks


@dataclass
class Diagnosis:
    convergence: dict[str, list[Convergence]] = field(default_factory=dict)  # label -> per seed
    health: dict[str, list[Finding]] = field(default_factory=dict)  # label -> findings

    @property
    def unconverged(self) -> frozenset[str]:
        return frozenset(label for label, seeds in self.convergence.items() if not all(c.converged for c in seeds))

    def convergence_words(self, label: str) -> str:
        seeds = self.convergence.get(label, [])
        done = sum(c.converged for c in seeds)
        if done == len(seeds):
            return f"converged ({done}/{len(seeds)} seeds)"
        worst = max((c for c in seeds if not c.converged), key=lambda c: -1 if c.rate != c.rate else c.rate)
        return f"not converged ({done}/{len(seeds)} seeds; seed {worst.seed}: {worst.detail})"

    def to_json(self) -> dict[str, Any]:
        return {
            "convergence": {label: self.convergence_words(label) for label in self.convergence},
            "health": {label: [f.words(label) for f in findings] for label, findings in self.health.items() if findings},
        }

    def veto(self, outcome: dict[str, Any], labels: list[str], metric_name: str) -> dict[str, Any]:
        """The outcome, replaced by 'degenerate' or 'not testable at this budget' when a finding on
        one of the verdict's labels says so. A rule not judged at this profile ('not run': a
        paper's number at the quick profile) stays 'not run'; its findings are still listed."""
        if outcome["verdict"] == "not run":
            return outcome
        degenerate = [f.words(label) for label in labels for f in self.health.get(label, []) if f.kind == "degenerate"]
        saturated = [f.words(label) for label in labels for f in self.health.get(label, [])
                     if f.kind == "saturated" and f.metric == metric_name]
        if degenerate:
            return {**outcome, "verdict": "degenerate",
                    "detail": "health check failed: " + "; ".join(degenerate) + f" (the rule alone said: {outcome['verdict']}: {outcome['detail']})"}
        if saturated:
            return {**outcome, "verdict": "not testable at this budget",
                    "detail": "the metric is pinned at a bound: " + "; ".join(saturated) + f" (the rule alone said: {outcome['verdict']}: {outcome['detail']})"}
        return outcome


def diagnose(curves: pd.DataFrame, models: dict[str, dict[str, Any]], metric: dict[str, Any]) -> Diagnosis:
    """curves: the claim's rows with a `label` column; models: label -> the run's model config."""
    diagnosis = Diagnosis()
    curve = curve_rows(curves, metric["split"], metric.get("converged_on") or metric["name"])
    for label, model in models.items():
        diagnosis.convergence[label] = run_convergence(curve[curve.label == label])
        checks = workload_for(model["family"]).health_checks(model)
        diagnosis.health[label] = run_checks(checks, curves[curves.label == label])
    return diagnosis


def rule_labels(rule: dict[str, Any]) -> list[str]:
    """The method labels a verdict rule reads."""
    named = [x for pair in rule.get("pairs", []) for x in pair] + list(rule.get("order", []))
    named += [rule["method"]] if "method" in rule else []
    return list(dict.fromkeys(named))
