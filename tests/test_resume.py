"""Resumable runs (issue 15): a run killed mid-training resumes from its last checkpoint and ends
with the numbers of an uninterrupted run, bit for bit on a CPU."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.core.layout import checkpoint_dir, run_dir
from bench.core.spec import RunSpec
from bench.engine import loop, results, train

SPEC = RunSpec(profile="adhoc", dataset="uci_dna", model={"family": "helmholtz", "layers": [180, 20, 5]}, method="nrws",
               hparams={"fisher_every": 3}, seeds=(0, 1), epochs=8, batch_size=20, train_subset=400, eval_subset=100,
               eval_k=5, final_eval_k=20)
VALUES = ["seed", "step", "epoch", "examples", "split", "metric", "eval_k", "value"]  # not the clock


def _values(folder: Path) -> pd.DataFrame:
    curve, _ = results.read_run(folder)
    return curve[VALUES].sort_values(VALUES[:7]).reset_index(drop=True)


def test_a_crashed_run_resumes_from_its_checkpoint_to_the_same_numbers(tmp_path, monkeypatch):
    train.run(SPEC, tmp_path / "whole", progress=False)
    original, epochs = loop.Loop._epoch, []

    def crash_in_epoch_5(self, bar):
        if self.clock["epoch"] == 4:
            raise KeyboardInterrupt("killed")
        epochs.append(1)
        return original(self, bar)

    monkeypatch.setattr(loop.Loop, "_epoch", crash_in_epoch_5)
    with pytest.raises(KeyboardInterrupt):
        train.run(SPEC, tmp_path / "resumed", progress=False, checkpoints=tmp_path / "ck", checkpoint_every=0)
    assert len(list((tmp_path / "ck").iterdir())) == 1 and not (tmp_path / "resumed" / "run.json").exists()
    monkeypatch.setattr(loop.Loop, "_epoch", original)
    meta = train.run(SPEC, tmp_path / "resumed", progress=False, checkpoints=tmp_path / "ck", checkpoint_every=0)
    assert meta["resumed"] and len(epochs) == 4
    pd.testing.assert_frame_equal(_values(tmp_path / "resumed"), _values(tmp_path / "whole"))  # bit for bit
    assert not list((tmp_path / "ck").iterdir()), "a finished run leaves no checkpoint"


def test_a_per_seed_run_keeps_the_seeds_it_finished(tmp_path, monkeypatch):
    spec = RunSpec(**{**SPEC.to_dict(), "timing": "per_seed", "epochs": 3})
    train.run(spec, tmp_path / "whole", progress=False)
    original, trained = loop.Loop.run, []

    def die_on_seed_1(self, *args, **kwargs):
        trained.append(self.spec.seeds)
        if self.spec.seeds == (1,) and len(trained) == 2:
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(loop.Loop, "run", die_on_seed_1)
    for _ in range(2):
        try:
            train.run(spec, tmp_path / "resumed", progress=False, checkpoints=tmp_path / "ck", checkpoint_every=0)
        except KeyboardInterrupt:
            pass
    assert trained == [(0,), (1,), (1,)], "seed 0 finished before the kill and is not trained again"
    pd.testing.assert_frame_equal(_values(tmp_path / "resumed"), _values(tmp_path / "whole"))


def test_sigkill_then_rerun_equals_the_uninterrupted_run(tmp_path):
    """The command the workflow runs, killed with SIGKILL after its first checkpoint, then run again."""
    spec = RunSpec(**{**SPEC.to_dict(), "epochs": 40})
    command = [sys.executable, "-m", "bench", "run", "--spec", spec.to_json(), "--results", str(tmp_path / "results"),
               "--quiet", "--threads", "1", "--checkpoint-every", "0"]
    ck = checkpoint_dir(tmp_path / "results", spec.profile) / f"{spec.run_id}.seeds-0-1.pt"
    proc = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = run_dir(tmp_path / "results", spec.profile, spec.run_id)
    assert ck.exists() and not (out / "run.json").exists(), "killed after a checkpoint, before the end"
    subprocess.run(command, check=True)
    train.run(spec, tmp_path / "whole", progress=False, threads=1)
    assert results.read_run(out)[1]["resumed"]
    pd.testing.assert_frame_equal(_values(out), _values(tmp_path / "whole"))
