"""The catalogue of bad inputs (issue 12; README "Bad inputs and what you see"): claims, the command
line, data, runs, the workflow, a full disk. Each case asserts what a user sees (an error naming the
problem and the fix, never a traceback) and, where something had finished, that it is not lost.

Cases already tested elsewhere are listed in the README with that test's name. Everything here is
tiny (toy claims in temporary folders, smoke-size runs of a few dozen steps, one short Snakemake)."""

from __future__ import annotations

import copy
import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TOY_CLAIM, copy_project, write_claims

from bench import cli
from bench.claims.catalog import expand, get_claim, load_claims
from bench.core import layout
from bench.core.errors import ChecksumMismatch, ConfigError, DatasetNotFound, DiskFull
from bench.core.spec import RunSpec
from bench.engine import data, results, train


# ------------------------------------------------------------------------------------------ claims
def _toy(**changes) -> dict:
    spec = copy.deepcopy(TOY_CLAIM)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        target = spec
        for part in path:
            target = target[part]
        target[key] = value
    return spec


BAD_CLAIMS = {  # case -> (the claim file's text or its claim, what the one-line error says)
    "yaml-syntax-error": ("- id: toy\n  statement: [unclosed\n", "toy.yaml: not valid YAML"),
    "not-a-list": ("id: toy\nstatement: x\n", "toy.yaml: expected a YAML list of claims"),
    "unknown-key": (_toy(colour="red"), "claim 'toy': unknown key 'colour' in the claim (value 'red'); allowed keys:"),
    "missing-key": ({k: v for k, v in TOY_CLAIM.items() if k != "verdict"},
                    "claim 'toy': missing required key 'verdict' in the claim"),
    "unknown-method": (_toy(**{"methods.A": {"method": "rsw"}}),
                       "label 'A': methods.A.method = 'rsw': unknown method 'rsw'; known methods: "),
    "method-of-another-family": (_toy(**{"methods.A": {"method": "vae"}}),
                                 ("label 'A': methods.A.method = 'vae': method 'vae' trains 'vae' models, "
                                  "the claim's model is 'helmholtz'")),
    "unknown-dataset": (_toy(dataset="mnsit"), "dataset = 'mnsit': unknown dataset 'mnsit'; known datasets: "),
    "unknown-model-family": (_toy(**{"model.family": "helmholz"}),
                             "model.family = 'helmholz': unknown model family 'helmholz'"),
    "unknown-hyper-parameter": (_toy(**{"methods.A.kk": 5}),
                                ("label 'A': unknown hyper-parameter 'kk' of method 'rws' in methods.A (value 5); "
                                 "allowed keys: ")),
    "bad-hyper-parameter-value": (_toy(**{"methods.A.lr": "fast"}),
                                  ("label 'A': methods.A.lr = 'fast': must be a valid number (method 'rws', "
                                   "default 0.1)")),
    "hyper-parameter-out-of-range": (_toy(**{"methods.A.k": 0}),
                                     "label 'A': methods.A.k = 0: must be greater than or equal to 1"),
    "choice-not-allowed": (_toy(**{"methods.A.optimizer": "adamw"}),
                           ("label 'A': methods.A.optimizer = 'adamw': must be one of 'momentum_ema', 'sgd', 'adam', "
                            "'adagrad' (method 'rws'")),
    "bad-profile-value": (_toy(**{"profiles.quick.seeds": [0, 1, 1]}),
                          "claim 'toy': profiles.quick.seeds = [0, 1, 1]: must not repeat 1"),
    "no-quick-profile": (_toy(profiles={"paper": TOY_CLAIM["profiles"]["quick"]}),
                         "missing required key 'quick' in profiles"),
    "unknown-rule": (_toy(**{"verdict.rule": "best"}), "verdict.rule = 'best': unknown rule; use one of "),
    "verdict-names-an-unknown-label": (_toy(**{"verdict.pairs": [["A", "C"]]}),
                                       "label 'C': verdict.pairs[0][1] = 'C': not one of the claim's labels: 'A', 'B'"),
    "threshold-names-an-unknown-label": (_toy(verdict={"rule": "threshold", "method": "C", "value": -90.0}),
                                         "verdict.method = 'C': not one of the claim's labels: 'A', 'B'"),
}


