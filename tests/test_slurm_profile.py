"""The SLURM workflow profile (profiles/slurm), without SLURM: it parses, names the slurm executor and
the squeue status command, keeps profiles/default's choices, plans the smoke workflow in a dry run,
and GPU jobs request GPUs through the executor's standard `gpu` resource. The real cluster run is
.ci/slurm (CI), which also runs this file once the `slurm` extra is installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT, copy_project

PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"


def _profile(path: Path = PROFILE) -> dict:
    return yaml.safe_load(path.read_text())


def test_profile_names_the_slurm_executor_and_the_squeue_status_command():
    profile = _profile()
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # sacct hangs the run on SLURM 22.05 (STACK.md §3)
    assert isinstance(profile["jobs"], int) and profile["jobs"] >= 1
    resources = profile["default-resources"]
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= set(resources)
    assert isinstance(resources["runtime"], int) and isinstance(resources["mem_mb"], int)


def test_profile_keeps_the_default_profiles_choices():
    """Snakemake reads one workflow profile: the SLURM one must repeat profiles/default's choices."""
    default, slurm = _profile(ROOT / "profiles" / "default" / "config.yaml"), _profile()
    for key, value in default.items():
        assert slurm.get(key) == value, key


def _snakemake(tmp_path: Path, *config: str) -> subprocess.CompletedProcess:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason='pip install -e ".[slurm]"')
    project = tmp_path / "project"
    if not project.exists():
        copy_project(project, ("Snakefile", "bench", "methods", "profiles"))
    env = {**os.environ, "CLAIMBENCH_DATA": os.pathsep.join(
        str(Path(e).resolve()) for e in os.environ.get("CLAIMBENCH_DATA", "").split(os.pathsep) if e)}
    cmd = [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "profiles/slurm",
           "--config", "profile=smoke", *config]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env, check=False)


def _job_counts(output: str) -> dict[str, int]:
    stats = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


def test_a_dry_run_plans_the_smoke_workflow_without_slurm(tmp_path):
    out = _snakemake(tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "Using workflow specific profile profiles/slurm" in text
    from bench.claims.catalog import load_claims

    counts = _job_counts(text)
    assert counts["claim"] == len(load_claims()) and counts["report"] == 1 and counts["tune"] >= 1
    tune = _resources(text, "tune")
    assert tune and all("slurm_partition=main" in r and "slurm_account=none" in r for r in tune), tune
    assert not any(re.search(r"\bgpu=[1-9]", r) for r in tune), tune  # a CPU run requests no GPU


def _resources(text: str, rule: str) -> list[str]:
    """The `resources:` line of each planned job of a rule in a dry run's output."""
    jobs = re.split(r"\n\[[^\]]+\]\n", text)
    return [re.search(r"^\s+resources: (.*)$", job, re.MULTILINE)[1] for job in jobs
            if re.search(rf"^(local)?(rule|checkpoint) {rule}:", job, re.MULTILINE)]


def test_gpu_runs_request_gpus_through_the_standard_resource(tmp_path):
    """`--config gpu_per_run=1` gives the tune and train jobs `gpu=1`, which the executor submits as
    `--gpus=1` (with `gpu_model`, `--gpus=<model>:1`); a CPU run requests none."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason='pip install -e ".[slurm]"')
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    gpu = _snakemake(tmp_path, "claims=nrws-lines-exact", "gpu_per_run=1")  # a generated toy: no data needed
    text = gpu.stdout + gpu.stderr
    assert gpu.returncode == 0, text[-3000:]
    assert _job_counts(text)["claim"] == 1  # only the chosen claim
    tune, claim = _resources(text, "tune"), _resources(text, "claim")
    assert tune and all(re.search(r"\bgpu=1\b", r) for r in tune), tune
    assert claim and all("gpu=" not in r for r in claim), claim  # verdicts and the report need no GPU
    # the train rule (planned only once tuning has run) declares the same resource as tune
    snakefile = (ROOT / "Snakefile").read_text()
    for rule in ("tune", "train"):
        body = re.search(rf"^(checkpoint|rule) {rule}:\n(.*?)\n\n\n", snakefile, re.MULTILINE | re.DOTALL)[2]
        assert re.search(r"resources:\n\s+gpu=GPU,", body), rule

    class Resources(dict):
        __getattr__ = dict.__getitem__

    def sbatch_gpu_flags(**resources) -> str:
        return set_gres_string(SimpleNamespace(resources=Resources(resources))).strip()

    assert sbatch_gpu_flags(gpu=1) == "--gpus=1"
    assert sbatch_gpu_flags(gpu=1, gpu_model="h100") == "--gpus=h100:1"
    assert sbatch_gpu_flags(gpu=0) == ""


def test_an_unknown_claim_in_the_claims_subset_is_named(tmp_path):
    out = _snakemake(tmp_path, "claims=rws-beats-ws,rws-beats-wz")
    assert out.returncode != 0
    assert "unknown claim 'rws-beats-wz'; known claims: " in out.stdout + out.stderr
