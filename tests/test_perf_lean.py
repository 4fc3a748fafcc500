"""The lean reference steps of bench/perf/lean.py are the project's algorithms: from identical
parameters and identical noise (torch's global generator, reseeded before each step), a lean step
and a project step move every parameter the same way, in float64."""

from __future__ import annotations

import pytest
import torch

from bench.engine.methods import get_method
from bench.models.helmholtz import HelmholtzMachine
from bench.models.vae import VAE
from bench.perf.lean import LeanIWAE, LeanRWS, helmholtz_pairs, to_lean_helmholtz, to_lean_vae, vae_pairs


def _binary(b: int, d: int, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, b, d, generator=g, dtype=torch.float64) < 0.3).double()


def _assert_same(pairs, step: int) -> None:
    for i, (theirs, mine) in enumerate(pairs):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-11,
                                   msg=lambda m, i=i: f"parameter {i} after step {step}: {m}")


def _step_together(project, lean, x: torch.Tensor, pairs, steps: int, seed: int) -> None:
    """`steps` steps of both from the same reseeded noise; the parameters agree after each and moved."""
    before = [theirs.detach().clone() for theirs, _ in pairs()]
    for step in range(steps):
        torch.manual_seed(seed + step)
        project.step(x)
        torch.manual_seed(seed + step)
        lean.step(x[0])
        _assert_same(pairs(), step)
    assert all(not torch.equal(theirs, b) for (theirs, _), b in zip(pairs(), before))


def test_lean_rws_matches_project_rws_including_sleep_steps():
    torch.manual_seed(0)
    model = HelmholtzMachine([12, 6, 4, 3], seeds=[0], init="glorot_normal", bias=0.0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    lean_model = to_lean_helmholtz(model)
    project = get_method("rws")(model, k=4, lr=0.1, optimizer="momentum_ema", q_updates="wake+sleep",
                                sleep_every=2, q_baseline=False)
    lean = LeanRWS(lean_model, k=4, lr=0.1, sleep_every=2)
    # steps 2 and 4 add a sleep-q update
    _step_together(project, lean, _binary(5, 12), lambda: helmholtz_pairs(model, lean_model), steps=4, seed=100)


@pytest.mark.parametrize("method, hparams, bound", [
    ("iwae", {"k": 5}, "iwae"),
    ("vae", {"k": 1, "kl": "sampled", "beta1": 0.99, "eps": 1e-4}, "sampled"),
    ("vae", {"k": 3, "kl": "analytic"}, "analytic"),
])
def test_lean_variational_steps_match_the_project(method, hparams, bound):
    model = VAE([12, 3], [[6, 5]], seeds=[0]).double()
    lean_model = to_lean_vae(model)
    cls = get_method(method)
    hp = {**cls.defaults, **hparams}
    project = cls(model, **hp)
    lean = LeanIWAE(lean_model, k=hp["k"], lr=hp["lr"], beta1=hp["beta1"], eps=hp["eps"], bound=bound)
    _step_together(project, lean, _binary(6, 12), lambda: vae_pairs(model, lean_model), steps=3, seed=200)
