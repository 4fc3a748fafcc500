"""Binary RBMs (bench/models/rbm.py), their AIS estimator (bench/estimators/ais.py), workload
(bench/workloads/rbm.py) and training methods (methods/cd.py, methods/pcd.py), against
independent references: brute-force enumeration of both layers, autograd of the exact
log-likelihood, and the CD-1 transition kernel enumerated exactly. Float64, tiny synthetic models
and planted data only."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bench.core.errors import ConfigError
from bench.engine.methods import get_method
from bench.estimators.ais import ais_log_partition, salakhutdinov_murray_betas
from bench.models.rbm import RBM
from bench.nn import noise
from bench.workloads import rbm as rbm_workload
from bench.workloads import workload_for


def _states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _random_rbm(d: int, h: int, scale: float = 1.0, seed: int = 0, replicas: int = 1) -> RBM:
    model = RBM([d, h], seeds=list(range(replicas))).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def _brute_force_log_z(model: RBM) -> torch.Tensor:
    """log sum_{v, h} exp(b.v + c.h + h^T W v) over both layers: (R,)."""
    d, h = model.layers
    v, hs = _states(d), _states(h)
    out = []
    for r in range(model.replicas):
        neg_energy = (v @ model.visible_bias[r])[:, None] + (hs @ model.hidden_bias[r])[None, :] + v @ model.weight[r].T @ hs.T
        out.append(torch.logsumexp(neg_energy.flatten(), 0))
    return torch.stack(out).detach()


def _planted(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """n binary vectors: one of 4 random prototypes per row, 5% of its bits flipped."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(4, d, generator=g) < 0.5).double()
    rows = prototypes[torch.randint(4, (n,), generator=g)]
    flips = (torch.rand(n, d, generator=g) < 0.05).double()
    return (rows + flips) % 2


def _train(model: RBM, method: str, x: torch.Tensor, steps: int, seeds: list[int], **hparams) -> None:
    """`steps` updates of `method` on minibatches of 20 rows of x (N, D), the same for every replica."""
    trainer = get_method(method)(model, **hparams)
    g = torch.Generator().manual_seed(123)
    with noise.replica_noise(seeds, "cpu"):
        for _ in range(steps):
            batch = x[torch.randint(len(x), (20,), generator=g)]
            trainer.step(batch.unsqueeze(0).expand(len(seeds), -1, -1).contiguous())


# --------------------------------------------------------------------------- exact log Z
@pytest.mark.parametrize("d, h", [(6, 4), (4, 6)], ids=["hidden-enumerated", "visible-enumerated"])
def test_exact_log_z_equals_brute_force_over_both_layers(d, h):
    model = _random_rbm(d, h, replicas=2)
    exact = model.log_partition()
    assert exact.dtype == torch.float64
    torch.testing.assert_close(exact, _brute_force_log_z(model), rtol=0, atol=1e-10)


def test_log_prob_is_normalised_and_matches_the_joint():
    model = _random_rbm(6, 4, replicas=2)
    v = _states(6).unsqueeze(0).expand(2, -1, -1)
    log_p = model.log_prob(v, model.log_partition())  # (R, 64)
    torch.testing.assert_close(torch.logsumexp(log_p, 1), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-10)
    # -F(v) = log sum_h exp(-E(v, h)) for every v
    hs = _states(4)
    for r in range(2):
        joint = (v[r] @ model.visible_bias[r])[:, None] + (hs @ model.hidden_bias[r])[None, :] + v[r] @ model.weight[r].T @ hs.T
        torch.testing.assert_close(-model.free_energy(v)[r].detach(), torch.logsumexp(joint, 1), rtol=0, atol=1e-10)


def test_log_z_is_recomputed_when_the_parameters_change():
    model = _random_rbm(6, 4)
    before = model.log_partition().clone()
    with torch.no_grad():
        model.weight.add_(0.5)
    torch.testing.assert_close(model.log_partition(), _brute_force_log_z(model), rtol=0, atol=1e-10)
    assert not torch.allclose(before, model.log_partition())


def test_enumeration_refuses_more_than_25_units():
    model = RBM([30, 26], seeds=[0])
    with pytest.raises(ValueError, match="2\\^26"):
        model.log_partition()


def test_visible_biases_and_base_rate_are_the_training_log_odds():
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    model = RBM([3, 2], seeds=[0, 1])
    workload_for("rbm").prepare(model, x)
    p = torch.tensor([4 / 5, 1 / 5, 3 / 5])  # (count + 1) / (N + 2)
    expected = torch.log(p / (1 - p)).expand(2, -1)
    torch.testing.assert_close(model.visible_bias.detach(), expected)
    torch.testing.assert_close(model.base_rate, expected)


