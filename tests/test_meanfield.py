"""Mean-field SBN inference and learning (bench/meanfield.py, methods/meanfield_sbn.py) against exact
enumeration on tiny networks, in float64."""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.engine.methods import get_method
from bench.estimators import meanfield as mf
from bench.estimators.importance import importance_log_likelihood
from bench.estimators.sbn import exact_log_likelihood
from bench.models.helmholtz import HelmholtzMachine
from bench.workloads import workload_for


def random_sbn(layers: list[int], seed: int, scale: float = 1.0) -> HelmholtzMachine:
    torch.manual_seed(seed)
    model = HelmholtzMachine(layers, seeds=[seed], init="glorot_normal", bias=0.0).double()
    with torch.no_grad():
        for p in model.generative.parameters():
            p.add_(scale * torch.randn_like(p))
        model.prior.bias.add_(scale * torch.randn_like(model.prior.bias))
    return model


def all_images(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64).unsqueeze(0)


@pytest.mark.parametrize("seed", range(5))
def test_bound_is_below_exact_and_above_the_xi0_bound(seed):
    """MF-1: on random SBNs 6-4-3, for every one of the 64 images, the xi-bound at the E-step's
    (mu, xi) is <= the exact log p(x) (enumeration over 2^7 hidden states), and >= the bound with
    xi = 0 at the same mu (Jensen's log E[1 + e^z], the simpler factorised bound). Tightness: the
    mean gap to log p(x) is well under a nat."""
    model, x = random_sbn([6, 4, 3], seed), all_images(6)
    exact = exact_log_likelihood(model, x)
    state = mf.infer(model, x, 100)
    bound = mf.bound(model, x, state)
    naive = mf.bound(model, x, mf.MeanField(state.mu, [torch.zeros_like(xi) for xi in state.xi]))
    assert torch.all(bound <= exact + 1e-9)
    assert torch.all(naive <= bound + 1e-9)
    assert (naive < bound - 1e-3).float().mean() > 0.5, "optimising xi should usually tighten the bound"
    assert (exact - bound).mean() < 0.7, (exact - bound).mean()


def test_sweeps_reach_a_stationary_point_of_the_bound():
    """The closed-form mean-field update (bench.estimators.meanfield.update) against autograd of ``bound``:
    at its fixed point, dL/dmu = 0 and dL/dxi = 0 wherever xi is interior."""
    model, x = random_sbn([6, 4, 3], 7), all_images(6)
    state = mf.infer(model, x, 300)
    mu = [m.clone().requires_grad_(True) for m in state.mu]
    xi = [v.clone().requires_grad_(True) for v in state.xi]
    grads = torch.autograd.grad(mf.bound(model, x, mf.MeanField(mu, xi)).sum(), mu + xi)
    for g in grads[: len(mu)]:
        assert g.abs().max() < 1e-5, g.abs().max()
    for g, v in zip(grads[len(mu):], state.xi):
        interior = (v > 1e-6) & (v < 1 - 1e-6)
        assert g[interior].abs().max() < 1e-5, g[interior].abs().max()


def test_one_sweep_from_the_start_is_not_stationary():
    """The stationarity check above can fail: after a single sweep the gradient is far from 0."""
    model, x = random_sbn([6, 4, 3], 7), all_images(6)
    state = mf.infer(model, x, 1)
    mu = [m.clone().requires_grad_(True) for m in state.mu]
    grads = torch.autograd.grad(mf.bound(model, x, mf.MeanField(mu, state.xi)).sum(), mu)
    assert max(g.abs().max() for g in grads) > 1e-2


def test_mean_field_proposal_is_estimate_converges_to_exact():
    model, x = random_sbn([6, 4, 3], 3), all_images(6)[:, [5, 22, 63]]
    exact = exact_log_likelihood(model, x)[0]
    state = mf.infer(model, x, 100)
    torch.manual_seed(0)
    def log_weights(xs: torch.Tensor, k: int) -> torch.Tensor:
        return mf.sample_log_weights(model, xs, state.mu, k)

    reps = torch.stack([importance_log_likelihood(log_weights, x, 2000)[0] for _ in range(20)])
    mean, se = reps.mean(0), reps.std(0) / 20**0.5
    assert torch.all((mean - exact).abs() < 4 * se + 1e-3), (mean, exact, se)


def test_mean_field_learning_raises_the_exact_likelihood():
    """Variational EM on data drawn from a random 'teacher' SBN raises the exact log-likelihood of a
    fresh 'student' by more than 1 nat per example (the M-step ascends the bound in theta)."""
    teacher = random_sbn([6, 3], 11, scale=2.0)
    torch.manual_seed(12)
    x = teacher.sample_p(200)[0]
    student = random_sbn([6, 3], 13, scale=0.1)
    before = exact_log_likelihood(student, x).mean()
    cls = get_method("meanfield_sbn")
    method = cls(student, **{**cls.defaults, "lr": 0.05})
    for epoch in range(30):
        for batch in x.split(20, dim=1):
            method.step(batch)
    after = exact_log_likelihood(student, x).mean()
    assert after > before + 1.0, (before, after)
    with torch.no_grad():
        evaluated = workload_for("helmholtz").evaluate(student, method, x, 500)
    assert abs(evaluated["ll"].item() - after.item()) < 0.05
    assert evaluated["mf_bound"].item() <= after.item()
