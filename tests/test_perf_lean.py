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


def _moved(pairs, before: list[torch.Tensor]) -> bool:
    return all(not torch.equal(theirs, b) for (theirs, _), b in zip(pairs, before))


def test_lean_rws_matches_project_rws_including_sleep_steps():
    torch.manual_seed(0)
    model = HelmholtzMachine([12, 6, 4, 3], seeds=[0], init="glorot_normal", bias=0.0).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    lean_model = to_lean_helmholtz(model)
    before = [t.detach().clone() for t, _ in helmholtz_pairs(model, lean_model)]
    project = get_method("rws")(model, k=4, lr=0.1, optimizer="momentum_ema", q_updates="wake+sleep",
                                sleep_every=2, q_baseline=False)
    lean = LeanRWS(lean_model, k=4, lr=0.1, sleep_every=2)
    x = _binary(5, 12)
    for step in range(4):  # steps 2 and 4 add a sleep-q update
        torch.manual_seed(100 + step)
        project.step(x)
        torch.manual_seed(100 + step)
        lean.step(x[0])
        _assert_same(helmholtz_pairs(model, lean_model), step)
    assert _moved(helmholtz_pairs(model, lean_model), before)


@pytest.mark.parametrize("method, hparams, bound", [
    ("iwae", {"k": 5}, "iwae"),
    ("vae", {"k": 1, "kl": "sampled", "beta1": 0.99, "eps": 1e-4}, "sampled"),
    ("vae", {"k": 3, "kl": "analytic"}, "analytic"),
])
def test_lean_variational_steps_match_the_project(method, hparams, bound):
    model = VAE([12, 3], [[6, 5]], seeds=[0]).double()
    lean_model = to_lean_vae(model)
    before = [t.detach().clone() for t, _ in vae_pairs(model, lean_model)]
    cls = get_method(method)
    hp = {**cls.defaults, **hparams}
    project = cls(model, **hp)
    lean = LeanIWAE(lean_model, k=hp["k"], lr=hp["lr"], beta1=hp["beta1"], eps=hp["eps"], bound=bound)
    x = _binary(6, 12)
    for step in range(3):
        torch.manual_seed(200 + step)
        project.step(x)
        torch.manual_seed(200 + step)
        lean.step(x[0])
        _assert_same(vae_pairs(model, lean_model), step)
    assert _moved(vae_pairs(model, lean_model), before)