@pytest.mark.parametrize("case", BAD_CLAIMS)
def test_bad_claim(tmp_path, case):
    """A bad claim file is one line naming the file, the claim, the label, the key, the value and
    what is allowed, when the claims load: before any job starts, so nothing is written."""
    claim, expected = BAD_CLAIMS[case]
    folder = tmp_path / "claims"
    if isinstance(claim, str):
        folder.mkdir()
        (folder / "toy.yaml").write_text(claim)
    else:
        write_claims(folder, claim)
    with pytest.raises(ConfigError) as err:
        load_claims(folder)
    msg = str(err.value)
    assert expected in msg, msg
    assert msg.startswith("toy.yaml") and "\n" not in msg, msg
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["claims", "toy.yaml"]  # nothing written


def test_duplicate_claim_id_across_files(tmp_path):
    write_claims(tmp_path, TOY_CLAIM, name="a.yaml")
    write_claims(tmp_path, TOY_CLAIM, name="b.yaml")
    with pytest.raises(ConfigError, match=r"^b.yaml, claim 'toy': duplicate claim id \(also in a.yaml\)$"):
        load_claims(tmp_path)


def test_empty_claims_folder(tmp_path):
    """What `bench list`, `plan`, `report` and `snakemake` say when the catalogue folder holds no claim."""
    (tmp_path / "draft.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"no claims in .*: expected \*.yaml files there, .* its files draft.yaml "
                                          r"hold no claims"):
        load_claims(tmp_path)


