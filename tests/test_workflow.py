"""End to end, as a user runs it: Snakemake on a copy of the project at the tiny `smoke` profile.

One base workflow run is shared (module fixture); tests that change things work on copies of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_project

PROJECT_FILES = ("Snakefile", "bench", "methods", "profiles")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "degenerate", "not testable at this budget")


def _copy_project(dest: Path) -> Path:
    return copy_project(dest, PROJECT_FILES)


def _env() -> dict[str, str]:
    """The test's environment with $CLAIMBENCH_DATA made absolute (the workflow runs elsewhere)."""
    entries = os.environ.get("CLAIMBENCH_DATA", "").split(os.pathsep)
    return {**os.environ, "CLAIMBENCH_DATA": os.pathsep.join(str(Path(e).resolve()) for e in entries if e)}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", "profile=smoke", *args]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=_env())
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def _run_mtimes(workdir: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime for p in (workdir / "results/smoke/runs").glob("*/run.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir) -> Path:
    """A project copy on which the whole smoke workflow has run once."""
    workdir = _copy_project(tmp_path_factory.mktemp("wf") / "project")
    snakemake(workdir)
    return workdir


def _clone(finished: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    shutil.copytree(finished, dest, symlinks=True)  # copy2 keeps mtimes, so nothing looks stale
    return dest


def test_report_has_a_verdict_row_per_claim(finished):
    from bench.claims.catalog import load_claims
    from bench.engine.data import is_available

    report = (finished / "results/smoke/REPORT.md").read_text()
    for claim_id, claim in load_claims(finished / "bench/claims").items():
        row = next(line for line in report.splitlines() if line.startswith(f"| [{claim_id}]"))
        # a claim on a dataset absent here says so; within_paper is judged at the paper profile only
        allowed = (("data unavailable",) if not is_available(claim.spec["dataset"]) else
                   ("not run",) if claim.spec["verdict"]["rule"] == "within_paper" else VERDICTS)
        assert any(v in row for v in allowed), row
        assert (finished / f"figures/smoke/{claim_id}.png").stat().st_size > 10_000
        assert (finished / f"results/smoke/tables/{claim_id}.csv").exists()


def test_second_invocation_does_nothing(finished):
    out = snakemake(finished, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_snakemake_html_report_has_one_category_per_claim(finished, tmp_path):
    workdir = _clone(finished, tmp_path)
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text()
    assert "rws-beats-ws" in html and "rws-more-samples-help" in html


KILLED_CLAIMS = "claims=rws-beats-ws,rws-more-samples-help"  # a workflow of a few claims is enough to kill


def test_kill_then_rerun_keeps_finished_runs(finished, tmp_path):
    """SIGKILL the workflow once a run has finished; after `--unlock` a rerun keeps that run and
    finishes with the runs (ids) of the whole workflow's, leaving nothing to do."""
    workdir = _copy_project(tmp_path / "project")
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--config", "profile=smoke",
                             KILLED_CLAIMS], cwd=workdir, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not _run_mtimes(workdir) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _run_mtimes(workdir)
    assert before, "no run finished before the kill"
    snakemake(workdir, "--unlock")
    snakemake(workdir, KILLED_CLAIMS)
    after = _run_mtimes(workdir)
    assert {k: after[k] for k in before} == before  # finished runs kept, not recomputed
    assert len(after) > len(before) and set(after) <= set(_run_mtimes(finished))
    plan = snakemake(workdir, KILLED_CLAIMS, "-n")
    assert "Nothing to be done" in plan.stdout + plan.stderr


def test_add_a_method_as_the_readme_says(finished, tmp_path):
    """README 'Add a method': scaffold it, name it in a claim, rerun. Only its run executes, and the
    report shows it beside the others. Then editing it reruns exactly its tuning and run."""
    workdir = _clone(finished, tmp_path)
    before = _run_mtimes(workdir)
    subprocess.run([sys.executable, "-m", "bench", "new-method", "my_method"], cwd=workdir, check=True,
                   capture_output=True, env=_env())
    claims = workdir / "bench/claims/rws.yaml"
    text = claims.read_text()
    text = text.replace("    RWS K=5: {method: rws, k: 5}\n", "    RWS K=5: {method: rws, k: 5}\n    My method: {method: my_method}\n", 1)
    claims.write_text(text)
    snakemake(workdir)
    after = _run_mtimes(workdir)
    new = set(after) - set(before)
    assert len(new) == 1 and {k: after[k] for k in before} == before
    report = (workdir / "results/smoke/REPORT.md").read_text()
    section = report[report.index("## rws-beats-ws"):report.index("## rws-more-samples-help")]
    assert "| My method" in section and "| WS" in section
    with open(workdir / "methods/my_method.py", "a") as f:
        f.write("# an edit\n")  # Snakemake compares contents: a bare touch is not an edit
    plan = snakemake(workdir, "-n").stdout
    # its tuning job reruns (its evaluation run follows once tuned: a checkpoint); nothing else does
    assert re.search(r"^tune\s+1$", plan, re.M) and not re.search(r"^train\s+\d+$", plan, re.M), plan


def test_a_run_killed_after_its_tuning_reruns_with_the_report_up_to_date(finished, tmp_path):
    """A claim tuned, then killed during its evaluation run, has neither the run nor a verdict, while
    the report is newer than every verdict that exists: the next invocation still runs both."""
    workdir = _clone(finished, tmp_path)
    verdict = workdir / "results/smoke/claims/rws-beats-ws.json"
    run_id = json.loads(verdict.read_text())["runs"]["WS"]
    shutil.rmtree(workdir / "results/smoke/runs" / run_id)
    verdict.unlink()
    plan = snakemake(workdir, "claims=rws-beats-ws", "-n").stdout
    assert re.search(r"^train\s+1$", plan, re.M) and re.search(r"^claim\s+1$", plan, re.M), plan


def test_a_label_runs_once_tuned_while_another_label_of_its_claim_still_tunes(finished, tmp_path):
    """A claim's evaluation runs do not wait for its slowest label's tuning: killed while one label
    is still tuning and another is tuned but not yet run, the plan holds that run already."""
    workdir = _clone(finished, tmp_path)
    results = workdir / "results/smoke"
    verdict = results / "claims/rws-beats-ws.json"
    runs = json.loads(verdict.read_text())["runs"]  # label -> run id
    selections = {json.loads(p.read_text())["eval_run_id"]: p for p in (results / "tuning").glob("*.json")}
    for run_id in runs.values():  # neither label's run, nor its marker, nor the verdict was written
        shutil.rmtree(results / "runs" / run_id)
        (results / "logs" / f"{selections[run_id].stem}.evaluated").unlink()
    verdict.unlink()
    selections[runs["RWS K=5"]].unlink()  # RWS K=5 still tuning; WS tuned
    plan = snakemake(workdir, "claims=rws-beats-ws", "-n").stdout
    assert re.search(r"^tune\s+1$", plan, re.M) and re.search(r"^train\s+1$", plan, re.M), plan
    assert f"runs/{runs['WS']}/run.json" in plan
