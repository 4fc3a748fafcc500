"""The report documents rendered from claim jsons: REPORT.md, the REPORT.rst verdict summary, and the
Snakemake HTML report's landing text (bench/report/assets/workflow.rst) that includes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from conftest import ROOT
from docutils.core import publish_parts

from bench.claims.catalog import SMOKE_WORDS, Claim
from bench.claims.stats import estimate_words
from bench.report.markdown import _method_markdown, no_zero_width, summary_rst_path, write_report

SPEC = {"id": "toy-better", "statement": "A beats B by *more* than 1 nat (x_1 | y).", "paper": "Toy et al. 2024",
        "verdict": {"rule": "better", "pairs": [["A", "B"]], "margin": 1},
        "paper_numbers": [{"method": "A", "value": -90.5, "provenance": "V"}], "notes": "A note.\n"}
METHOD = {"final": -95.0, "final_lo": -95.5, "final_hi": -94.5, "best": -96.0, "eval_k": 50, "epochs": 2.0,
          "train_seconds": 3.0, "train_seconds_lo": None, "seconds_per_epoch": 1.5, "seeds": 2, "diverged": 0,
          "device": "cpu"}
OUTCOME = {
    "claim": "toy-better", "profile": "smoke", "verdict": "reproduced", "detail": "A − B = +3.00 [+2.00, +4.00]",
    "headline": "Δ +3.00 [+2.00, +4.00]", "figure": "figures/smoke/toy-better.png",
    "metric": {"split": "test", "name": "ll"},
    "methods": [{**METHOD, "method": "A"}, {**METHOD, "method": "B", "final": -98.0}],
    "settings": {"dataset": "uci_dna", "model": {"family": "helmholtz", "layers": [180, 10]}, "seeds": [0, 1],
                 "epochs": 2, "batch_size": 50, "train_subset": 200, "eval_k": 5, "eval_subset": None,
                 "final_eval_k": 50},
    "hparams": {"A": {"k": 5}, "B": {}}, "models": {"A": {"layers": [180, 10]}, "B": {"layers": [180, 10]}},
    "devices": ["cpu"], "commits": ["abc123"],
    "tuning": {label: {"words": "lr=0.1 (best of 2 configurations by validation ll)", "knobs": ["lr"], "metric": "ll",
                       "points": [{"lr": 0.1, "score": -90.0, "status": "ok", "run_id": "a"},
                                  {"lr": 1.0, "score": None, "status": "diverged", "run_id": "b"}],
                       "chosen": {"lr": 0.1}, "on_edge": {}} for label in ("A", "B")},
    "convergence": {"A": "converged (2/2 seeds)", "B": "converged (2/2 seeds)"}, "health": {},
}


@dataclass(frozen=True, order=True)
class _Category:  # what Snakemake's report.Category offers workflow.rst: a sortable name
    name: str


@pytest.fixture
def rendered(tmp_path) -> Path:
    """A project root with one claim judged at the smoke profile and one that has no json yet."""
    claims = {"toy-better": Claim("toy-better", SPEC, tmp_path / "toy.yaml"),
              "toy-pending": Claim("toy-pending", {**SPEC, "id": "toy-pending", "statement": "Pending.",
                                                   "paper_numbers": [], "notes": ""}, tmp_path / "toy.yaml")}
    (tmp_path / "results/smoke/claims").mkdir(parents=True)
    (tmp_path / "results/smoke/claims/toy-better.json").write_text(json.dumps(OUTCOME))
    (tmp_path / "figures/smoke").mkdir(parents=True)
    (tmp_path / "figures/smoke/toy-better.png").write_bytes(b"png")
    write_report(tmp_path, "smoke", claims)
    return tmp_path


def test_markdown_report_sections(rendered):
    text = (rendered / "results/smoke/REPORT.md").read_text()
    assert text.startswith("# claimbench report\n\nGenerated ")
    assert text.endswith("**Rule:** `{\"rule\": \"better\", \"pairs\": [[\"A\", \"B\"]], \"margin\": 1}`\n\n"
                         "### smoke profile: ⏳ not run\n\nSubstitutions for the paper's setup at this profile: "
                         f"{SMOKE_WORDS}.\n")  # the pending claim, last (the smoke sizes); one final newline
    assert "\n\n\n" not in text
    row = next(line for line in text.splitlines() if line.startswith("| [toy-better](#toy-better)"))
    assert "✅ reproduced" in row and "Δ +3.00 [+2.00, +4.00]" in row and "A: -90.5 (verified)" in row
    assert "| [toy-pending](#toy-pending)" in text
    assert ("**Paper:** Toy et al. 2024  \n**Statement:** A beats B by *more* than 1 nat (x_1 | y).  \n"
            '**Paper\'s numbers:** A: -90.5 (verified)  \n**Rule:** `{"rule": "better", "pairs": [["A", "B"]], '
            '"margin": 1}`\n\nA note.\n\n### smoke profile: ✅ reproduced\n\nA − B = +3.00 [+2.00, +4.00]; '
            f"substitutions: {SMOKE_WORDS}\n\n"
            "Setup: `uci_dna`, model `{\"family\": \"helmholtz\", \"layers\": [180, 10]}`, seeds [0, 1], 2 epochs, "
            "batch 50, train subset 200, curve K=5 on all examples, final K=50. Devices: cpu; commits: abc123.\n\n"
            "| method   | final test ll (K=50)    |") in text
    assert 'Hyper-parameters: A: `{"k": 5}`; B: `{}`\n\n![toy-better (smoke)](../../figures/smoke/toy-better.png)\n' in text
    assert "Models:" not in text  # both labels share one model


def test_rst_summary_is_one_clean_table(rendered):
    rst = summary_rst_path(rendered, "smoke").read_text()
    assert "A beats B by \\*more\\* than 1 nat (x\\_1 \\| y)." in rst  # inline markup escaped
    html = publish_parts(rst, writer="html", settings_overrides={"report_level": 5, "halt_level": 2})["html_body"]
    assert "claimbench verdicts: smoke profile" in html
    for cell in ("toy-better", "✅ reproduced", "Δ +3.00 [+2.00, +4.00]", "A beats B by *more* than 1 nat (x_1 | y).",
                 "toy-pending", "⏳ not run", "not found (NF): judged relatively", "results/smoke/REPORT.md"):
        assert cell in html, cell


def test_snakemake_landing_text_includes_the_summary(rendered, monkeypatch):
    """workflow.rst rendered the way `snakemake --report` renders it (Jinja2, then docutils from the
    working directory), with the records Snakemake passes for the files marked for the report."""
    monkeypatch.chdir(rendered)
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    source = (ROOT / "bench/report/assets/workflow.rst").read_text()
    snakemake = SimpleNamespace(config={"profile": "smoke"})
    categories = {_Category("toy-better"): {}, _Category("Verdicts"): {}}
    links = "\n.. _Workflow: javascript:show_panel('workflow')\n.. _toy-better: javascript:app.showCategory('toy-better')\n"
    summary = SimpleNamespace(target="REPORT.rst", path=Path("results/smoke/REPORT.rst"))
    for files, expected in (([summary], "✅ reproduced"), ([], "No verdict summary yet")):
        text = env.from_string(source + links).render(snakemake=snakemake, categories=categories, files=files)
        html = publish_parts(text, writer="html", settings_overrides={"report_level": 5, "halt_level": 2})["html_body"]
        assert expected in html and "toy-better" in html


def test_a_method_without_any_finite_value_does_not_break_the_report(tmp_path):
    """Issue 12, fault 2: a method whose metric is -inf/NaN in every row has no final value (None in
    the json); its row says so and every other claim is still reported."""
    claims = {"toy-better": Claim("toy-better", SPEC, tmp_path / "toy.yaml")}
    dead = {**METHOD, "method": "B", "final": None, "final_lo": None, "final_hi": None, "best": None,
            "seconds_per_epoch": None}
    outcome = {**OUTCOME, "verdict": "inconclusive", "detail": "A vs B: fewer than 2 finished seeds", "headline": "—",
               "methods": [{**METHOD, "method": "A"}, dead]}
    (tmp_path / "results/smoke/claims").mkdir(parents=True)
    (tmp_path / "results/smoke/claims/toy-better.json").write_text(json.dumps(outcome))
    text = (write_report(tmp_path, "smoke", claims)).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| B "))
    assert "—" in row and "fewer than 2 finished seeds" in text


def test_tuning_convergence_and_health_are_shown_and_an_old_verdict_says_it_is_old(rendered, tmp_path):
    text = (rendered / "results/smoke/REPORT.md").read_text()
    assert "Tuning (equal budget, validation split carved from the training data): A: lr=0.1" in text
    assert "| diverged" in text and "Convergence of the claim's metric: A: converged (2/2 seeds)" in text
    assert "Health checks: all passed." in text
    root = tmp_path / "old"
    claims = {"toy-better": Claim("toy-better", SPEC, root / "toy.yaml")}
    old = {k: v for k, v in OUTCOME.items() if k not in ("tuning", "convergence", "health")}
    (root / "results/smoke/claims").mkdir(parents=True)
    (root / "results/smoke/claims/toy-better.json").write_text(json.dumps(old))
    text = write_report(root, "smoke", claims).read_text()
    assert "✅ reproduced (before the protocol)" in text and "Computed before the equal-budget tuning" in text


def test_no_interval_of_zero_width_is_printed():
    """Issue 12: an old verdict's `0.71 [0.71, 0.71]` (one clock for all seeds) reads as no interval;
    a real but narrow interval gets the decimals it needs."""
    assert no_zero_width("ratio 0.71 [0.71, 0.71]; Δ +3.00 [+2.00, +4.00]") == (
        "ratio 0.71 (one value for all seeds: no interval); Δ +3.00 [+2.00, +4.00]")
    assert estimate_words(0.00026, 0.00021, 0.00031, "+") == "+0.00026 [+0.00021, +0.00031]"
    assert estimate_words(-135.36, -138.38, -132.33) == "-135.36 [-138.38, -132.33]"


def test_a_narrow_interval_of_train_seconds_keeps_its_width(tmp_path):
    """Per-seed clocks of 0.95-1.02 s printed at one decimal read '1.0 [1.0, 1.0]', a zero-width
    interval that was only the printout's: the cell gets the decimals its width needs."""
    outcome = {**OUTCOME, "methods": [{**METHOD, "method": "A", "train_seconds": 0.985608,
                                       "train_seconds_lo": 0.952926, "train_seconds_hi": 1.018291}]}
    text = _method_markdown(outcome)
    assert "0.986 [0.953, 1.018]" in text and "[1.0, 1.0]" not in text