# --------------------------------------------------------------------------- AIS
def test_betas_follow_salakhutdinov_and_murray():
    betas = salakhutdinov_murray_betas()
    assert len(betas) == 14_501 and betas[0] == 0 and betas[-1] == 1 and bool((betas.diff() > 0).all())
    assert float(betas[500]) == 0.5 and float(betas[4500]) == pytest.approx(0.9)
    assert float(betas[1]) == pytest.approx(1e-3) and float(betas[-1] - betas[-2]) == pytest.approx(1e-5)
    with pytest.raises(ValueError):
        ais_log_partition(_random_rbm(4, 3), 10, torch.tensor([0.0, 0.7, 0.5, 1.0], dtype=torch.float64))


def test_ais_is_within_a_tenth_of_a_nat_of_the_exact_log_z():
    """A 100-16 RBM trained by CD-1 on planted prototypes (a peaked, multimodal distribution,
    harder for AIS than random weights; log Z = 160.5 nats): 1000 runs through 3000 temperatures
    give a standard deviation of about 0.02 nat, and the estimate lies within 0.1 nat of the exact
    value and within Salakhutdinov & Murray's +-3 sigma."""
    x = _planted(400, 100)
    model = RBM([100, 16], seeds=[0]).double()
    workload_for("rbm").prepare(model, x)
    _train(model, "cd", x, 400, [0], lr=0.1, k=1)
    exact = model.log_partition()
    with noise.replica_noise([7], "cpu"):
        estimate, sd = ais_log_partition(model, 1000, salakhutdinov_murray_betas(3000))
    assert abs(float(estimate - exact)) < min(0.1, 3 * float(sd)), (float(estimate), float(exact), float(sd))
    assert 0 < float(sd) < 0.05
    # the base-rate model alone is far from the trained RBM: the annealing does the work
    base = torch.nn.functional.softplus(model.base_rate).sum() + 16 * math.log(2)
    assert abs(float(base - exact)) > 5


