"""Health checks fire on runs built to fail them and stay quiet on healthy ones; the convergence
diagnostic tells a finished curve from one still climbing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench.claims.convergence import THRESHOLD, run_convergence, seed_convergence
from bench.claims.diagnostics import diagnose
from bench.core.spec import RunSpec
from bench.engine import results, train
from bench.models.vae import VAE
from bench.workloads import workload_for
from bench.workloads.health import blow_up, flat_curve, pinned_at_zero, run_checks


def _rows(metric: str, split: str, curves: dict[int, list[float]], eval_k: int = 0) -> pd.DataFrame:
    return pd.DataFrame([{"seed": seed, "step": 10 * i, "split": split, "metric": metric, "eval_k": eval_k,
                          "value": v} for seed, values in curves.items() for i, v in enumerate(values)])


def _vae_rows(model: VAE, x: torch.Tensor) -> pd.DataFrame:
    """The gaussian-latent workload's metrics of `model` on x, as curve rows of two evaluations."""
    with torch.no_grad():
        m = workload_for("vae").metrics(model, None, x, 5, None)
    return pd.concat([_rows(name, "test", {0: [float(v[0])] * 2}, eval_k=5) for name, v in m.items()])


def test_dead_latent_units_fire_on_an_encoder_that_ignores_its_input():
    x = (torch.rand(1, 300, 12, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    model = VAE([12, 4], [[8]], seeds=[0])
    checks = workload_for("vae").health_checks({"layers": [12, 4]})
    with torch.no_grad():
        model.q[0].mean.weight.mul_(50.0)  # posterior means vary strongly with x: every unit active
    healthy = run_checks(checks, _vae_rows(model, x))
    assert [f.check for f in healthy] == ["every latent unit active"]  # saturated count, not degenerate
    with torch.no_grad():
        model.q[0].mean.weight.zero_()  # the posterior mean no longer depends on x
    dead = run_checks(checks, _vae_rows(model, x))
    assert any(f.check == "dead latent units" and f.kind == "degenerate" for f in dead)


@pytest.mark.parametrize("lr, blows_up", [(1e6, True), (0.1, False)])
def test_blow_up_fires_on_a_huge_learning_rate(tmp_path, lr, blows_up):
    """The issue's case: RWS at lr 1e6 on UCI DNA ends near -1e7 nats from about -125."""
    spec = RunSpec(profile="adhoc", dataset="uci_dna", model={"family": "helmholtz", "layers": [180, 10]},
                   method="rws", hparams={"k": 10, "lr": lr, "optimizer": "momentum_ema", "q_updates": "wake+sleep",
                                          "sleep_every": 2, "q_baseline": False},
                   seeds=(0,), epochs=3, batch_size=50, train_subset=300, eval_subset=100, eval_k=10, final_eval_k=10)
    train.run(spec, tmp_path, progress=False)
    curve, _ = results.read_run(tmp_path)
    findings = run_checks(workload_for("helmholtz").health_checks(spec.model), curve)
    assert any(f.check == "blow-up" for f in findings) == blows_up, findings


def test_a_loss_pinned_at_zero_is_saturated_and_a_flat_curve_degenerate():
    pinned = pinned_at_zero("loss")(_rows("loss", "train", {0: [2.0, 0.5, 0.0], 1: [2.0, 0.4, 0.1], 2: [2.3, 1e-2, 2e-4]}))
    assert [(f.seed, f.kind) for f in pinned] == [(0, "saturated"), (2, "saturated")]  # 2e-4 < 0.1% of 2.3
    assert [f.seed for f in flat_curve("ll", "test")(_rows("ll", "test", {3: [-90.0] * 4, 4: [-90, -85, -80, -79]}))] \
        == [3]
    assert blow_up("batch_objective", higher_is_better=False)(_rows("batch_objective", "train", {0: [2.0, 1e4]}))
    assert not blow_up("batch_objective", higher_is_better=False)(_rows("batch_objective", "train", {0: [2.0, 0.1]}))


def test_convergence_tells_a_plateau_from_a_climb():
    steps = np.arange(0, 11.0)
    plateau = -100 + 50 * (1 - np.exp(-steps))  # ~all of the gain in the first updates
    climbing = -100 + 5 * steps  # 4-5 nats per epoch to the end, as the baselines
    assert seed_convergence(steps, plateau, 0).converged
    climb = seed_convergence(steps, climbing, 1)
    assert not climb.converged and climb.rate > THRESHOLD
    assert not seed_convergence(steps[:2], climbing[:2], 2).converged  # two points show nothing
    rows = pd.DataFrame({"seed": [0] * 11 + [1] * 11, "step": list(steps) * 2, "value": [*plateau, *climbing]})
    assert [c.converged for c in run_convergence(rows)] == [True, False]


def test_convergence_is_judged_on_the_fit_a_metric_analyses_when_the_claim_names_it():
    """The amortization share wanders by a few hundredths around its value while the
    log-likelihood of the VAE it analyses has plateaued: by default the share's curve decides (not
    converged); with `converged_on: ll` the fit's curve does (converged)."""
    share = _rows("amortization_share", "test", {0: [0.98, 0.86, 0.84, 0.87, 0.83]})
    ll = _rows("ll", "test", {0: [-201.0, -130.0, -118.0, -114.5, -113.6]})
    curves = pd.concat([share, ll]).assign(label="VAE")
    models = {"VAE": {"family": "vae", "layers": [784, 10]}}
    metric = {"split": "test", "name": "amortization_share", "higher_is_better": True}
    assert diagnose(curves, models, metric).unconverged == {"VAE"}
    assert diagnose(curves, models, {**metric, "converged_on": "ll"}).unconverged == frozenset()
