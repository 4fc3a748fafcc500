"""Equal-budget tuning (bench/claims/tuning.py): the choice on problems whose best configuration is
planted, the grid every method gets, the tuning runs' seed and carved validation split, one real
tiny selection and its cache, and the carved split itself (bench.engine.train.prepare_data)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from bench.claims import tuning
from bench.claims.catalog import PROFILES, expand, get_claim, plan_all
from bench.claims.tuning import CONFIGS, STEP, TUNING_SEED, grid, knobs, select, tuning_spec
from bench.core.errors import ConfigError
from bench.core.layout import tuning_run_dir, tuning_selection
from bench.core.spec import RunSpec
from bench.engine import data, results, train
from bench.workloads import workload_for


def base_of(claim_id: str, label: str, profile: str = "smoke") -> RunSpec:
    return expand(get_claim(claim_id), profile).runs[label]


@pytest.fixture
def ws_base() -> RunSpec:
    return base_of("rws-beats-ws", "WS")


# --------------------------------------------------------------------------- a fake training run
class FakeTrain:
    """Stands in for bench.engine.train.run: writes a real run folder (curve.parquet and run.json
    through bench.engine.results.write_run) whose validation score is planted: for each knob with an
    optimum v*, a parabola in log10(v) peaking at 0 there (the workload's tuning metric and
    direction: a log-likelihood rises to 0, a loss falls to 0). `diverge(hparams)` marks a
    configuration diverged (its planted value is then the best of all, which must not matter)."""

    def __init__(self, optimum: dict[str, float], diverge=lambda hparams: False):
        self.optimum, self.diverge, self.specs = optimum, diverge, []

    def planted(self, hparams: dict) -> float:
        return -sum((math.log10(hparams[k]) - math.log10(v)) ** 2 for k, v in self.optimum.items())

    def __call__(self, spec: RunSpec, folder, threads=None, progress=True, device="auto") -> dict:
        assert progress is False  # tuning runs print no progress bar
        self.specs.append(spec)
        metric, higher = workload_for(spec.model["family"]).tuning_metric
        value = self.planted(spec.hparams)
        value = value if higher else -value
        diverged = self.diverge(spec.hparams)
        rows = [{"run_id": spec.run_id, "method": spec.method, "dataset": spec.dataset, "model": spec.model_name,
                 "profile": spec.profile, "seed": seed, "step": step, "epoch": epoch, "examples": 50 * step,
                 "train_seconds": 0.1 * step, "split": "valid", "metric": metric, "eval_k": spec.eval_k,
                 "value": v}
                for seed in spec.seeds for step, epoch, v in ((0, 0, value - 50.0), (10, spec.epochs, value))]
        status = "diverged" if diverged else "ok"
        meta = {"run_id": spec.run_id, "spec": spec.to_dict(), "status": status,
                "seeds": {str(s): {"status": status} for s in spec.seeds}, "train_seconds": 1.0, "device": "fake"}
        results.write_run(folder, pd.DataFrame(rows), meta)
        return meta


def fake_select(monkeypatch, tmp_path, base: RunSpec, fake: FakeTrain) -> dict:
    monkeypatch.setattr(train, "run", fake)  # bench.claims.tuning calls train.run(spec, folder, ...)
    assert tuning.train.run is fake
    return select(base, tmp_path)


def nearest(values: list[float], target: float) -> float:
    return min(values, key=lambda v: abs(math.log10(v) - math.log10(target)))


# --------------------------------------------------------------------------- the choice
@pytest.mark.parametrize("lr_star", [0.05, 0.2, 0.09])
def test_tuning_picks_the_grid_point_nearest_a_planted_optimum(monkeypatch, tmp_path, ws_base, lr_star):
    lrs = [p["lr"] for p in grid(ws_base, CONFIGS["smoke"])]
    assert len(lrs) == CONFIGS["smoke"] and min(lrs) < lr_star < max(lrs)
    selection = fake_select(monkeypatch, tmp_path, ws_base, FakeTrain({"lr": lr_star}))
    assert selection["chosen"] == {"lr": nearest(lrs, lr_star)}
    assert not selection["widened"] and selection["on_edge"] == {} and not selection["all_diverged"]
    assert sorted(p["lr"] for p in selection["points"]) == sorted(lrs)
    assert all(p["status"] == "ok" and np.isfinite(p["score"]) for p in selection["points"])
    best = max(selection["points"], key=lambda p: p["score"])
    assert best["lr"] == selection["chosen"]["lr"]
    assert best["score"] == pytest.approx(FakeTrain({"lr": lr_star}).planted({"lr": best["lr"]}))
    on_disk = json.loads(tuning_selection(tmp_path, "smoke", ws_base.run_id).read_text())
    assert on_disk == json.loads(json.dumps(selection))


def test_the_grid_is_log_spaced_around_the_claims_value(ws_base):
    lrs = sorted(p["lr"] for p in grid(ws_base, CONFIGS["smoke"]))
    np.testing.assert_allclose(np.diff(np.log10(lrs)), STEP, rtol=1e-5)
    assert np.mean(np.log10(lrs)) == pytest.approx(math.log10(ws_base.hparams["lr"]), abs=1e-5)


def test_an_optimum_far_above_the_grid_widens_it_once_and_says_it_is_still_on_the_edge(monkeypatch, tmp_path, ws_base):
    lrs = [p["lr"] for p in grid(ws_base, CONFIGS["smoke"])]
    fake = FakeTrain({"lr": 1e3})
    selection = fake_select(monkeypatch, tmp_path, ws_base, fake)
    assert selection["widened"] is True
    tried = sorted(p["lr"] for p in selection["points"])
    assert len(tried) == CONFIGS["smoke"] + 1 and tried[:-1] == sorted(lrs)  # one more point ...
    assert tried[-1] == pytest.approx(max(lrs) * 10 ** STEP, rel=1e-5)  # ... STEP decades beyond the high edge
    assert selection["chosen"] == {"lr": tried[-1]}
    assert selection["on_edge"] == {"lr": "high"}
    assert "still on the edge of the grid in lr (high)" in tuning.selection_words(selection)
    assert len(fake.specs) == CONFIGS["smoke"] + 1  # widened once, not again


def test_widening_that_brackets_the_optimum_leaves_it_off_the_edge(monkeypatch, tmp_path, ws_base):
    lrs = sorted(p["lr"] for p in grid(ws_base, CONFIGS["smoke"]))
    lr_star = lrs[-1] * 10 ** (0.4 * STEP)  # above the grid, nearer its top point than the widened one
    selection = fake_select(monkeypatch, tmp_path, ws_base, FakeTrain({"lr": lr_star}))
    assert selection["widened"] is True and len(selection["points"]) == CONFIGS["smoke"] + 1
    assert selection["chosen"] == {"lr": lrs[-1]} and selection["on_edge"] == {}


def test_an_optimum_far_below_the_grid_widens_it_at_the_low_edge(monkeypatch, tmp_path, ws_base):
    lrs = [p["lr"] for p in grid(ws_base, CONFIGS["smoke"])]
    selection = fake_select(monkeypatch, tmp_path, ws_base, FakeTrain({"lr": 1e-6}))
    assert selection["widened"] and selection["on_edge"] == {"lr": "low"}
    assert selection["chosen"]["lr"] == pytest.approx(min(lrs) / 10 ** STEP, rel=1e-5)


def test_a_diverged_configuration_scores_worst(monkeypatch, tmp_path, ws_base):
    """The planted optimum sits on a grid point that diverges: it scores -inf (its recorded value
    would have been the best) and the next best point is chosen."""
    lrs = sorted(p["lr"] for p in grid(ws_base, CONFIGS["smoke"]))
    lr_star = lrs[1]
    fake = FakeTrain({"lr": lr_star}, diverge=lambda h: h["lr"] == lr_star)
    selection = fake_select(monkeypatch, tmp_path, ws_base, fake)
    bad = next(p for p in selection["points"] if p["lr"] == lr_star)
    assert bad["status"] == "diverged" and bad["score"] is None  # -inf in memory, null in the JSON
    assert selection["chosen"]["lr"] != lr_star
    assert selection["chosen"]["lr"] == nearest([v for v in lrs if v != lr_star], lr_star)
    assert not selection["all_diverged"]


def test_a_diverged_configuration_scores_worst_when_lower_is_better(tmp_path):
    """An MLP's tuning metric is a loss: a diverged run scores +inf, a non-finite value too."""
    base = base_of("kfac-fewer-updates-than-sgd", "SGD momentum")
    assert workload_for("mlp").tuning_metric == ("loss", False)
    fake = FakeTrain({"lr": 0.01}, diverge=lambda h: h["lr"] == 0.5)
    ok, diverged = tuning_spec(base, {"lr": 0.01}), tuning_spec(base, {"lr": 0.5})
    fake(ok, tmp_path / "ok", progress=False)
    fake(diverged, tmp_path / "diverged", progress=False)
    assert tuning.score(tmp_path / "ok", "loss", False) == ("ok", 0.0)
    assert tuning.score(tmp_path / "diverged", "loss", False) == ("diverged", math.inf)
    curve, meta = results.read_run(tmp_path / "ok")
    results.write_run(tmp_path / "nan", curve.assign(value=np.nan), meta)
    assert tuning.score(tmp_path / "nan", "loss", False) == ("ok", math.inf)


