"""Keskar et al.'s 1-D interpolation between two runs' final parameters (bench/engine/interpolation.py;
ICLR 2017, Sec. 2.2.1): a model whose loss is quadratic in its parameters gives the parabola
computed in closed form (float64); alpha = 0 and 1 give back each run's own recorded final numbers,
so what a run keeps (keep_params) is what it evaluated; a run that does not ask keeps no parameter
file and its id (the committed tuning selections still name every other quick run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_toy

from bench.claims.catalog import plan_all
from bench.core.errors import ConfigError
from bench.core.spec import RunSpec
from bench.engine import results, train
from bench.engine.interpolation import ALPHAS, COLUMNS, interpolate, mix, run_interpolation
from bench.engine.methods import get_method, resolve_hparams
from bench.models.mlp import MLP
from bench.workloads import workload_for


def test_the_grid_is_keskars():
    assert len(ALPHAS) == 25 and ALPHAS[0] == -1.0 and ALPHAS[-1] == 2.0
    assert ALPHAS[8] == pytest.approx(0.0) and ALPHAS[16] == pytest.approx(1.0)


def test_a_quadratic_loss_gives_the_closed_form_parabola():
    """A one-layer linear Gaussian autoencoder: z = W x + b, loss = mean_n 1/2 ||z_n - x_n||^2 is
    quadratic in (W, b), so along the line its value is c0 + c1 alpha + c2 alpha^2 with
    c0 = 1/2 mean |r_a|^2, c1 = mean r_a . d, c2 = 1/2 mean |d|^2 (r = z - x, d = r_b - r_a)."""
    seeds = [0, 1]
    model = MLP([4, 4], seeds, loss="gaussian", init="kaiming").double()
    g = torch.Generator().manual_seed(3)
    a = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in model.state_dict().items()}
    b = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in model.state_dict().items()}
    x = torch.rand(30, 4, generator=g, dtype=torch.float64)
    workload = workload_for("mlp")
    table = interpolate(model, lambda m, xs, y: workload.metrics(m, None, xs, 1, y), a, b, {"test": (x, None)},
                        seeds, ALPHAS)
    xn = x.numpy()
    for r, seed in enumerate(seeds):
        res_a, res_b = (xn @ s["weights.0"][r].numpy().T + s["biases.0"][r].numpy() - xn for s in (a, b))
        d = res_b - res_a
        c0, c1, c2 = 0.5 * (res_a**2).sum(1).mean(), (res_a * d).sum(1).mean(), 0.5 * (d**2).sum(1).mean()
        got = table[(table.seed == seed) & (table.metric == "loss")].sort_values("alpha")
        np.testing.assert_allclose(got.value, [c0 + c1 * t + c2 * t * t for t in got.alpha], rtol=1e-12)


def test_mix_refuses_states_of_two_models():
    with pytest.raises(ConfigError, match="differ in names or shapes"):
        mix({"w": torch.zeros(2, 3)}, {"w": torch.zeros(2, 4)}, 0.5)


def _spec(batch_size: int, keep_params: bool = True) -> RunSpec:
    return RunSpec(profile="adhoc", dataset="fashion_mnist", transform="unit_interval", labels=True,
                   model={"family": "mlp", "layers": [784, 16, 10], "activations": "relu", "loss": "categorical",
                          "init": "kaiming"},
                   method="adam", hparams=resolve_hparams(get_method("adam"), {"lr": 0.003}), seeds=(0, 1),
                   epochs=1, batch_size=batch_size, train_subset=200, eval_every=1, eval_k=1, eval_subset=100,
                   eval_splits=("train", "test"), final_eval_k=1, final_eval_splits=("test", "train"),
                   keep_params=keep_params)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("runs")
    specs = {"small": _spec(20), "large": _spec(100)}
    for name, spec in specs.items():
        train.run(spec, out / name, device="cpu", progress=False)
    return specs, out


def test_alpha_0_and_1_give_each_runs_recorded_final_numbers(two_runs):
    specs, out = two_runs
    table = run_interpolation(specs["small"], out / "small", specs["large"], out / "large", alphas=(0.0, 0.5, 1.0))
    assert set(table.split) == {"train", "test"} and set(table.seed) == {0, 1}
    for alpha, name in ((0.0, "small"), (1.0, "large")):
        curve, _ = results.read_run(out / name)
        for split in ("train", "test"):
            for metric in ("loss", "error"):
                rows = curve[(curve.split == split) & (curve.metric == metric)]
                recorded = rows[rows.step == rows.step.max()].groupby("seed").value.last()
                got = table[(table.alpha == alpha) & (table.split == split) & (table.metric == metric)]
                np.testing.assert_allclose(got.set_index("seed").value.sort_index(), recorded.sort_index(),
                                           rtol=1e-6, err_msg=f"{name} {split} {metric}")
    # the midpoint is neither end: the two runs' parameters differ
    mid = table[(table.alpha == 0.5) & (table.metric == "loss")].value.to_numpy()
    ends = table[(table.alpha == 0.0) & (table.metric == "loss")].value.to_numpy()
    assert not np.allclose(mid, ends)


def test_the_parameter_file_is_what_the_run_holds(two_runs):
    specs, out = two_runs
    seeds, state = results.read_params(out / "small")
    assert seeds == [0, 1] and set(state) == {k for k, _ in MLP([784, 16, 10], [0, 1]).state_dict().items()}
    assert all(v.shape[0] == 2 and v.dtype == torch.float32 for v in state.values())


def test_a_run_that_does_not_ask_writes_no_parameters_and_keeps_its_id(tmp_path, data_dir):
    spec = _spec(100, keep_params=False)
    assert "keep_params" not in spec.to_dict()
    assert spec.run_id != _spec(100).run_id
    train.run(spec, tmp_path, device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.parquet", "run.json"]
    with pytest.raises(results.CorruptRun, match="keep_params"):
        results.read_params(tmp_path)


def test_only_the_interpolated_claims_keep_parameters(data_dir):
    keeping = {p.claim.id for p in plan_all("quick") for s in p.runs.values() if s.keep_params}
    assert keeping == {"large-batch-generalization-gap", "large-batch-sharper"}


MLP_CLAIM = {
    "id": "toy-interpolation", "statement": "a toy claim", "dataset": "fashion_mnist", "transform": "unit_interval",
    "labels": True, "model": {"family": "mlp", "layers": [784, 10], "loss": "categorical"},
    "methods": {"SB": {"method": "adam"}, "LB": {"method": "adam"}},
    "metric": {"name": "error", "higher_is_better": False},
    "verdict": {"rule": "better", "pairs": [["SB", "LB"]]},
    "figure": {"interpolation": ["SB", "LB"]},
    "profiles": {"quick": {"seeds": [0], "epochs": 1, "batch_size": 50, "keep_params": True}},
}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["profiles"]["quick"].pop("keep_params"), "profiles.quick.keep_params.*set keep_params: true"),
    (lambda c: c["figure"].update(interpolation=["SB", "XL"]), "figure.interpolation.1.*not one of the claim's labels"),
])
def test_a_bad_interpolation_is_refused_when_claims_load(tmp_path, data_dir, change, message):
    assert load_toy(tmp_path / "ok", MLP_CLAIM)["toy-interpolation"].interpolation == ["SB", "LB"]
    with pytest.raises(ConfigError, match=message):
        load_toy(tmp_path / "bad", MLP_CLAIM, change)


def test_the_figure_clips_each_band_to_its_metric_range(tmp_path, monkeypatch):
    """At 2 seeds the 95% t band of accuracies 98% and 100% reaches past 100%, and that of losses
    0.01 and 0.5 nats below 0: the figure clips each band to its metric's range."""
    from bench.report import figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    values = {"loss": (0.01, 0.5), "error": (0.0, 0.02)}
    table = pd.DataFrame([(seed, alpha, split, metric, pair[seed]) for seed in (0, 1) for alpha in (0.0, 0.5, 1.0)
                          for split in ("train", "test") for metric, pair in values.items()], columns=COLUMNS)
    figures.interpolation_figure(tmp_path / "f.png", table, "toy", ["small", "large"], "smoke")
    loss_ax, accuracy_ax = drawn[0].axes
    bands = {name: np.concatenate([p.vertices[:, 1] for c in ax.collections for p in c.get_paths()])
             for name, ax in (("loss", loss_ax), ("accuracy", accuracy_ax))}
    assert bands["loss"].min() == 0.0 and bands["accuracy"].max() == 100.0 and bands["accuracy"].min() < 98.0
    assert "clipped to the metric's range" in drawn[0].get_suptitle()
