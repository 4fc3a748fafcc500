"""Claim fidelity (issue 12): every claim runs at least 5 seeds per method at the quick and paper
profiles; what a profile runs instead of the paper's setup is listed under `substitutions` (checked
by the schema) and printed in the verdict line; a threshold or margin never asks for more than the
paper's own number (bench/claims/schema.py, ClaimSpec._check_paper_side)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import TOY_CLAIM, load_toy

from bench.claims.catalog import SMOKE_WORDS, Claim, expand, load_claims
from bench.core.errors import ConfigError
from bench.report.markdown import summary_rst_path, write_report
from bench.report.verdicts import evaluate_claim
from bench.workloads import workload_for

CLAIMS = load_claims()
MAIN = ("quick", "paper")

BASE = {**TOY_CLAIM,
        "verdict": {"rule": "better", "pairs": [["A", "B"]], "margin": 1.0},
        "paper_numbers": [{"method": "A", "value": -90.0, "provenance": "V", "source": "Table 1"},
                          {"method": "B", "value": -92.0, "provenance": "V", "source": "Table 1"}],
        "substitutions": ["another dataset than the paper's"],
        "profiles": {"quick": {**TOY_CLAIM["profiles"]["quick"],
                               "substitutions": ["k = 2 for the paper's k = 50", "1 epoch (paper: 100)"]},
                     "paper": {"seeds": [0, 1, 2], "epochs": 2, "batch_size": 50}}}


def _load(tmp_path: Path, change=None) -> dict[str, Claim]:
    return load_toy(tmp_path, BASE, change)


def _error(tmp_path: Path, change) -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, change)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("toy.yaml, claim 'toy'"), msg
    return msg


# --------------------------------------------------------------------------- the committed catalogue
@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_five_seeds_per_method_at_the_quick_and_paper_profiles(claim_id):
    """Seeds are per profile (every label of a claim trains on all of them, in lock-step)."""
    profiles = CLAIMS[claim_id].spec["profiles"]
    for name in MAIN:
        if profiles.get(name) is not None:
            seeds = profiles[name]["seeds"]
            assert len(seeds) >= 5, f"{claim_id}: {name} profile has {len(seeds)} seeds {seeds}; use at least 5"


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_reductions_are_named_in_the_substitutions(claim_id):
    """The quick profile is a reduced setup, so its verdict line is never silent; and the usual
    reductions name their value: a label's k cut at a profile ('k = 10'), a training subset ('5000
    training ...'), an importance-sampled log-likelihood with fewer than the protocol's 5000 samples
    ('K = 500')."""
    claim = CLAIMS[claim_id]
    assert claim.substitutions("quick"), f"{claim_id}: the quick profile lists no substitution"
    for name in MAIN:
        settings = claim.spec["profiles"].get(name)
        if settings is None:
            continue
        words = " ".join(claim.substitutions(name)).lower()
        for label, override in (settings.get("methods") or {}).items():
            k = (override or {}).get("k")
            if k is not None and k != (claim.spec["methods"][label] or {}).get("k"):
                assert f"k = {k}" in words, f"{claim_id}: {name} runs {label!r} at k = {k}: say so in substitutions"
        if settings.get("train_subset"):
            assert f"{settings['train_subset']} training" in words, (
                f"{claim_id}: {name} trains on {settings['train_subset']} examples: say so in substitutions")
        model = {**claim.spec["model"], **(settings.get("model") or {})}  # the profile's model
        exact = claim.metric["name"] in workload_for(model["family"]).exact_metrics(model)
        if claim.metric["name"] == "ll" and not exact and settings.get("final_eval_k", 1000) < 5000:
            assert f"k = {settings['final_eval_k']}" in words, (
                f"{claim_id}: {name} estimates log-likelihood with K = {settings['final_eval_k']}: say so")


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_no_statement_or_label_names_a_k_its_profile_does_not_run(claim_id):
    """A label that names a sample count ('IWAE k=5', 'RWS K=10') runs that count at every profile."""
    claim = CLAIMS[claim_id]
    for name in MAIN:
        settings = claim.spec["profiles"].get(name) or {}
        for label, override in (settings.get("methods") or {}).items():
            named = re.search(r"\b[kK]\s*=\s*(\d+)", label)
            if named and override and "k" in override:
                assert override["k"] == int(named.group(1)), f"{claim_id}: label {label!r} runs k = {override['k']}"


# --------------------------------------------------------------------------- the schema
def test_substitutions_load_at_claim_and_profile_level(tmp_path):
    claim = _load(tmp_path)["toy"]
    assert claim.substitutions("quick") == ["another dataset than the paper's", "k = 2 for the paper's k = 50",
                                            "1 epoch (paper: 100)"]
    assert claim.substitutions("smoke") == [SMOKE_WORDS, *claim.substitutions("quick")]  # a tiny quick, said first
    assert claim.substitutions("paper") == ["another dataset than the paper's"]


@pytest.mark.parametrize("where", [("substitutions",), ("profiles", "quick", "substitutions")])
@pytest.mark.parametrize("value, reason", [
    ("k = 5 for 50", "must be a valid list"),
    ([""], "must not be blank"),
    (["   "], "must not be blank"),
    ([5], "must be a valid string"),
    (["two\nlines"], "must be one line"),
    (["k = 5", "k = 5"], "must not repeat 'k = 5'"),
])
def test_substitutions_are_a_list_of_distinct_one_line_phrases(tmp_path, where, value, reason):
    def change(spec):
        target = spec
        for part in where[:-1]:
            target = target[part]
        target[where[-1]] = value

    msg = _error(tmp_path, change)
    assert ".".join(where) in msg and reason in msg, msg


def test_substitutions_are_not_a_run_setting(tmp_path):
    plan = expand(_load(tmp_path)["toy"], "quick")
    assert all("substitutions" not in spec.to_dict() for spec in plan.runs.values())


def _threshold(value: float, paper: float, provenance: str = "V", higher: bool = True):
    def change(spec):
        spec["metric"] = {"split": "test", "name": "ll", "higher_is_better": higher}
        spec["verdict"] = {"rule": "threshold", "method": "A", "value": value}
        spec["paper_numbers"] = [{"method": "A", "value": paper, "provenance": provenance}]

    return change


@pytest.mark.parametrize("provenance", ["V", "src", "R", "R?"])
def test_a_threshold_beyond_the_papers_own_number_is_rejected(tmp_path, provenance):
    msg = _error(tmp_path, _threshold(2.0, 1.34, provenance))
    assert "label 'A': verdict.value = 2.0: contradicts the paper's own number" in msg, msg
    assert f"1.34 ({provenance})" in msg and "does not lie above 2" in msg, msg
    msg = _error(tmp_path, _threshold(1.34, 1.34, provenance))  # the paper's own value passes strictly
    assert "contradicts the paper's own number" in msg, msg


def test_a_threshold_the_papers_number_passes_loads(tmp_path):
    assert _load(tmp_path, _threshold(0.5, 1.34))  # paper 1.34, claim "> 0.5"
    assert _load(tmp_path, _threshold(2.0, 1.34, "NF"))  # not found: no paper number to contradict
    assert _load(tmp_path, _threshold(0.1, 0.05, higher=False))  # lower is better: paper 0.05 < 0.1
    msg = _error(tmp_path, _threshold(0.01, 0.05, higher=False))
    assert "does not lie below 0.01" in msg, msg


def test_a_margin_beyond_the_papers_own_gap_is_rejected(tmp_path):
    assert _load(tmp_path)  # paper: A - B = 2.0 > margin 1.0
    msg = _error(tmp_path, lambda s: s["verdict"].update(margin=2.5))
    assert "verdict.margin = 2.5: contradicts the paper's own numbers: 'A' -90 (V) vs 'B' -92 (V)" in msg, msg
    msg = _error(tmp_path, lambda s: s["verdict"].update(pairs=[["B", "A"]], margin=0.0))  # the wrong way round
    assert "gap of -2" in msg, msg

    def ordering(spec):
        spec["methods"]["C"] = {"method": "rws", "k": 1}
        spec["verdict"] = {"rule": "ordering", "order": ["A", "C", "B"], "margin": 0.5}
        spec["paper_numbers"].append({"method": "C", "value": -91.8, "provenance": "R"})

    msg = _error(tmp_path, ordering)  # A > C by 1.8 passes; C > B by 0.2 does not reach 0.5
    assert "'C' -91.8 (R) vs 'B' -92 (V)" in msg, msg


def test_a_non_inferiority_the_papers_numbers_fail_is_rejected(tmp_path):
    """not_worse: B is 2 below A in the paper, so "B not worse than A by 3" loads, "by 1" does not."""
    assert _load(tmp_path, lambda s: s.update(verdict={"rule": "not_worse", "pairs": [["B", "A"]], "margin": 3.0}))
    msg = _error(tmp_path, lambda s: s.update(verdict={"rule": "not_worse", "pairs": [["B", "A"]], "margin": 1.0}))
    assert "verdict.margin = 1.0: contradicts the paper's own numbers: 'B' -92 (V) vs 'A' -90 (V)" in msg, msg
    assert "gap of -2 in the claimed direction, not more than -1" in msg, msg


# --------------------------------------------------------------------------- the verdict line and the report
def test_substitutions_end_the_verdict_line_and_show_in_the_report(tmp_path):
    """evaluate_claim writes them into the verdict json (a list, and the end of `detail`), and the
    report prints them in the summary row's verdict cell and in the claim's verdict line."""
    claims = _load(tmp_path / "claims")
    outcome = evaluate_claim(claims["toy"], "smoke", tmp_path)  # no tuning yet: 'not run', no training
    words = f"{SMOKE_WORDS}; another dataset than the paper's; k = 2 for the paper's k = 50; 1 epoch (paper: 100)"
    assert outcome["verdict"] == "not run"
    assert outcome["substitutions"] == words.split("; ")
    assert outcome["detail"].endswith(f"; substitutions: {words}"), outcome["detail"]
    saved = json.loads((tmp_path / "results/smoke/claims/toy.json").read_text())
    assert saved["substitutions"] == outcome["substitutions"]
    text = write_report(tmp_path, "smoke", claims).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| [toy](#toy)"))
    assert f"⏳ not run (substitutions: {words})" in row, row
    assert f"\n\n### smoke profile: ⏳ not run\n\n{outcome['detail']}\n" in text
    rst = summary_rst_path(tmp_path, "smoke").read_text()
    assert f"not run (substitutions: {words})" in rst


def test_a_verdict_computed_before_substitutions_gets_the_claims_own(tmp_path):
    """A json without the key (computed before claims listed substitutions) still shows the claim's
    current list, in the summary row and at the end of its verdict line; a claim with none shows none."""
    claims = _load(tmp_path / "claims")
    old = {"claim": "toy", "profile": "smoke", "verdict": "inconclusive", "detail": "A − B = +0.50 [-1.00, +2.00]",
           "headline": "Δ +0.50 [-1.00, +2.00]", "figure": "figures/smoke/toy.png", "methods": []}
    (tmp_path / "results/smoke/claims").mkdir(parents=True)
    (tmp_path / "results/smoke/claims/toy.json").write_text(json.dumps(old))
    text = write_report(tmp_path, "smoke", claims).read_text()
    assert f"A − B = +0.50 [-1.00, +2.00]; substitutions: {SMOKE_WORDS}; another dataset than the paper's; k = 2" in text
    assert f"⚠️ inconclusive (before the protocol) (substitutions: {SMOKE_WORDS}; another dataset" in text
    plain = _load(tmp_path / "plain", lambda s: (s.pop("substitutions"), s["profiles"]["quick"].pop("substitutions")))
    text = write_report(tmp_path, "smoke", plain).read_text()
    summary = text.split("## Summary")[1]
    assert f"substitutions: {SMOKE_WORDS}" in summary and "another dataset than" not in summary  # the smoke sizes alone