def test_every_configuration_diverged_is_said(monkeypatch, tmp_path, ws_base):
    selection = fake_select(monkeypatch, tmp_path, ws_base, FakeTrain({"lr": 0.05}, diverge=lambda h: True))
    assert selection["all_diverged"] and all(p["score"] is None for p in selection["points"])  # null in strict JSON
    assert "every configuration diverged" in tuning.selection_words(selection)


# --------------------------------------------------------------------------- the same grid for every method
def test_a_two_knob_method_gets_as_many_configurations_as_a_one_knob_method(ws_base):
    nrws = base_of("nrws-final-ll", "NRWS")
    assert knobs(nrws) == ("lr", "damping") and knobs(ws_base) == ("lr",)
    points = grid(nrws, CONFIGS["smoke"])
    assert len(points) == len(grid(ws_base, CONFIGS["smoke"])) == CONFIGS["smoke"]
    lrs, dampings = sorted({p["lr"] for p in points}), sorted({p["damping"] for p in points})
    assert len(lrs) == len(dampings) == 2  # a 2x2 grid, each axis around the claim's value
    assert {(p["lr"], p["damping"]) for p in points} == {(a, b) for a in lrs for b in dampings}
    assert math.sqrt(lrs[0] * lrs[1]) == pytest.approx(nrws.hparams["lr"], rel=1e-5)
    assert math.sqrt(dampings[0] * dampings[1]) == pytest.approx(nrws.hparams["damping"], rel=1e-5)
    if "paper" in CONFIGS:  # 9 configurations: 9 step sizes, or 3 x 3
        assert len(grid(replace(nrws, profile="paper"), CONFIGS["paper"])) == len(grid(ws_base, CONFIGS["paper"])) \
            == CONFIGS["paper"]


