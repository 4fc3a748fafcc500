"""The beta sweep of the QHBM family (bench/models/qhbm.py, QHBM.advance): the target switches at the
stated steps (against QuTiP's Gibbs states), a cold start returns to the seed's initialisation and a
warm one keeps psi, Adam's state restarts at a switch, the steps-to-target bookkeeping, and existing
runs keep their ids."""

from __future__ import annotations

import pytest
import qutip
import torch
from test_qhbm import WORKLOAD, dense, qutip_tfim

from bench.claims.catalog import expand, get_claim
from bench.engine.methods import get_method
from bench.models import build_model
from bench.models.qhbm import QHBM

BETAS = [0.5, 1.25, 2.25]
STEPS = 3


def sweep(warm_start: bool, seeds: list[int], tolerance: float = 1e-2) -> QHBM:
    return build_model({"family": "qhbm", "qubits": 3, "circuit_layers": 2, "field": 0.8, "betas": BETAS,
                        "steps_per_beta": STEPS, "warm_start": warm_start, "target_tolerance": tolerance}, seeds)


def test_the_target_switches_at_the_stated_steps_to_qutips_gibbs_state():
    """Before outer step t (t = 0, 1, ...) the target is betas[min(t // 3, 2)], and the workload's
    relative entropy is QuTiP's D(rho || exp(-beta H) / Z) at that beta."""
    model = sweep(True, [0, 1])
    h = qutip_tfim(3, 0.8)
    for t in range(3 * STEPS + 2):
        switched = model.advance()
        beta = BETAS[min(t // STEPS, len(BETAS) - 1)]
        assert model.beta == beta
        assert switched == (t in (STEPS, 2 * STEPS))
        with torch.no_grad():
            model.params += 0.01  # move, so that each stage reads a new rho
        gibbs = (-beta * h).expm()
        gibbs = gibbs / gibbs.tr()
        d = WORKLOAD.metrics(model, None, torch.zeros(2, 1, 1), 1, None)["relative_entropy"]
        for r in range(2):
            assert abs(float(d[r]) - qutip.entropy_relative(dense(model, model.params[r]), gibbs)) < 1e-9


@pytest.mark.parametrize("warm_start", [True, False])
def test_cold_start_returns_to_the_seeds_initialisation_and_warm_keeps_psi(warm_start):
    model, fresh = sweep(warm_start, [3, 1]), sweep(warm_start, [1])
    for _ in range(STEPS):
        model.advance()
    with torch.no_grad():
        model.params.normal_()
    trained = model.params.detach().clone()
    assert model.advance()  # the switch to betas[1]
    if warm_start:
        assert torch.equal(model.params, trained)
    else:
        assert torch.equal(model.params[1], fresh.params[0])  # seed 1 as a freshly built model draws it
        assert not torch.equal(model.params[0], model.params[1])


def test_vqt_restarts_adams_moments_at_a_switch():
    model = sweep(True, [0])
    method = get_method("vqt")(model, optimizer="adam", lr=0.01)
    x = torch.zeros(1, 1, 1)
    for _ in range(STEPS):
        method.step(x)
    assert method.opt.state[model.params]["step"] == STEPS
    method.step(x)
    assert method.opt.state[model.params]["step"] == 1


@pytest.mark.parametrize("tolerance, expected", [(1e9, 0.0), (-1.0, 2.0 * STEPS)])
def test_steps_to_target_counts_the_stages_after_the_first(tolerance, expected):
    """A target every psi meets counts 0 steps per stage; one none meets counts each stage's budget."""
    model = sweep(False, [0, 2], tolerance)
    method = get_method("qngd")(model)
    for _ in range(3 * STEPS):
        method.step(torch.zeros(2, 1, 1))
    out = WORKLOAD.metrics(model, method, torch.zeros(2, 1, 1), 1, None)
    assert out["sweep_steps_to_target"].tolist() == [expected, expected]
    assert "sweep_steps_to_target" in WORKLOAD.exact_metrics({"betas": BETAS})


def test_steps_to_target_is_the_first_step_below_the_tolerance():
    """With D read before each step, the count of a stage is the number of steps before the first D <= tol."""
    model = sweep(True, [0], tolerance=0.0)
    for _ in range(STEPS + 1):
        model.advance()  # the second stage's step 0 read D > 0
    model.target_tolerance = 1e9
    model.advance()  # its step 1 reads D <= tol
    model.advance()
    assert model.steps_to_target[1].tolist() == [1.0]


def test_single_beta_runs_keep_their_ids_and_bad_sweeps_are_refused():
    """The committed quick tuning record results/quick/tuning/6afb2ffb8279.json names QNGD's base run."""
    plan = expand(get_claim("qngd-fewer-iterations-than-vqt"), "quick")
    assert plan.runs["QNGD"].run_id == "6afb2ffb8279"
    model = build_model({"family": "qhbm", "qubits": 3, "circuit_layers": 1, "field": 1.0, "beta": 1.0}, [0])
    assert not model.advance() and model.beta == 1.0
    for bad in ({"beta": 1.0, "betas": BETAS, "steps_per_beta": 2}, {"betas": BETAS}, {"betas": [1.0], "steps_per_beta": 2},
                {"betas": [1.0, -1.0], "steps_per_beta": 2}):
        with pytest.raises(ValueError):
            build_model({"family": "qhbm", "qubits": 3, "circuit_layers": 1, "field": 1.0, **bad}, [0])


def test_a_sweep_is_tuned_on_its_steps_to_target():
    assert WORKLOAD.tuning_score({"betas": BETAS}) == ("sweep_steps_to_target", False)
    assert WORKLOAD.tuning_score({"beta": 1.0}) == ("relative_entropy", False)
