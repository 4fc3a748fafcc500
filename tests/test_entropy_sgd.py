"""Entropy-SGD (methods/entropy_sgd.py) against its update written out by hand, in float64.

The reference is one replica at a time in numpy, with gradients from autograd on an MLP written here
as a plain function (not the model class) and the SGLD noise drawn from a generator seeded by the
replica's seed in the order the method documents (inner step, then parameter). Also: with L = 1 and
eps = 0 the method is SGD with Nesterov momentum at lr eta (1 - beta1) eta' (1 + m), whatever gamma
(derivation in test_one_noiseless_sgld_step_is_nesterov_sgd), checked against torch.optim.SGD;
replicas are independent; each example of a minibatch is used once per step; a minibatch that
does not split into L sub-batches is refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.core.errors import ConfigError
from bench.models.mlp import MLP
from bench.nn import noise
from methods.entropy_sgd import EntropySGD

LAYERS = [5, 4, 3]
L2 = 0.01
SUB_BATCH = 4
HP = {"lr": 0.7, "momentum": 0.9, "inner_steps": 3, "inner_lr": 0.2, "gamma0": 0.5, "gamma1": 0.1,
      "noise": 0.05, "ema": 0.75}


def _model(seeds: list[int]) -> MLP:
    return MLP(LAYERS, seeds, activations="tanh", loss="categorical", init="kaiming", l2=L2).double()


def _batches(seeds: list[int], steps: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` minibatches of `size` examples per replica, replica r's from a generator of seeds[r]."""
    out = []
    for step in range(steps):
        xs, ys = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(100 * step + seed)
            xs.append(torch.randn(size, LAYERS[0], generator=g, dtype=torch.float64))
            ys.append(torch.randint(0, LAYERS[-1], (size,), generator=g))
        out.append((torch.stack(xs), torch.stack(ys)))
    return out


def _params(model: MLP, r: int) -> list[np.ndarray]:
    """Replica r's parameters in model.parameters() order: W1, W2, b1, b2."""
    return [p[r].detach().numpy().copy() for p in model.parameters()]


def _objective_grad(params: list[np.ndarray], x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[np.ndarray]]:
    """h = mean cross-entropy of the tanh MLP (W1, W2, b1, b2) on (x, y) + L2/2 ||theta||^2, and dh/dtheta."""
    w1, w2, b1, b2 = ts = [torch.tensor(p, requires_grad=True) for p in params]
    h = F.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y) + 0.5 * L2 * sum(t.square().sum() for t in ts)
    return float(h.detach()), [g.numpy() for g in torch.autograd.grad(h, ts)]


def _direction(grad: np.ndarray, buffer: np.ndarray, m: float, nesterov: bool) -> tuple[np.ndarray, np.ndarray]:
    buffer = m * buffer + grad
    return (grad + m * buffer if nesterov else buffer), buffer


def _reference(params, batches, seed, hp, nesterov):
    """The outer steps of Entropy-SGD on one replica: returns (h at the outer point, params) per step."""
    steps, eta_in, beta1, m = hp["inner_steps"], hp["inner_lr"], hp["ema"], hp["momentum"]
    g = torch.Generator().manual_seed(seed)
    velocity = [np.zeros_like(p) for p in params]
    out = []
    for t, (x, y) in enumerate(batches):
        gamma = hp["gamma0"] * (1 + hp["gamma1"]) ** t
        b = x.shape[0] // steps
        inner = [p.copy() for p in params]
        mean = [p.copy() for p in params]
        buffers = [np.zeros_like(p) for p in params]
        first = None
        for i in range(steps):
            h, grads = _objective_grad(inner, x[i * b:(i + 1) * b], y[i * b:(i + 1) * b])
            first = h if first is None else first
            for j, (xc, xi, gr) in enumerate(zip(params, inner, grads)):
                d, buffers[j] = _direction(gr, buffers[j], m, nesterov)
                eps = torch.randn(xi.shape, generator=g, dtype=torch.float64).numpy()
                scale = eta_in * hp["noise"] / math.sqrt(0.5 * eta_in)  # the official code's noise scale
                inner[j] = xi - eta_in * (d - gamma * (xc - xi)) + scale * eps
                mean[j] = beta1 * mean[j] + (1 - beta1) * inner[j]
        new = []
        for j, (xc, mu) in enumerate(zip(params, mean)):
            d, velocity[j] = _direction(xc - mu, velocity[j], m, nesterov)
            new.append(xc - hp["lr"] * d)
        params = new
        out.append((first, params))
    return out


