"""Result schema and storage (DESIGN.md, rule 3).

Per run, in its folder (bench.core.layout.run_dir):

* ``curve.parquet``: one tidy long table, one row per (seed, evaluation point, split, metric):
  CURVE_COLUMNS below. ``eval_k`` is the number of importance samples behind an estimate (0 for
  quantities that are not estimates).
* ``final_params.pt`` (only a run whose spec sets ``keep_params``): the trained model's state at
  the end of the run, ``{"seeds": [s_0, ...], "state": {name: tensor (R, ...)}}``, replica r being
  seed s_r (its last parameters; a diverged seed's are those it diverged with), as the model holds
  them (float32). Written before run.json, so a finished run that asked for it has it.
* ``run.json``: the resolved spec, status per seed, git commit and dirty flag, hashes of the method
  and bench sources, package versions, device, start/end times. Written last: its presence marks a
  finished run. Both files are written to a temporary name and renamed, so a kill never leaves a
  half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.core.errors import ClaimbenchError
from bench.core.layout import PROJECT_ROOT, atomic_write

CURVE_COLUMNS = [
    "run_id", "method", "dataset", "model", "profile", "seed", "step", "epoch", "examples",
    "train_seconds", "split", "metric", "eval_k", "value",
]
PARAMS = "final_params.pt"  # a run's final parameters, beside run.json (runs with keep_params only)


class CorruptRun(ClaimbenchError):
    """A run folder whose run.json or curve.parquet cannot be read (a kill mid-copy, a full disk)."""


PACKAGES = ("torch", "numpy", "pandas", "snakemake", "seaborn", "matplotlib", "claimbench")


def write_run(out_dir: Path, curve: pd.DataFrame, meta: dict[str, Any],
              params: dict[str, Any] | None = None) -> None:
    """Write curve.parquet, the final parameters when given (PARAMS), then run.json, each atomically."""
    out_dir = Path(out_dir)
    curve = curve[CURVE_COLUMNS]
    atomic_write(out_dir / "curve.parquet", lambda p: curve.to_parquet(p, index=False))
    if params is not None:
        atomic_write(out_dir / PARAMS, lambda p: torch.save(params, p))
    atomic_write(out_dir / "run.json", lambda p: p.write_text(json.dumps(meta, indent=2, default=str)))


def read_run(out_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(curve, run.json) of a finished run; a record that cannot be read is a CorruptRun naming it."""
    out_dir = Path(out_dir)
    try:
        meta = json.loads((out_dir / "run.json").read_text())
        curve = pd.read_parquet(out_dir / "curve.parquet")
        meta["spec"], meta["status"], meta["seeds"]  # noqa: B018 -- the keys every reader needs
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptRun(f"{out_dir}: the run's record cannot be read ({type(exc).__name__}: {exc}); delete "
                         f"that folder and rerun `snakemake` (it reruns the run)") from exc
    return curve, meta


def read_params(out_dir: Path) -> tuple[list[int], dict[str, torch.Tensor]]:
    """(seeds, state: name -> tensor (R, ...)) of a finished run's final parameters (on the CPU); a
    run that kept none (its spec does not set keep_params) or whose file cannot be read is a
    CorruptRun naming the folder and the fix."""
    path = Path(out_dir) / PARAMS
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return [int(s) for s in saved["seeds"]], dict(saved["state"])
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise CorruptRun(f"{path}: the run's final parameters cannot be read ({type(exc).__name__}: {exc}); only a "
                         f"run whose spec sets keep_params writes them: set keep_params: true in the claim's profile, "
                         f"or delete {out_dir} and rerun `snakemake`") from exc


def quarantine_corrupt_runs(runs_dir: Path) -> list[Path]:
    """Rename every unreadable run.json under runs_dir to run.json.corrupt, so that the workflow sees
    the run as unfinished and reruns it instead of failing on it (or trusting it); returns them."""
    moved = []
    for record in sorted(Path(runs_dir).glob("*/run.json")):
        try:
            read_run(record.parent)
        except CorruptRun:
            record.replace(record.with_name("run.json.corrupt"))
            moved.append(record)
    return moved


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the project checkout (None outside one); dirty means a tracked file
    outside results/ and figures/ differs from the commit. A copy of the tree sent to
    another machine (a GPU host) names the commit it was copied from in $CLAIMBENCH_COMMIT, which
    wins: such a copy may carry a stale .git or none."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if os.environ.get("CLAIMBENCH_COMMIT"):
        return {"commit": os.environ["CLAIMBENCH_COMMIT"], "dirty": False}
    commit = git("rev-parse", "HEAD")
    # the workflow's own outputs (results/, figures/) are tracked: writing them is not a code change
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!figures")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sources_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def bench_sources() -> list[Path]:
    return sorted((PROJECT_ROOT / "bench").rglob("*.py"))


def device_name(device: str) -> str:
    """Human-readable device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (x86_64, 2 threads)'."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def load_curves(paths: list[Path]) -> pd.DataFrame:
    """Concatenate the curve.parquet files of the given run directories; one that cannot be read
    is a CorruptRun naming its folder."""
    frames = []
    for p in paths:
        try:
            frames.append(pd.read_parquet(Path(p) / "curve.parquet"))
        except (OSError, ValueError) as exc:
            raise CorruptRun(f"{p}: the run's curve.parquet cannot be read ({type(exc).__name__}: {exc}); delete "
                             f"that folder and rerun `snakemake` (it reruns the run)") from exc
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)