def test_substitutions_follow_the_verdict_in_the_summary_and_end_the_verdict_line(tmp_path):
    """Issue 12, claim fidelity: what a profile runs instead of the paper's setup (the claim's and the
    profile's `substitutions`, recorded in the verdict json by evaluate_claim) is printed with the
    verdict in the summary row (REPORT.md and REPORT.rst) and at the end of the claim's verdict line."""
    spec = {**SPEC, "substitutions": ["another estimator (paper: AIS)"],
            "profiles": {"quick": {"substitutions": ["k = 5 for the paper's k = 50"]}}}
    claims = {"toy-better": Claim("toy-better", spec, tmp_path / "toy.yaml")}
    words = ["another estimator (paper: AIS)", "k = 5 for the paper's k = 50"]
    assert claims["toy-better"].substitutions("smoke") == [SMOKE_WORDS, *words]  # smoke: its sizes, the quick profile's
    outcome = {**OUTCOME, "substitutions": words, "detail": OUTCOME["detail"] + "; substitutions: " + "; ".join(words)}
    (tmp_path / "results/smoke/claims").mkdir(parents=True)
    (tmp_path / "results/smoke/claims/toy-better.json").write_text(json.dumps(outcome))
    text = write_report(tmp_path, "smoke", claims).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| [toy-better](#toy-better)"))
    assert "✅ reproduced (substitutions: another estimator (paper: AIS); k = 5 for the paper's k = 50)" in row, row
    assert ("### smoke profile: ✅ reproduced\n\nA − B = +3.00 [+2.00, +4.00]; substitutions: another estimator "
            "(paper: AIS); k = 5 for the paper's k = 50\n") in text
    assert text.count("k = 5 for the paper's k = 50") == 2  # the row and the verdict line, nothing doubled
    rst = summary_rst_path(tmp_path, "smoke").read_text()
    html = publish_parts(rst, writer="html", settings_overrides={"report_level": 5, "halt_level": 2})["html_body"]
    assert "✅ reproduced (substitutions: another estimator (paper: AIS); k = 5 for the paper&#x27;s k = 50)" in html \
        or "✅ reproduced (substitutions: another estimator (paper: AIS); k = 5 for the paper's k = 50)" in html


def test_the_verdict_command_prints_no_interval_of_zero_width(monkeypatch, capsys):
    """`python -m bench verdict` (the line each claim job prints) reads `0 [0, 0]` as no interval,
    as the report does (the fresh-user trial saw `SAE: 0 [0, 0] vs required > 0.5` on the terminal)."""
    from bench.cli import main

    outcome = {"verdict": "inconclusive", "detail": "SAE: 0 [0, 0] vs required > 0.5"}
    monkeypatch.setattr("bench.report.verdicts.evaluate_claim", lambda claim, profile, root: outcome)
    assert main(["verdict", "rws-beats-ws", "--profile", "smoke"]) in (0, None)
    out = capsys.readouterr().out
    assert "[0, 0]" not in out and "SAE: 0 (one value for all seeds: no interval) vs required > 0.5" in out
