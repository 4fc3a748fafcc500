"""Variational Bernoulli-gate pruning with a spike-and-slab prior (methods/bernoulli_gsm.py; issue
13, research notes P5).

References: a planted sparse regression (the inputs the data were generated from), torch.distributions'
Bernoulli and Gaussian KLs in float64, the sample mean of exact Bernoulli draws and autograd of the
binary Concrete, an explicitly gated forward pass; seeds alone vs beside others; a pickled method
resumed vs an uninterrupted one."""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import classification_data, float64_classifier
from torch.distributions import Bernoulli, Normal, kl_divergence

from bench.core.errors import ConfigError
from bench.models.mlp import MLP
from bench.nn import noise
from methods.bernoulli_gsm import TEMPERATURE, BernoulliGSM, bernoulli_kl, straight_through_gate


def _classifier(seeds: list[int], layers=(6, 8, 5, 3)) -> MLP:
    return float64_classifier(seeds, layers)


_data = classification_data


# ----------------------------------------------------------------------------- pruning
def test_gates_keep_the_inputs_of_a_planted_sparse_model_and_prune_the_rest():
    """y = 1.5 x_0 - 2 x_1 + N(0, 0.1^2) noise on 8 inputs U(-1, 1), of which only x_0 and x_1 are
    used: the input gates of the network [8, 6, 1] keep exactly {0, 1}, and the deterministic
    pruned network (the model) predicts y to within the noise."""
    n, d, relevant = 400, 8, [0, 1]
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(n, d, generator=g, dtype=torch.float64) - 1
    y = 1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    scale = 10.0  # unit-variance Gaussian likelihood of y * 10 = a noise sd of 0.1 on y
    model = MLP([d, 6, 1], [0, 1], activations="relu", loss="gaussian", init="kaiming").double()
    model.target = lambda inputs, labels: labels  # regression: the likelihood reads y, not the input
    method = BernoulliGSM(model, lr=0.01, init_pi=0.9, init_sigma=0.01)
    method.prepare(n)
    xs, ys = x.expand(2, -1, -1), (scale * y).view(1, n, 1).expand(2, -1, -1)
    with noise.replica_noise([0, 1], "cpu"):
        for _ in range(1500):
            method.step(xs, ys)
    kept = method.kept_gates()[0]
    assert kept.tolist() == [[1.0 if i in relevant else 0.0 for i in range(d)]] * 2
    metrics = method.extra_metrics(xs, 1, ys)
    torch.testing.assert_close(metrics["inputs_kept"], torch.full((2,), 2 / d, dtype=torch.float64))
    residual = (model(xs).squeeze(-1) / scale - y).square().mean(1).sqrt()
    assert residual.max() < 0.2  # got about 0.1, the noise sd


def test_the_model_is_the_explicitly_gated_network_at_the_posterior_mode():
    """After pruning, model(x) = the network with each layer's input multiplied by its kept gates
    and weights at mu; weights_kept and units_kept count what that network still uses."""
    x, _ = _data(2)
    method = BernoulliGSM(_classifier([0, 1]))
    method.prepare(x.shape[1])
    with torch.no_grad():
        for logits in method.gate_logits:
            logits.copy_(torch.randn(logits.shape, generator=torch.Generator().manual_seed(3)))
    method.sync_model()
    gates = method.kept_gates()
    a = x
    for i, (mu, b, gate) in enumerate(zip(method.mu, method.model.biases, gates)):
        s = torch.bmm(a * gate.unsqueeze(1), mu.transpose(1, 2)) + b.unsqueeze(1)
        a = torch.relu(s) if i < len(gates) - 1 else s
    torch.testing.assert_close(method.model(x), a.detach(), rtol=1e-12, atol=1e-12)
    metrics = method.extra_metrics(x, 1)
    for r in range(2):
        g0, g1, g2 = (g[r] for g in gates)
        used = (g1.sum() * g0.sum() + g2.sum() * g1.sum() + 3 * g2.sum()) / (8 * 6 + 5 * 8 + 3 * 5)
        torch.testing.assert_close(metrics["weights_kept"][r], used)
        torch.testing.assert_close(metrics["units_kept"][r], (g1.sum() + g2.sum()) / 13)
        assert method.model.weights[0][r][:, g0 == 0].abs().sum() == 0  # pruned inputs' columns
        assert method.model.weights[0][r][g1 == 0].abs().sum() == 0  # pruned hidden units' rows