def test_a_two_knob_method_chooses_both_knobs(monkeypatch, tmp_path):
    nrws = base_of("nrws-final-ll", "NRWS")
    points = grid(nrws, CONFIGS["smoke"])
    lrs, dampings = sorted({p["lr"] for p in points}), sorted({p["damping"] for p in points})
    optimum = {"lr": lrs[1], "damping": dampings[0]}
    selection = fake_select(monkeypatch, tmp_path, nrws, FakeTrain(optimum))
    assert selection["knobs"] == ["lr", "damping"] and selection["chosen"] == optimum
    evaluation = RunSpec.from_dict(selection["eval_spec"])
    assert evaluation == replace(nrws, hparams={**nrws.hparams, **optimum})


def test_widening_keeps_a_two_knob_budget_within_a_one_knob_budget(monkeypatch, tmp_path):
    nrws = base_of("nrws-final-ll", "NRWS")
    optimum = {"lr": nrws.hparams["lr"], "damping": nrws.hparams["damping"]}  # the grid's centre
    selection = fake_select(monkeypatch, tmp_path, nrws, FakeTrain(optimum))
    assert len(selection["points"]) <= CONFIGS["smoke"] + 1


def test_adaptive_kfac_tunes_only_its_damping(monkeypatch, tmp_path):
    kfac = base_of("kfac-fewer-updates-than-sgd", "K-FAC")
    assert kfac.hparams["adaptive"] is True and knobs(kfac) == ("damping",)
    assert knobs(replace(kfac, hparams={**kfac.hparams, "adaptive": False})) == ("lr", "damping")
    points = grid(kfac, CONFIGS["smoke"])
    assert len(points) == CONFIGS["smoke"] and all(set(p) == {"damping"} for p in points)
    dampings = sorted(p["damping"] for p in points)
    fake = FakeTrain({"damping": 40.0})
    selection = fake_select(monkeypatch, tmp_path, kfac, fake)
    assert selection["metric"] == "loss" and selection["higher_is_better"] is False
    assert selection["chosen"] == {"damping": nearest(dampings, 40.0)}
    assert {s.hparams["lr"] for s in fake.specs} == {kfac.hparams["lr"]}  # the step size is the method's own
    assert RunSpec.from_dict(selection["eval_spec"]) == replace(kfac, hparams={**kfac.hparams, **selection["chosen"]})