def test_claim_whose_first_layer_is_not_the_data_width(tmp_path, capsys):
    """Refused when the catalogue expands (before any job starts), naming the claim, the label,
    the layers and the dataset's width; a spec given to `select` directly is refused before training
    too, with the fix for the command line."""
    claims = load_claims(write_claims(tmp_path / "claims", _toy(**{"model.layers": [784, 10]})))
    with pytest.raises(ConfigError, match=r"claim 'toy', label 'A': model layers \[784, 10\] start at 784, but "
                                          r"dataset 'uci_dna' has 180 values per example"):
        expand(claims["toy"], "quick")
    spec = RunSpec(**{**SPEC.to_dict(), "model": {"family": "helmholtz", "layers": [784, 10]}})
    assert cli.main(["select", "--spec", spec.to_json(), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert ("error: model layers [784, 10] start at 784, but dataset 'uci_dna' has 180 values per example" in err
            and "--layers 180,10" in err), err
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------ command line
RUN = ["run", "--method", "rws", "--dataset", "uci_dna", "--layers", "180,5", "--epochs", "1", "--train-subset",
       "100", "--batch-size", "50", "--eval-subset", "20", "--eval-k", "2", "--final-eval-k", "2", "--quiet"]
SPEC = RunSpec(profile="adhoc", dataset="uci_dna", model={"family": "helmholtz", "layers": [180, 5]}, method="rws",
               hparams={"k": 2, "lr": 0.1, "optimizer": "momentum_ema", "q_updates": "wake+sleep", "sleep_every": 2,
                        "q_baseline": False},
               seeds=(0, 1), epochs=1, batch_size=50, train_subset=100, eval_subset=20, eval_k=2, final_eval_k=2)

BAD_COMMANDS = {  # case -> (arguments after RUN's or in place of them, what stderr says)
    "set-without-equals": (RUN + ["--set", "k"], "error: --set 'k': write key=value"),
    "set-unknown-key": (RUN + ["--set", "kk=5"],
                        "error: unknown key 'kk' in hyper-parameters of method 'rws'; allowed keys: k, lr"),
    "set-bad-value": (RUN + ["--set", "k=abc"], "error: --set k='abc': must be a valid integer (method 'rws', default"),
    "set-out-of-range": (RUN + ["--set", "lr=-1"], "error: --set lr=-1: must be greater than 0 (method 'rws'"),
    "set-choice-not-allowed": (RUN + ["--set", "optimizer=adamw"],
                               ("error: --set optimizer='adamw': must be one of 'momentum_ema', 'sgd', 'adam', "
                                "'adagrad'")),
    "model-unknown-key": (RUN + ["--model", "layerz=3"],
                          "error: unknown key 'layerz' in model config of family 'helmholtz'; allowed keys: "),
    "layers-not-numbers": (RUN + ["--layers", "180,x"],
                           "error: --layers '180,x': write comma-separated whole numbers, e.g. --layers 784,200,10"),
    "layers-not-the-data-width": (RUN + ["--layers", "784,5"],
                                  ("error: model layers [784, 5] start at 784, but dataset 'uci_dna' has 180 values "
                                   "per example: the first layer is the data's width (e.g. --layers 180,5)")),
    "seeds-not-numbers": (RUN + ["--seeds", "0,a"], "error: --seeds '0,a': write comma-separated whole numbers"),
    "seeds-repeated": (RUN + ["--seeds", "0,0"], "error: --seeds '0,0' repeats a seed"),
    "batch-size-zero": (RUN + ["--batch-size", "0"], "error: argument --batch-size: must be at least 1, got 0"),
    "epochs-not-a-number": (RUN + ["--epochs", "two"], "error: argument --epochs: 'two' is not a whole number"),
    "unknown-transform": (RUN + ["--transform", "binarize"],
                          "error: transform 'binarize'; use one of ('none', 'dynamic_binarize', 'unit_interval')"),
    "device-not-a-device": (RUN + ["--device", "tpu"], "error: --device 'tpu' is not a device; use auto, cpu, cuda"),
    "unknown-method": (["run", "--method", "rsw", "--dataset", "uci_dna", "--layers", "180,5"],
                       "error: unknown method 'rsw'; known methods: "),
    "unknown-dataset": (["run", "--method", "rws", "--dataset", "dna", "--layers", "180,5"],
                        "error: unknown dataset 'dna'; known datasets: "),
    "run-without-dataset": (["run", "--method", "rws"], "error: run needs --dataset, --layers (or --spec JSON)"),
    "spec-not-json": (["run", "--spec", "{profile: adhoc"], "error: --spec is not valid JSON ("),
    "spec-missing-keys": (["run", "--spec", '{"profile": "adhoc", "dataset": "uci_dna"}'],
                          "error: --spec lacks the keys model, method, hparams, seeds, epochs, batch_size"),
    "spec-unknown-key": (["run", "--spec", json.dumps({**SPEC.to_dict(), "epoks": 3})],
                         "error: unknown key 'epoks' in run spec; allowed keys: "),
    "spec-bad-hyper-parameter": (["run", "--spec",
                                  json.dumps({**SPEC.to_dict(), "hparams": {**SPEC.hparams, "k": "5"}})],
                                 "error: --spec k='5': must be a valid integer (method 'rws', default"),
    "select-spec-not-json": (["select", "--spec", "nope"], "error: --spec is not valid JSON ("),
    "unknown-profile": (["verdict", "toy", "--profile", "fast"],
                        "error: unknown profile 'fast'; known profiles: paper, quick, smoke"),
    "report-unknown-profile": (["report", "--profile", "qiuck"],
                               "error: unknown profile 'qiuck'; known profiles: paper, quick, smoke"),
    "unknown-claim": (["verdict", "toi", "--profile", "quick"], "error: unknown claim 'toi'; known claims: toy"),
    "unknown-dataset-to-fetch": (["fetch", "binarised_mnist"], "error: unknown dataset 'binarised_mnist'; known "),
    "method-name-not-an-identifier": (["new-method", "my-method"],
                                      "error: method name 'my-method' must be a Python identifier"),
    "method-name-taken": (["new-method", "rws"], "methods/rws.py already exists; pick another name or edit that file"),
    "tune-grid-without-values": (["tune", "toy", "A", "--grid", "lr"], "error: --grid 'lr': write name=v1,v2,..."),
}


@pytest.mark.parametrize("case", BAD_COMMANDS)
def test_bad_command_line(tmp_path, monkeypatch, capsys, case):
    """`python -m bench ...` with a bad flag: exit status 2 and one `error:` line naming the flag,
    the value and the fix; no traceback, nothing trained or written."""
    args, expected = BAD_COMMANDS[case]
    claims = load_claims(write_claims(tmp_path / "claims", TOY_CLAIM))  # the toy catalogue stands in for the real one
    monkeypatch.setattr(cli, "get_claim", functools.partial(get_claim, claims=claims))
    monkeypatch.chdir(tmp_path)
    if args[0] == "run":
        args = [*args, "--results", str(tmp_path / "results")]
    try:
        status = cli.main(args)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert expected in err and "Traceback" not in err, err
    assert not (tmp_path / "results").exists()


def test_cli_errors_reach_the_terminal_without_a_traceback(tmp_path):
    """The same through a real process, as the workflow's jobs run it."""
    out = subprocess.run([sys.executable, "-m", "bench", *RUN, "--set", "k=abc", "--results", str(tmp_path)],
                         check=False, capture_output=True, text=True, cwd=layout.PROJECT_ROOT)
    assert out.returncode == 2 and out.stderr.startswith("error: --set k='abc'") and "Traceback" not in out.stderr


def test_device_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli.torch.cuda, "is_available", lambda: False)
    assert cli.main([*RUN, "--device", "cuda", "--results", str(tmp_path / "results")]) == 2
    assert "error: --device 'cuda': CUDA is not available on this machine" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_the_catalogues_specs_pass_the_run_checks():
    """The checks above refuse bad hand-written specs only: every base run of the committed
    catalogue passes them (a claim its own profile refuses is that claim's error, not checked here)."""
    checked = 0
    for claim in load_claims().values():
        for profile in ("quick", "paper", "smoke"):
            try:
                plan = expand(claim, profile)
            except ConfigError:
                continue
            for spec in plan.runs.values():
                cli._check_spec(spec, "--spec")
                checked += 1
    assert checked > 50


# -------------------------------------------------------------------------------------------- data
def _offline(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.pooch, "retrieve", offline)


def test_data_variable_pointing_nowhere(tmp_path, monkeypatch):
    """$CLAIMBENCH_DATA names a folder that does not exist (a typo, a relative path from elsewhere)."""
    _offline(monkeypatch, tmp_path)
    monkeypatch.setenv("CLAIMBENCH_DATA", str(tmp_path / "no-such-folder"))
    with pytest.raises(DatasetNotFound) as err:
        data.load("uci_dna")
    msg = str(err.value)
    assert f"  - {tmp_path / 'no-such-folder'} (does not exist)\n" in msg, msg
    assert "export CLAIMBENCH_DATA=/path/to/data" in msg and "python -m bench fetch uci_dna" in msg


def test_truncated_dataset_file(tmp_path, monkeypatch, data_dir):
    """An npz cut short (an interrupted copy) is refused by its checksum, never loaded."""
    folder = tmp_path / "data"
    folder.mkdir()
    blob = (data_dir / "uci_dna.npz").read_bytes()
    (folder / "uci_dna.npz").write_bytes(blob[: len(blob) // 3])
    monkeypatch.setenv("CLAIMBENCH_DATA", str(folder))
    with pytest.raises(ChecksumMismatch, match=r"uci_dna.npz: sha256 \w+ matches none of the registered hashes .* "
                                               r"replace it with a verified copy, or delete it"):
        data.load("uci_dna", download=False)


# -------------------------------------------------------------------------------------------- runs
def _finished_neighbour(results_dir: Path) -> tuple[Path, dict[str, bytes]]:
    """A finished run in the same results folder, and its files' bytes, to check that nothing touches it."""
    folder = results_dir / "adhoc" / "runs" / "aaaaaaaaaaaa"
    curve = pd.DataFrame([["aaaaaaaaaaaa", "rws", "uci_dna", "helmholtz 180-5", "adhoc", 0, 4, 1, 100, 0.1, "test",
                           "ll", 2, -120.0]], columns=results.CURVE_COLUMNS)
    results.write_run(folder, curve, {"run_id": "aaaaaaaaaaaa", "spec": {}, "status": "ok",
                                      "seeds": {"0": {"status": "ok"}}})
    return folder, {p.name: p.read_bytes() for p in folder.iterdir()}


def _cut_run_json(folder: Path) -> None:
    text = (folder / "run.json").read_text()
    (folder / "run.json").write_text(text[: len(text) // 2])


def _cut_curve(folder: Path) -> None:
    blob = (folder / "curve.parquet").read_bytes()
    (folder / "curve.parquet").write_bytes(blob[: len(blob) // 2])


BROKEN_RUNS = {
    "run-json-cut-short": _cut_run_json,
    "run-json-not-a-record": lambda folder: (folder / "run.json").write_text('{"run_id": "x"}'),
    "curve-missing": lambda folder: (folder / "curve.parquet").unlink(),
    "curve-cut-short": _cut_curve,
}


@pytest.mark.parametrize("case", BROKEN_RUNS)
def test_broken_run_record(tmp_path, case):
    """A finished run's record damaged after the fact: every reader names its folder and the fix,
    the workflow's quarantine renames its run.json so that the run reruns, and the other runs stay."""
    runs = tmp_path / "adhoc" / "runs"
    neighbour, before = _finished_neighbour(tmp_path)
    folder = runs / "0123456789ab"
    results.write_run(folder, pd.read_parquet(neighbour / "curve.parquet"),
                      {"run_id": "0123456789ab", "spec": {}, "status": "ok", "seeds": {}})
    BROKEN_RUNS[case](folder)
    with pytest.raises(results.CorruptRun, match=rf"{folder}: the run's record cannot be read .* delete that folder "
                                                 r"and rerun `snakemake`"):
        results.read_run(folder)
    if (folder / "run.json").exists() and case.startswith("curve"):
        # `bench report`'s summary reads every finished run's curve: named, not a pyarrow traceback
        with pytest.raises(results.CorruptRun, match=rf"{folder}: the run's curve.parquet cannot be read"):
            results.load_curves([neighbour, folder])
    assert results.quarantine_corrupt_runs(runs) == [folder / "run.json"]
    assert not (folder / "run.json").exists() and (folder / "run.json.corrupt").exists()
    assert {p.name: p.read_bytes() for p in neighbour.iterdir()} == before
    results.read_run(neighbour)


def test_a_run_killed_before_its_record_is_unfinished_and_reruns(tmp_path, monkeypatch):
    """An interrupt after curve.parquet but before run.json (here: Ctrl-C in the rename of run.json;
    a SIGKILL may also leave a hidden temporary file, which nothing reads) leaves a folder without
    run.json: not finished, so the workflow reruns it, the summary skips it, the quarantine leaves
    it alone; the rerun completes it and no other run is touched."""
    neighbour, before = _finished_neighbour(tmp_path)
    folder = tmp_path / "adhoc" / "runs" / SPEC.run_id
    real_replace = os.replace

    def killed(src, dst):
        if Path(dst).name == "run.json":
            raise KeyboardInterrupt  # the process stops here
        real_replace(src, dst)

    monkeypatch.setattr(layout.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        train.run(SPEC, folder, progress=False)
    monkeypatch.setattr(layout.os, "replace", real_replace)
    assert sorted(p.name for p in folder.iterdir()) == ["curve.parquet"]  # no run.json, no temporary file
    with pytest.raises(results.CorruptRun):
        results.read_run(folder)
    assert results.quarantine_corrupt_runs(folder.parent) == []
    meta = train.run(SPEC, folder, progress=False)  # what the rerun does
    assert results.read_run(folder)[1]["run_id"] == meta["run_id"] == SPEC.run_id
    assert {p.name: p.read_bytes() for p in neighbour.iterdir()} == before


# ------------------------------------------------------------------------------------ disk full
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_keeps_the_previous_file(tmp_path):
    """A write that runs out of space half way: the previous file is intact, no partial or
    temporary file is left, and the error says so."""
    target = tmp_path / "claims" / "toy.json"
    layout.atomic_write(target, lambda p: p.write_text('{"verdict": "reproduced"}'))

    def half_then_full(tmp: Path) -> None:
        tmp.write_text('{"verdict": "not rep')
        _enospc()

    with pytest.raises(DiskFull, match=rf"{target}: no space left on the device \(No space left on device\); its "
                                       r"previous version is unchanged. Free some space"):
        layout.atomic_write(target, half_then_full)
    assert target.read_text() == '{"verdict": "reproduced"}'
    assert [p.name for p in target.parent.iterdir()] == ["toy.json"]


def test_disk_full_during_a_run(tmp_path, monkeypatch, capsys):
    """`bench run` when the disk fills as it writes run.json: exit status 2 and one line saying so;
    the run has no run.json (unfinished: the next invocation reruns it) and no temporary file; a
    finished run beside it is untouched."""
    neighbour, before = _finished_neighbour(tmp_path)
    real_write_text = Path.write_text

    def full(self, text, *args, **kwargs):
        if self.name.startswith(".run.json.tmp"):
            real_write_text(self, text[:10], *args, **kwargs)
            _enospc()
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert cli.main([*RUN, "--layers", "180,5", "--seeds", "0,1", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run.json: no space left on the device" in err and "nothing was written" in err
    folder = next(p for p in (tmp_path / "adhoc" / "runs").iterdir() if p != neighbour)
    assert sorted(p.name for p in folder.iterdir()) == ["curve.parquet"]
    assert {p.name: p.read_bytes() for p in neighbour.iterdir()} == before


def test_disk_full_while_caching_a_converted_dataset(tmp_path, monkeypatch, data_dir):
    """Converting verified originals into data/ on a full disk: a DiskFull, no partial npz (which a
    later load would refuse), the originals untouched."""
    src = tmp_path / "originals"
    src.mkdir()
    shutil.copy(data_dir / "orig" / "frey_rawface.mat", src / "frey_rawface.mat")
    monkeypatch.setenv("CLAIMBENCH_DATA", str(src))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")
    monkeypatch.setattr(data.np, "savez_compressed", _enospc)
    with pytest.raises(DiskFull, match="frey_faces.npz: no space left on the device"):
        data.load("frey_faces", download=False)
    assert not list((tmp_path / "cache").iterdir())
    assert (src / "frey_rawface.mat").read_bytes() == (data_dir / "orig" / "frey_rawface.mat").read_bytes()


# ------------------------------------------------------------------------------------ the workflow
WORKFLOW_CLAIM = {**TOY_CLAIM, "id": "toy-lines", "statement": "a toy claim on the generated 3x3 lines",
                  "dataset": "lines_3x3", "model": {"family": "helmholtz", "layers": [9, 3]}}


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory) -> Path:
    """A copy of the project whose catalogue is one toy claim on generated data."""
    work = copy_project(tmp_path_factory.mktemp("bad") / "project", ("Snakefile", "bench", "methods", "profiles"))
    for path in (work / "bench" / "claims").glob("*.yaml"):
        path.unlink()
    write_claims(work / "bench" / "claims", WORKFLOW_CLAIM)
    return work


def _snakemake(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--cores", "1", *args]


@pytest.mark.parametrize("config, message", [
    ("profile=fast", "claimbench: --config profile=fast: unknown profile 'fast'; known profiles: paper, quick, smoke; "
                     "fix: profile=quick (a 2-core CPU), paper (a GPU) or smoke (a tiny quick)"),
    ("claims=nope", "claimbench: --config claims=nope: unknown claim 'nope'; known claims: toy-lines; "
                    "fix: claims=<id>,<id> with ids from that list"),
    ("threads_per_run=two", "claimbench: --config threads_per_run=two: invalid literal for int() with base 10: "
                            "'two'; fix: a whole number, e.g. threads_per_run=2"),
])
def test_workflow_with_a_bad_config_says_so_in_one_line(toy_project, config, message):
    """A bad --config value stops the workflow before planning with one line naming the value, the
    problem and the fix; no traceback (Snakemake prints one with any exception a Snakefile raises)."""
    out = subprocess.run(_snakemake(toy_project, "-n", "--config", config), check=False, cwd=toy_project,
                         capture_output=True, text=True)
    said = out.stdout + out.stderr
    assert out.returncode != 0
    assert message in said and 'File "' not in said and "Traceback" not in said, said
    assert not (toy_project / "results").exists()


def test_concurrent_snakemake_on_the_same_results_is_refused(toy_project):
    """A second `snakemake` while one runs on the same folder stops at Snakemake's lock, saying why
    and how to clear a stale lock; the first one carries on undisturbed."""
    first = subprocess.Popen(_snakemake(toy_project, "--config", "profile=smoke"), cwd=toy_project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        locks = toy_project / ".snakemake" / "locks"
        deadline = time.time() + 60
        while not (locks.is_dir() and any(locks.iterdir())) and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, "the first invocation ended before the second could start"
        second = subprocess.run(_snakemake(toy_project, "--config", "profile=smoke"), check=False, cwd=toy_project,
                                capture_output=True, text=True)
        said = second.stdout + second.stderr
        assert second.returncode != 0 and "Directory cannot be locked" in said and "--unlock" in said, said
        assert first.poll() is None  # still running: the refused invocation did not disturb it
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_the_workflow_quarantines_a_corrupt_record(toy_project, tmp_path):
    """The Snakefile renames an unreadable run.json before planning, and says so (the run reruns)."""
    work = tmp_path / "project"
    shutil.copytree(toy_project, work, symlinks=True, ignore=shutil.ignore_patterns(".snakemake", "results"))
    folder = work / "results" / "smoke" / "runs" / "0123456789ab"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text('{"run_id": ')
    out = subprocess.run(_snakemake(work, "-n", "--config", "profile=smoke"), check=False, cwd=work,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"claimbench: {Path('results/smoke/runs/0123456789ab/run.json')} cannot be read; renamed to " \
           f"run.json.corrupt, the run will rerun" in out.stderr
    assert (folder / "run.json.corrupt").exists() and not (folder / "run.json").exists()