# ----------------------------------------------------------------------------- the KL and the gates
def test_the_kl_equals_torch_distributions_in_float64():
    torch.manual_seed(0)
    pi, prior_pi = torch.rand(2, 7, dtype=torch.float64), 0.2
    torch.testing.assert_close(bernoulli_kl(pi, prior_pi),
                               kl_divergence(Bernoulli(probs=pi), Bernoulli(probs=torch.tensor(prior_pi, dtype=torch.float64))),
                               rtol=1e-12, atol=1e-12)
    ends = bernoulli_kl(torch.tensor([0.0, 1.0], dtype=torch.float64), 0.5)  # 0 log 0 = 0: log 2 each
    torch.testing.assert_close(ends, torch.full((2,), math.log(2), dtype=torch.float64), rtol=1e-15, atol=0)

    method = BernoulliGSM(_classifier([0, 1]), prior_pi=0.3, prior_sigma=0.7, init_sigma=0.2)
    with torch.no_grad():
        for logits, rho in zip(method.gate_logits, method.rho):
            logits.normal_()
            rho.add_(torch.rand_like(rho))
    expected = torch.zeros(2, dtype=torch.float64)
    prior_w = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64))
    for mu, sigma, pi in zip(method.mu, (torch.nn.functional.softplus(r) for r in method.rho),
                             method.gate_probabilities()):
        gates = kl_divergence(Bernoulli(probs=pi), Bernoulli(probs=torch.tensor(0.3, dtype=torch.float64)))
        slab = kl_divergence(Normal(mu, sigma), prior_w).sum(1)  # (R, in): a column's weights
        expected += (gates + pi * slab).sum(1)
    torch.testing.assert_close(method.kl().detach(), expected, rtol=1e-12, atol=1e-10)


def test_the_straight_through_gate_is_an_exact_bernoulli_draw_with_the_concrete_gradient():
    logit = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64, requires_grad=True)
    u = torch.rand(20000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = straight_through_gate(logit, u)
    hard = (z.detach() > 0.5).double()
    assert torch.equal(z.detach()[hard == 0], torch.zeros_like(z[hard == 0]))  # a closed gate is exactly 0
    torch.testing.assert_close(z.detach(), hard, rtol=0, atol=1e-15)  # an open one 1 to rounding
    z = hard
    pi = torch.sigmoid(logit.detach())
    se = (pi * (1 - pi) / u.shape[0]).sqrt()
    assert ((z.detach().mean(0) - pi).abs() < 4 * se).all()
    straight_through_gate(logit, u).sum().backward()
    soft = torch.sigmoid((logit.detach() + torch.logit(u)) / TEMPERATURE)
    torch.testing.assert_close(logit.grad, (soft * (1 - soft) / TEMPERATURE).sum(0))


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="prior_pi"):
        BernoulliGSM(_classifier([0]), prior_pi=1.0)
    with pytest.raises(ConfigError, match="l2"):
        BernoulliGSM(MLP([6, 3], [0], loss="categorical", l2=1e-4))
    with pytest.raises(RuntimeError, match="prepare"):
        BernoulliGSM(_classifier([0])).kl_per_example()


# ----------------------------------------------------------------------------- replicas and checkpoints
def _train(seeds: list[int], steps: int, state: bytes | None = None):
    """(extra metrics and the pruned network's output after `steps` steps, the state pickled at the
    end), from a fresh method or from a pickled `state`."""
    x, y = _data(len(seeds))
    with noise.replica_noise(seeds, "cpu"):
        if state is None:
            method = BernoulliGSM(_classifier(seeds), lr=0.05, variational_lr=0.1, init_pi=0.55, kl_warmup=3)
            method.prepare(x.shape[1])
        else:
            saved = torch.load(io.BytesIO(state), weights_only=False)
            method = saved["method"]
            noise.set_states(saved["noise"])
        objectives = torch.stack([method.step(x, y)["batch_objective"] for _ in range(steps)])
        buffer = io.BytesIO()
        torch.save({"method": method, "noise": noise.states()}, buffer)
        out = {**method.extra_metrics(x, 1, y), "output": method.model(x).detach(), "objective": objectives.T}
        return out, buffer.getvalue()


def test_a_seed_alone_trains_as_beside_other_seeds():
    together, _ = _train([0, 1, 2], 8)
    alone, _ = _train([1], 8)
    for metric, values in together.items():
        torch.testing.assert_close(values[1:2], alone[metric], rtol=1e-7, atol=1e-9)
    assert not torch.equal(together["objective"][0], together["objective"][1])
    assert (together["units_kept"] < 1).any()  # the gates moved: some unit was pruned


def test_a_pickled_method_resumes_to_the_same_numbers():
    """The loop's checkpoint pickles the method whole (model, mu, rho, gates, optimiser, warm-up)."""
    whole, _ = _train([0, 1], 8)
    _, state = _train([0, 1], 4)
    resumed, _ = _train([0, 1], 4, state)
    for metric, values in whole.items():
        if metric != "objective":
            assert torch.equal(values, resumed[metric]), metric
