"""The results layout: the one module that knows where every file of a profile lives, and the
atomic write every file goes through.

Under the project root (``root``), for a profile P::

    results/P/runs/<run-id>/curve.parquet, run.json   one run (run.json written last)
    results/P/runs/<run-id>/final_params.pt           its final parameters (runs with keep_params only)
    results/P/logs/<run-id>.log                       its progress bar and stderr
    results/P/checkpoints/<run-id>.seeds-<s>.pt       an unfinished run's checkpoint (removed when it ends)
    results/P/claims/<claim>.json                     a claim's verdict and numbers
    results/P/tables/<claim>.csv                      its per-method table
    figures/P/<claim>.png                             its figure
    results/P/tables/<claim>--interpolation.csv       Keskar's 1-D interpolation of a claim's two runs
    figures/P/<claim>--interpolation.png              and its figure
    results/P/summary.parquet                         every finished run's curve rows
    results/P/tuning/<base-run-id>.json              a label's equal-budget tuning (bench.claims.tuning)
    results/P/tuning/<claim>--<label>.csv             a tuning table; its runs in tuning/runs/
    results/REPORT.md                                 quick and paper side by side
    results/references/nuts-softmax-<hash>.pt         a NUTS reference posterior (keyed by its data: any profile)
    results/P/REPORT.md                               any other profile (smoke)

Functions taking ``results`` expect the results folder itself (``root / "results"``), as the
``run`` command's ``--results`` flag gives it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from bench.core.errors import DiskFull

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout: bench/, methods/, results/, data/
MAIN_PROFILES = ("quick", "paper")  # shown side by side in results/REPORT.md
REFERENCES = PROJECT_ROOT / "results" / "references"  # reference posteriors, computed once per training set


def run_dir(results: Path, profile: str, run_id: str) -> Path:
    return Path(results) / profile / "runs" / run_id


def checkpoint_dir(results: Path, profile: str) -> Path:
    """Checkpoints of unfinished runs (bench.engine.loop): outside the run folders, which Snakemake
    removes when it reruns a killed job, so that the rerun resumes from them."""
    return Path(results) / profile / "checkpoints"


def log_path(results: Path, profile: str, run_id: str) -> Path:
    return Path(results) / profile / "logs" / f"{run_id}.log"


def claim_paths(root: Path, profile: str, claim_id: str) -> dict[str, Path]:
    root = Path(root)
    return {
        "json": root / "results" / profile / "claims" / f"{claim_id}.json",
        "table": root / "results" / profile / "tables" / f"{claim_id}.csv",
        "figure": root / "figures" / profile / f"{claim_id}.png",
    }


def interpolation_paths(root: Path, profile: str, claim_id: str) -> dict[str, Path]:
    """The table and figure of a claim's 1-D interpolation between two runs (bench.engine.interpolation)."""
    root = Path(root)
    return {"table": root / "results" / profile / "tables" / f"{claim_id}--interpolation.csv",
            "figure": root / "figures" / profile / f"{claim_id}--interpolation.png"}


def summary_path(root: Path, profile: str) -> Path:
    return Path(root) / "results" / profile / "summary.parquet"


def report_path(root: Path, profile: str) -> Path:
    return Path(root) / "results" / ("REPORT.md" if profile in MAIN_PROFILES else f"{profile}/REPORT.md")


def tuning_table(results: Path, profile: str, claim_id: str, label: str) -> Path:
    return Path(results) / profile / "tuning" / f"{claim_id}--{label.replace(' ', '_')}.csv"


def tuning_selection(results: Path, profile: str, base_run_id: str) -> Path:
    """The equal-budget tuning's selection for one base run (bench.claims.tuning)."""
    return Path(results) / profile / "tuning" / f"{base_run_id}.json"


def evaluated_marker(results: Path, profile: str, base_run_id: str) -> Path:
    """An empty file the workflow writes once a label's tuned evaluation run exists (the Snakefile's
    rule `evaluated`), beside the logs (not a result, never committed)."""
    return Path(results) / profile / "logs" / f"{base_run_id}.evaluated"


def tuning_run_dir(results: Path, profile: str, run_id: str) -> Path:
    return Path(results) / profile / "tuning" / "runs" / run_id


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """write(tmp) to a temporary name beside `path`, then rename: a kill never leaves half a file.
    A write that fails leaves `path` as it was and removes its temporary file; a full disk (or an
    exceeded quota) is a DiskFull naming the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = "its previous version is unchanged" if path.exists() else "nothing was written"
            raise DiskFull(f"{path}: no space left on the device ({exc.strerror}); {kept}. Free some space (or "
                           f"write the results elsewhere) and rerun the same command: finished runs are kept "
                           f"and only unfinished ones run.") from exc
        raise
