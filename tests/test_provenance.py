"""A run depends on every source file that can change its numbers, and on nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import ROOT

from bench.claims.catalog import expand, get_claim, run_sources
from bench.engine import train
from bench.engine.data import file_digest


def _relative(paths: list[Path]) -> set[str]:
    return {str(p.relative_to(ROOT)) for p in paths}


def test_a_run_depends_on_the_harness_code_it_uses():
    """Issue 12: deleting `- log K` in the IS estimator must rerun the runs it scores; an edit to
    the report code must not rerun anything."""
    ws = _relative(run_sources(expand(get_claim("rws-beats-ws"), "smoke").runs["WS"]))
    assert {"methods/ws.py", "bench/estimators/importance.py", "bench/models/helmholtz.py", "bench/nn/bernoulli.py",
            "bench/workloads/helmholtz.py", "bench/engine/train.py", "bench/engine/data.py"} <= ws
    assert not {p for p in ws if p.startswith(("bench/report", "bench/claims", "bench/cli", "bench/perf"))}
    assert "bench/curvature/mlp.py" not in ws and "methods/rws.py" not in ws  # only what it imports
    kfac = _relative(run_sources(expand(get_claim("kfac-fewer-updates-than-sgd"), "smoke").runs["K-FAC"]))
    assert {"methods/kfac.py", "bench/curvature/mlp.py", "bench/models/mlp.py", "bench/workloads/mlp.py"} <= kfac


def test_run_json_records_the_dataset_checksum(tmp_path, data_dir):
    spec = expand(get_claim("rws-beats-ws"), "smoke").runs["WS"]
    assert train.dataset_checksum(spec.dataset) == file_digest(data_dir / f"{spec.dataset}.npz")
    assert train.dataset_checksum("lines_3x3") == "generated"


def test_the_dirty_flag_ignores_the_workflows_own_outputs(tmp_path, monkeypatch):
    """results/ and figures/ are tracked and rewritten by the workflow itself: that is not a code
    change. An edited source file is."""
    from bench.engine import results

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for name in ("bench/x.py", "results/REPORT.md", "figures/quick/a.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "v1")
    monkeypatch.setattr(results, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("CLAIMBENCH_COMMIT", raising=False)
    (tmp_path / "results/REPORT.md").write_text("v2")
    (tmp_path / "figures/quick/a.png").write_text("v2")
    assert results.git_state()["dirty"] is False
    (tmp_path / "bench/x.py").write_text("v2")
    assert results.git_state()["dirty"] is True


def test_a_source_files_imports_are_read_again_once_it_changes(tmp_path):
    """The parse of a file's imports is memoised (the workflow asks for every run's sources after each
    tuning job), keyed by the file's modification time, so an edit is still seen."""
    import os

    from bench.engine.methods import _imported_modules

    module = tmp_path / "m.py"
    module.write_text("import bench.core.spec\n")
    assert _imported_modules(module) == {"bench.core.spec"}
    module.write_text("import bench.core.spec\nfrom bench.engine import train\n")
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later modification time
    assert _imported_modules(module) == {"bench.core.spec", "bench.engine", "bench.engine.train"}
