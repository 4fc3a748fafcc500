"""Bad input gets a clear error naming the problem and the fix."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from bench.claims.catalog import load_claims
from bench.core.errors import (
    ChecksumMismatch,
    ConfigError,
    DatasetNotFound,
)
from bench.core.spec import RunSpec
from bench.engine import data, train

CLAIM = """
- id: toy
  statement: a toy claim
  dataset: uci_dna
  model: {{family: helmholtz, layers: [180, 10]}}
  methods:
    {methods}
  verdict: {{rule: better, pairs: [[A, B]]}}
  profiles:
    quick: {{seeds: [0, 1], epochs: 1, batch_size: 50{extra}}}
"""


def _claims(tmp_path: Path, methods: str = "A: {method: rws}\n    B: {method: ws}", extra: str = "") -> Path:
    (tmp_path / "toy.yaml").write_text(textwrap.dedent(CLAIM.format(methods=methods, extra=extra)))
    return tmp_path


def test_valid_toy_claim_loads(tmp_path):
    assert list(load_claims(_claims(tmp_path))) == ["toy"]


def test_unknown_method_in_claim_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"toy.yaml, claim 'toy', label 'A': methods.A.method = 'nope': "
                                          r"unknown method 'nope'; known methods: .*rws.*ws"):
        load_claims(_claims(tmp_path, methods="A: {method: nope}\n    B: {method: ws}"))


def test_unknown_hyperparameter_names_key_and_allowed_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"toy.yaml, claim 'toy', label 'A': unknown hyper-parameter 'kk' of method "
                                          r"'rws' in methods.A \(value 5\); allowed keys: k, lr"):
        load_claims(_claims(tmp_path, methods="A: {method: rws, kk: 5}\n    B: {method: ws}"))


def test_unknown_profile_key(tmp_path):
    with pytest.raises(ConfigError, match=r"toy.yaml, claim 'toy': unknown key 'epoks' in profiles.quick \(value 3\); "
                                          r"allowed keys: .*epochs"):
        load_claims(_claims(tmp_path, extra=", epoks: 3"))


def test_missing_dataset_names_places_url_and_env_var(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("CLAIMBENCH_DATA", str(empty))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.pooch, "retrieve", offline)
    with pytest.raises(DatasetNotFound) as err:
        data.load("binarized_mnist")
    msg = str(err.value)
    for needle in ("binarized_mnist", str(empty), str(tmp_path / "cache"),
                   "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_test.amat",
                   "CLAIMBENCH_DATA", "network is unreachable"):
        assert needle in msg


def test_corrupted_dataset_file_is_refused(tmp_path, monkeypatch, data_dir):
    bad = tmp_path / "uci_dna.npz"
    blob = bytearray((data_dir / "uci_dna.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    monkeypatch.setenv("CLAIMBENCH_DATA", str(tmp_path))
    with pytest.raises(ChecksumMismatch, match=r"uci_dna.npz: sha256 .* matches none of the registered hashes"):
        data.load("uci_dna")


def test_corrupted_original_is_refused(tmp_path, monkeypatch, data_dir):
    orig = tmp_path / "frey_rawface.mat"
    shutil.copy(data_dir / "orig" / "frey_rawface.mat", orig)
    with open(orig, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    monkeypatch.setenv("CLAIMBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")
    with pytest.raises(ChecksumMismatch, match="frey_rawface.mat: sha256 .* does not match"):
        data.load("frey_faces")


def test_divergence_is_recorded_with_last_good_step(tmp_path, data_dir):
    spec = RunSpec(profile="test", dataset="uci_dna", model={"family": "helmholtz", "layers": [180, 10]}, method="rws",
                   hparams={"k": 2, "lr": 1e37, "optimizer": "sgd", "q_updates": "wake+sleep", "sleep_every": 1,
                            "q_baseline": False},
                   seeds=(0, 1), epochs=3, batch_size=50, train_subset=200, eval_k=5, eval_subset=50, final_eval_k=10)
    meta = train.run(spec, tmp_path / "run", progress=False)
    assert meta["status"] == "diverged"
    for seed in meta["seeds"].values():
        assert seed["status"] == "diverged"
        assert seed["last_good_step"] == seed["diverged_at_step"] - 1
    assert (tmp_path / "run" / "curve.parquet").exists()


def test_cli_reports_unknown_method_without_traceback(data_dir):
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--method", "nope", "--dataset", "uci_dna",
                          "--layers", "180,10"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "error: unknown method 'nope'; known methods:" in out.stderr
    assert "Traceback" not in out.stderr


def test_grey_dataset_without_transform_is_a_config_error(tmp_path, data_dir):
    spec = RunSpec(profile="test", dataset="frey_faces", model={"family": "helmholtz", "layers": [560, 10]},
                   method="ws", hparams={"lr": 0.1, "optimizer": "sgd", "sleep_every": 1}, seeds=(0,), epochs=1,
                   batch_size=10, eval_splits=("all",), final_eval_splits=("all",))
    with pytest.raises(ConfigError, match="grey-scale: set transform"):
        train.run(spec, tmp_path / "run", progress=False)


def test_plan_json_lists_each_run_once_as_a_runnable_spec(capsys):
    from bench.cli import main

    assert main(["plan", "--profile", "quick", "--claims", "nrws-final-ll", "nrws-less-time", "--json"]) == 0
    specs = [RunSpec.from_json(line) for line in capsys.readouterr().out.splitlines()]
    claim = load_claims()["nrws-final-ll"]
    assert len(specs) == len(claim.spec["methods"]) == len({s.run_id for s in specs})
    assert {s.profile for s in specs} == {"quick"}


def test_commit_of_a_copied_tree_comes_from_the_environment(tmp_path, monkeypatch):
    from bench.engine import results

    monkeypatch.setattr(results, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("CLAIMBENCH_COMMIT", raising=False)
    assert results.git_state() == {"commit": None, "dirty": None}
    monkeypatch.setenv("CLAIMBENCH_COMMIT", "abc123")
    assert results.git_state() == {"commit": "abc123", "dirty": False}


def test_a_run_record_cut_in_half_is_named_and_rerun(tmp_path):
    """Issue 12, fault 8: a truncated run.json is a clear error naming the folder, and the workflow's
    quarantine renames it so that the run reruns instead of breaking its claim's verdict job."""
    from bench.engine import results

    folder = tmp_path / "runs" / "0123456789ab"
    results.write_run(folder, pd.DataFrame(columns=results.CURVE_COLUMNS), {"run_id": "x", "spec": {}, "status": "ok",
                                                                             "seeds": {}})
    text = (folder / "run.json").read_text()
    (folder / "run.json").write_text(text[: len(text) // 2])
    with pytest.raises(results.CorruptRun, match=str(folder)):
        results.read_run(folder)
    assert results.quarantine_corrupt_runs(tmp_path / "runs") == [folder / "run.json"]
    assert not (folder / "run.json").exists() and (folder / "run.json.corrupt").exists()


@pytest.mark.parametrize("model, transform", [
    ({"family": "vae", "layers": [784, 5], "hidden": [[20]]}, "unit_interval"),
    ({"family": "helmholtz", "layers": [784, 10]}, "unit_interval"),
])
def test_a_bernoulli_likelihood_on_grey_pixels_is_refused(tmp_path, model, transform):
    """Issue 12, fault 5: grey pixels in [0, 1] under a Bernoulli likelihood give no log-likelihood;
    the error names the model, the data and the fix before anything trains."""
    spec = RunSpec(profile="adhoc", dataset="mnist", model=model, method="vae" if model["family"] == "vae" else "rws",
                   hparams={}, seeds=(0,), epochs=1, batch_size=50, train_subset=100, transform=transform)
    with pytest.raises(ConfigError, match="unit_interval"):
        train.run(spec, tmp_path, progress=False)


def test_the_vae_family_builds_from_the_command_line(tmp_path):
    """Issue 12, fault 11: `bench run --method vae` takes the model's other keys with --model."""
    from bench.cli import main

    args = ["run", "--method", "vae", "--dataset", "uci_dna", "--layers", "180,4", "--epochs", "1", "--train-subset",
            "100", "--batch-size", "50", "--eval-subset", "20", "--eval-k", "2", "--final-eval-k", "2", "--quiet",
            "--results", str(tmp_path)]
    assert main(args) == 2  # no hidden: a clear error naming it
    assert main([*args, "--model", "hidden=[[16]]"]) == 0