def test_workload_uses_ais_above_the_enumeration_limit(monkeypatch):
    model = _random_rbm(20, 8, scale=0.3, replicas=2)
    x = (torch.rand(2, 50, 20, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    workload = workload_for("rbm")
    assert workload.exact_metrics({"family": "rbm", "layers": [784, 25]}) == ("ll", "log_z")
    assert workload.exact_metrics({"family": "rbm", "layers": [784, 500]}) == ()
    exact = workload.metrics(model, None, x, 10, None)
    assert "log_z_sd" not in exact
    torch.testing.assert_close(exact["ll"], model.log_prob(x, model.log_partition()).mean(1))
    monkeypatch.setattr(rbm_workload, "EXACT_MAX_UNITS", 4)
    monkeypatch.setattr(rbm_workload, "AIS_BETAS", 1000)
    with noise.replica_noise([0, 1], "cpu"):
        ais = workload.metrics(model, None, x, 200, None)
    assert set(ais) == {"ll", "ll_sem", "log_z", "log_z_sd"}
    torch.testing.assert_close(ais["ll"], exact["ll"], rtol=0, atol=0.1)


# --------------------------------------------------------------------------- CD-k and PCD
def _analytic_cd_update(model: RBM, x: torch.Tensor, k: int | None) -> list[torch.Tensor]:
    """The expected CD-k update <grad -F>_data - E[grad -F(v_k)] of (W, b, c) for a model of one
    replica, with v_k's law from the enumerated Gibbs kernel; k=None: the model's own law (the
    exact likelihood gradient)."""
    d, h = model.layers
    v, hs = _states(d), _states(h)
    w, b, c = model.weight[0].detach(), model.visible_bias[0].detach(), model.hidden_bias[0].detach()

    def bernoulli(states, logits):  # p(states | logits) for every row of logits: (rows, 2^n)
        return torch.exp(states @ logits.T - torch.nn.functional.softplus(logits).sum(1)).T

    kernel = bernoulli(hs, v @ w.T + c) @ bernoulli(v, hs @ w + b)  # P(v' | v): (2^d, 2^d)
    start = torch.zeros(2**d, dtype=torch.float64)
    index = (x * 2 ** torch.arange(d - 1, -1, -1, dtype=torch.float64)).sum(1).long()
    start.index_add_(0, index, torch.full((len(x),), 1 / len(x), dtype=torch.float64))
    if k is None:
        negative = torch.softmax(-model.free_energy(v.unsqueeze(0))[0].detach(), 0)
    else:
        negative = start @ torch.linalg.matrix_power(kernel, k)

    def stats(weights):
        ph = torch.sigmoid(v @ w.T + c)
        return [(weights[:, None] * ph).T @ v, weights @ v, weights @ ph]

    return [p - n for p, n in zip(stats(start), stats(negative))]


@pytest.mark.parametrize("k", [1, 2])
def test_cd_update_is_the_expected_cd_k_gradient(k):
    """lr = 1: the update is the minibatch mean of grad -F(x) - grad -F(v_k); over 160000 rows
    (Monte-Carlo standard error under 0.0025 per entry) it is within 0.01 of the expectation under
    the enumerated k-step Gibbs kernel, which differs by more than twice that from the k+1-step
    expectation and from the exact likelihood gradient (so the test tells them apart)."""
    model = _random_rbm(5, 3, scale=2.0)
    x = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.float64)
    params = (model.weight, model.visible_bias, model.hidden_bias)
    before = [p.detach().clone() for p in params]
    method = get_method("cd")(model, lr=1.0, k=k)
    with noise.replica_noise([3], "cpu"):
        method.step(x.repeat(40_000, 1).unsqueeze(0))
    update = [(p.detach() - q)[0] for p, q in zip(params, before)]
    with torch.no_grad():
        for p, q in zip(params, before):
            p.copy_(q)
    expected = _analytic_cd_update(model, x, k)
    for got, want in zip(update, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0.01)
    for other in (_analytic_cd_update(model, x, k + 1), _analytic_cd_update(model, x, None)):
        assert max(float((a - b).abs().max()) for a, b in zip(expected, other)) > 0.02


def test_exact_gradient_reference_is_autograd_of_the_exact_log_likelihood():
    """The k=None reference above (data statistics minus model statistics) equals autograd of
    mean log p(x) with log Z by brute force, so both CD references rest on the likelihood."""
    model = _random_rbm(5, 3, scale=0.7)
    x = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float64)
    v = _states(5).unsqueeze(0)
    ll = -model.free_energy(x.unsqueeze(0)).mean() - torch.logsumexp(-model.free_energy(v)[0], 0)
    grads = torch.autograd.grad(ll, [model.weight, model.visible_bias, model.hidden_bias])
    for got, want in zip(_analytic_cd_update(model, x, None), grads):
        torch.testing.assert_close(got, want[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_training_raises_the_exact_log_likelihood_on_planted_data(method):
    """A 12-5 RBM on 4 planted prototypes: after training, the exact log-likelihood beats the
    factorial Bernoulli model of the pixel means (where training starts) by more than 2 nats."""
    x = _planted(300, 12)
    model = RBM([12, 5], seeds=[0]).double()
    workload_for("rbm").prepare(model, x)
    p = (x.sum(0) + 1) / (len(x) + 2)
    factorial = float((x @ torch.log(p) + (1 - x) @ torch.log1p(-p)).mean())
    start = float(model.log_prob(x.unsqueeze(0), model.log_partition()).mean())
    assert abs(start - factorial) < 0.1
    _train(model, method, x, 600, [0], lr=0.3, k=1, anneal_updates=600)
    end = float(model.log_prob(x.unsqueeze(0), model.log_partition()).mean())
    assert end > factorial + 2, (factorial, end)


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_a_seed_alone_equals_the_seed_beside_another(method):
    x = _planted(200, 30)
    runs = {}
    for seeds in ([1], [0, 1]):
        model = RBM([30, 6], seeds=seeds)
        workload_for("rbm").prepare(model, x.float())
        _train(model, method, x.float(), 50, seeds, lr=0.1, k=2)
        with noise.replica_noise(seeds, "cpu"):
            log_z, _ = ais_log_partition(model, 20, salakhutdinov_murray_betas(100))
        runs[len(seeds)] = (model.weight.detach()[-1], log_z[-1])
    torch.testing.assert_close(runs[1][0], runs[2][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(runs[1][1], runs[2][1], rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_hyper_parameters_are_validated(method):
    model = RBM([6, 3], seeds=[0])
    with pytest.raises(ConfigError, match="number of Gibbs sweeps"):
        get_method(method)(model, lr=0.1, k=0, momentum=0.0, anneal_updates=0)
    with pytest.raises(ConfigError, match="needs anneal_updates > 0"):
        get_method(method)(model, lr=0.1, k=1, momentum=0.0, anneal_updates=-1)