@pytest.mark.parametrize("nesterov", [True, False])
def test_outer_steps_equal_the_update_written_out(nesterov):
    """Two outer steps (so the outer momentum and the scoping of gamma act) of two replicas at once
    equal each replica's update written out in numpy with the same noise."""
    seeds, hp = [0, 1], {**HP, "nesterov": nesterov}
    model = _model(seeds)
    start = [_params(model, r) for r in range(len(seeds))]
    batches = _batches(seeds, 2, hp["inner_steps"] * SUB_BATCH)
    method = EntropySGD(model, **hp)
    with noise.replica_noise(seeds, "cpu"):
        got = [method.step(x, y)["batch_objective"] for x, y in batches]
    for r, seed in enumerate(seeds):
        want = _reference(start[r], [(x[r], y[r]) for x, y in batches], seed, hp, nesterov)
        for (h_want, _), h_got in zip(want, got):
            assert h_got[r].item() == pytest.approx(h_want, rel=1e-12)
        for p_got, p_want in zip(_params(model, r), want[-1][1]):
            np.testing.assert_allclose(p_got, p_want, rtol=1e-10, atol=1e-12)
        assert not np.allclose(_params(model, r)[0], start[r][0])  # it moved


def test_one_noiseless_sgld_step_is_nesterov_sgd():
    """L = 1, eps = 0: x' = x - eta' (1 + m) grad f(x) (a fresh Nesterov buffer u = grad gives the
    direction grad + m u; the pull gamma (x - x') is 0 at x' = x, so gamma does not matter, however
    large), mu = beta1 x + (1 - beta1) x', and x - mu = (1 - beta1) eta' (1 + m) grad f(x): the outer
    Nesterov step on it is SGD with Nesterov momentum m at lr eta (1 - beta1) eta' (1 + m)."""
    seeds = [0, 1]
    hp = {**HP, "inner_steps": 1, "noise": 0.0, "gamma0": 1e3, "gamma1": 0.5, "nesterov": True}
    model, baseline = _model(seeds), _model(seeds)
    lr = hp["lr"] * (1 - hp["ema"]) * hp["inner_lr"] * (1 + hp["momentum"])
    opt = torch.optim.SGD(baseline.parameters(), lr=lr, momentum=hp["momentum"], nesterov=True)
    method = EntropySGD(model, **hp)
    with noise.replica_noise(seeds, "cpu"):
        for x, y in _batches(seeds, 4, 8):
            h = method.step(x, y)["batch_objective"]
            opt.zero_grad()
            h_sgd = baseline.objective(x, y)
            h_sgd.sum().backward()
            opt.step()
            torch.testing.assert_close(h, h_sgd.detach(), rtol=1e-12, atol=0)
    for p, q in zip(model.parameters(), baseline.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_a_seed_alone_equals_it_beside_another():
    """Seed 1 trained alone and beside seed 0 (same minibatches for seed 1) takes the same steps,
    SGLD noise included."""
    hp = {**HP, "nesterov": True}
    size = hp["inner_steps"] * SUB_BATCH
    pair, alone = _model([0, 1]), _model([1])
    for models, seeds in (((pair,), [0, 1]), ((alone,), [1])):
        method = EntropySGD(models[0], **hp)
        with noise.replica_noise(seeds, "cpu"):
            for x, y in _batches(seeds, 3, size):
                method.step(x, y)
    for p, q in zip(pair.parameters(), alone.parameters()):
        torch.testing.assert_close(p[1], q[0], rtol=1e-10, atol=1e-12)


def test_each_example_is_used_once_per_step():
    """A minibatch of L * B examples is split, in order, into L sub-batches of B: one harness epoch
    is one effective epoch (every example's gradient evaluated once)."""
    model = _model([0])
    seen = []
    objective = model.objective
    model.objective = lambda x, y=None, z=None: seen.append(x) or objective(x, y, z)  # type: ignore[method-assign]
    x, y = _batches([0], 1, HP["inner_steps"] * SUB_BATCH)[0]
    EntropySGD(model, **HP).step(x, y)
    assert [s.shape[1] for s in seen] == [SUB_BATCH] * HP["inner_steps"]
    torch.testing.assert_close(torch.cat(seen, 1), x, rtol=0, atol=0)


def test_a_minibatch_not_a_multiple_of_l_is_refused():
    model = _model([0])
    x, y = _batches([0], 1, 3 * SUB_BATCH + 1)[0]
    with pytest.raises(ConfigError, match=r"13 examples, not a multiple of 3.*batch_size"):
        EntropySGD(model, **HP).step(x, y)


@pytest.mark.parametrize("steps", [0, 2.5])
def test_inner_steps_must_be_a_positive_integer(steps):
    with pytest.raises(ConfigError, match="inner_steps"):
        EntropySGD(_model([0]), **{**HP, "inner_steps": steps})