# --------------------------------------------------------------------------- the tuning runs
def test_tuning_runs_use_the_tuning_seed_and_a_validation_split_carved_from_training(monkeypatch, tmp_path, ws_base):
    fake = FakeTrain({"lr": 0.05})
    selection = fake_select(monkeypatch, tmp_path, ws_base, fake)
    assert len(fake.specs) == len(selection["points"]) == CONFIGS["smoke"]
    expected_carve = min(int(tuning.VALID_FRACTION * ws_base.train_subset), ws_base.eval_subset)
    for spec in fake.specs:
        assert spec.seeds == (TUNING_SEED,) and TUNING_SEED not in ws_base.seeds
        assert spec.carve_valid == expected_carve == selection["carve_valid"]
        assert spec.eval_splits == ("valid",) and spec.final_eval_splits == ("valid",)
        # the claim's budget: data, model, epochs and batch are the base run's
        same = ("dataset", "model", "method", "epochs", "batch_size", "train_subset", "transform", "labels", "holdout")
        assert {f: getattr(spec, f) for f in same} == {f: getattr(ws_base, f) for f in same}
        assert {k: v for k, v in spec.hparams.items() if k != "lr"} == \
            {k: v for k, v in ws_base.hparams.items() if k != "lr"}
        assert (tuning_run_dir(tmp_path, "smoke", spec.run_id) / "run.json").is_file()
    assert selection["seed"] == TUNING_SEED
    assert [p["run_id"] for p in selection["points"]] == [s.run_id for s in fake.specs]


def test_the_tuning_seed_is_disjoint_from_every_evaluation_seed():
    for profile in PROFILES:
        for plan in plan_all(profile):
            for label, base in plan.runs.items():
                assert max(base.seeds) < TUNING_SEED, (profile, plan.claim.id, label)
    with pytest.raises(ConfigError, match="seeds must be <"):
        base = base_of("rws-beats-ws", "WS")
        tuning_spec(replace(base, seeds=(0, TUNING_SEED)), {"lr": 0.1})


def test_the_evaluation_spec_is_the_base_with_only_the_chosen_knobs_changed(monkeypatch, tmp_path, ws_base):
    selection = fake_select(monkeypatch, tmp_path, ws_base, FakeTrain({"lr": 0.2}))
    evaluation = tuning.tuned_spec(selection)
    assert evaluation == replace(ws_base, hparams={**ws_base.hparams, **selection["chosen"]})
    changed = {k for k, v in evaluation.to_dict().items() if ws_base.to_dict()[k] != v}
    assert changed == {"hparams"}
    assert {k for k in ws_base.hparams if evaluation.hparams[k] != ws_base.hparams[k]} == {"lr"}
    assert evaluation.seeds == ws_base.seeds and evaluation.carve_valid is None
    assert selection["eval_run_id"] == evaluation.run_id and selection["base_run_id"] == ws_base.run_id
    assert tuning.read_selection(tmp_path, ws_base) == json.loads(json.dumps(selection))
    assert tuning.evaluation_spec(tmp_path, ws_base, "rws-beats-ws", "WS") == evaluation


