"""LARS and LAMB (methods/lars.py, methods/lamb.py) against their papers' formulas written out in
numpy, in float64: LARS, You, Gitman & Ginsburg 2017, Algorithm 1 with the local LR of eq. 6; LAMB,
You et al. 2020, Algorithm 2 with phi = identity. The gradients of the reference come from autograd
on an MLP written here as a plain function of one replica's parameters (not the model class), so
each replica's update is computed alone: a norm pooled over the replica axis, a trust ratio applied
to a bias or a missed bias correction fails these tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.models.mlp import MLP
from methods.lamb import LAMB
from methods.lars import LARS

LAYERS = [5, 4, 3]
STEPS = 3
LARS_HP = {"lr": 2.0, "momentum": 0.9, "weight_decay": 0.01, "trust_coefficient": 0.02}
LAMB_HP = {"lr": 0.05, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.1}


def _model(seeds: list[int]) -> MLP:
    """A tanh classifier 5-4-3 with biases, float64; replica r's weights scaled by 10**r so the
    replicas' norms, and so their trust ratios, differ by orders of magnitude."""
    model = MLP(LAYERS, seeds, activations="tanh", loss="categorical", init="kaiming").double()
    with torch.no_grad():
        for r, seed in enumerate(seeds):
            for w, b in model.layer_params():
                w[r] *= 10.0**seed
                b[r] = 0.1 * (seed + 1) * torch.arange(b.shape[1], dtype=b.dtype)
    return model


def _batches(seeds: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """STEPS minibatches of 8 examples per replica, replica r's drawn from generator r."""
    out = []
    for step in range(STEPS):
        xs, ys = [], []
        for seed in seeds:
            g = torch.Generator().manual_seed(100 * step + seed)
            xs.append(torch.randn(8, LAYERS[0], generator=g, dtype=torch.float64))
            ys.append(torch.randint(0, LAYERS[-1], (8,), generator=g))
        out.append((torch.stack(xs), torch.stack(ys)))
    return out


def _params(model: MLP, r: int) -> list[np.ndarray]:
    """Replica r's parameters [W1, b1, W2, b2] as numpy arrays."""
    return [p[r].detach().numpy().copy() for block in model.layer_params() for p in block]


def _objective_and_grad(params: list[np.ndarray], x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[np.ndarray]]:
    """Mean cross-entropy of the tanh MLP W1, b1, W2, b2 on (x, y) and its gradient, by autograd."""
    w1, b1, w2, b2 = (torch.tensor(p, requires_grad=True) for p in params)
    h = F.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)
    grads = torch.autograd.grad(h, (w1, b1, w2, b2))
    return float(h.detach()), [g.numpy() for g in grads]


def _lars_reference(params, batches, lr, momentum, weight_decay, trust_coefficient):
    """Algorithm 1 of You, Gitman & Ginsburg (2017), one replica: returns (objective, params) per step."""
    v = [np.zeros_like(p) for p in params]
    out = []
    for x, y in batches:
        h, grads = _objective_and_grad(params, x, y)
        new = []
        for i, (w, g) in enumerate(zip(params, grads)):
            if i % 2 == 0:  # weights: local LR (eq. 6) and weight decay
                wn, gn = np.linalg.norm(w), np.linalg.norm(g)
                local = trust_coefficient * wn / (gn + weight_decay * wn) if wn > 0 and gn > 0 else 1.0
                v[i] = momentum * v[i] + lr * local * (g + weight_decay * w)
            else:  # biases: plain momentum SGD
                v[i] = momentum * v[i] + lr * g
            new.append(w - v[i])
        params = new
        out.append((h, params))
    return out


def _lamb_reference(params, batches, lr, beta1, beta2, eps, weight_decay):
    """Algorithm 2 of You et al. (2020), phi = identity, one replica: (objective, params) per step."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    out = []
    for t, (x, y) in enumerate(batches, start=1):
        h, grads = _objective_and_grad(params, x, y)
        new = []
        for i, (w, g) in enumerate(zip(params, grads)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g**2
            r = (m[i] / (1 - beta1**t)) / (np.sqrt(v[i] / (1 - beta2**t)) + eps)
            if i % 2 == 0:  # weights: weight decay inside r, trust ratio ||w|| / ||r||
                r = r + weight_decay * w
                wn, rn = np.linalg.norm(w), np.linalg.norm(r)
                new.append(w - lr * (wn / rn if wn > 0 and rn > 0 else 1.0) * r)
            else:  # biases: the Adam direction alone
                new.append(w - lr * r)
        params = new
        out.append((h, params))
    return out


CASES = [(LARS, LARS_HP, _lars_reference), (LAMB, LAMB_HP, _lamb_reference)]


@pytest.mark.parametrize("cls, hp, reference", CASES, ids=["lars", "lamb"])
def test_updates_equal_the_papers_formulas(cls, hp, reference):
    seeds = [0, 1]
    model, batches = _model(seeds), _batches(seeds)
    expected = [reference(_params(model, r), [(x[r], y[r]) for x, y in batches], **hp) for r in range(len(seeds))]
    method = cls(model, **hp)
    for step, (x, y) in enumerate(batches):
        h = method.step(x, y)["batch_objective"]
        for r in range(len(seeds)):
            h_ref, params_ref = expected[r][step]
            assert float(h[r]) == pytest.approx(h_ref, rel=1e-12)
            for got, want in zip(_params(model, r), params_ref):
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    moved = [np.abs(a - b).max() for a, b in zip(_params(model, 0), _params(_model(seeds), 0))]
    assert min(moved) > 1e-4, "every block moved"


@pytest.mark.parametrize("cls, hp, reference", CASES, ids=["lars", "lamb"])
def test_a_zero_weight_layer_takes_a_trust_ratio_of_one(cls, hp, reference):
    """||W|| = 0 (a layer initialised at zero): the ratio is 1 instead of 0, so the layer still moves."""
    model, batches = _model([0]), _batches([0])
    with torch.no_grad():
        model.weights[1].zero_()
    expected = reference(_params(model, 0), [(x[0], y[0]) for x, y in batches[:1]], **hp)[0][1]
    cls(model, **hp).step(*batches[0])
    for got, want in zip(_params(model, 0), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    assert np.abs(_params(model, 0)[2]).max() > 0


@pytest.mark.parametrize("cls, hp", [(LARS, LARS_HP), (LAMB, LAMB_HP)], ids=["lars", "lamb"])
def test_each_replica_has_its_own_trust_ratio(cls, hp):
    """Replica 0 trained beside replica 1 (weights 10x larger, other data) follows exactly the path
    it follows alone; a norm pooled over the replica axis would let replica 1's norms set its steps."""
    together, alone = _model([0, 1]), _model([0])
    both, single = _batches([0, 1]), _batches([0])
    m_together, m_alone = cls(together, **hp), cls(alone, **hp)
    for (x2, y2), (x1, y1) in zip(both, single):
        m_together.step(x2, y2)
        m_alone.step(x1, y1)
    for a, b in zip(_params(together, 0), _params(alone, 0)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