def test_an_untuned_label_names_the_command_that_tunes_it(tmp_path, ws_base):
    with pytest.raises(ConfigError, match="not tuned yet") as err:
        tuning.evaluation_spec(tmp_path, ws_base, "rws-beats-ws", "WS")
    assert "python -m bench select --spec" in str(err.value)


# --------------------------------------------------------------------------- one real selection
def test_a_real_tiny_selection_and_its_cache(monkeypatch, tmp_path, ws_base, data_dir):
    """The smoke WS base, tuned for real: a selection with CONFIGS (+1 if widened) finite scores;
    a second call trains nothing (its point runs are cached) and chooses the same."""
    selection = select(ws_base, tmp_path)
    path = tuning_selection(tmp_path, "smoke", ws_base.run_id)
    assert path.is_file()
    assert len(selection["points"]) == CONFIGS["smoke"] + int(selection["widened"])
    assert all(p["status"] == "ok" and np.isfinite(p["score"]) for p in selection["points"]), selection["points"]
    assert all(p["score"] < 0 for p in selection["points"])  # log-likelihoods in nats
    runs = [tuning_run_dir(tmp_path, "smoke", p["run_id"]) for p in selection["points"]]
    for run in runs:
        curve, meta = results.read_run(run)
        assert meta["spec"]["seeds"] == [TUNING_SEED] and set(curve.seed) == {TUNING_SEED}
        assert set(curve[curve.split != "train"].split) == {"valid"}
    mtimes = [(run / "run.json").stat().st_mtime_ns for run in runs]

    def no_training(*args, **kwargs):
        raise AssertionError("a cached tuning point was trained again")

    monkeypatch.setattr(train, "run", no_training)
    again = select(ws_base, tmp_path)
    assert [(run / "run.json").stat().st_mtime_ns for run in runs] == mtimes
    assert again["points"] == json.loads(json.dumps(selection["points"]))
    assert again["chosen"] == selection["chosen"] and again["eval_run_id"] == selection["eval_run_id"]


# --------------------------------------------------------------------------- the carved split
@pytest.mark.parametrize("train_subset, carve", [(300, 40), (None, 100)])
def test_carve_valid_takes_the_last_rows_of_the_training_subset(data_dir, train_subset, carve):
    spec = RunSpec(profile="adhoc", dataset="uci_dna", model={"family": "helmholtz", "layers": [180, 10]},
                   method="rws", hparams={}, seeds=(0,), epochs=1, batch_size=50, train_subset=train_subset,
                   carve_valid=carve)
    split = train.prepare_data(spec, torch.device("cpu"))
    raw = data.load("uci_dna").x
    n = train_subset or len(raw["train"])
    x_train, x_valid = split["train"][0].numpy(), split["valid"][0].numpy()
    assert x_valid.shape == (carve, raw["train"].shape[1])
    np.testing.assert_array_equal(x_valid, raw["train"][:n][-carve:])
    assert x_train.shape[0] == n - carve
    np.testing.assert_array_equal(x_train, raw["train"][:n - carve])
    np.testing.assert_array_equal(split["test"][0].numpy(), raw["test"])  # other splits untouched


def test_a_training_subset_larger_than_the_data_carves_from_the_data():
    """The smoke profile's train_subset 300 on a 5-row dataset: the carve and the batch come from
    the 5 rows (1 valid, 4 train), not from 300 (which left no training example)."""
    spec = RunSpec(profile="smoke", dataset="dataset_free", model={"family": "qhbm"}, method="vqt", hparams={"lr": 0.1},
                   seeds=(0,), epochs=1, batch_size=50, train_subset=300, eval_subset=50)
    tuned = tuning_spec(spec, {"lr": 0.1})
    assert (tuned.carve_valid, tuned.batch_size) == (1, 4)


def test_a_method_with_no_knob_is_evaluated_at_its_base_configuration_without_a_tuning_run(monkeypatch, tmp_path):
    base = base_of("mob-more-components-help", "EM K=10")
    fake = FakeTrain({})
    selection = fake_select(monkeypatch, tmp_path, base, fake)
    assert fake.specs == [] and selection["points"] == [] and selection["chosen"] == {}
    assert not selection["all_diverged"] and tuning.tuned_spec(selection) == base
    assert tuning.selection_words(selection) == "nothing to tune (the method declares no knob)"
