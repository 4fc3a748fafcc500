"""RWS gradient estimates vs float64 references computed by exact enumeration on a tiny model, and
the wake-sleep family's updates (rws, rws_joint, bihm) against the same updates written out by hand."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from bench.core.errors import ConfigError
from bench.engine.methods import get_method, resolve_hparams
from bench.models.helmholtz import HelmholtzMachine


def _hidden_states(model: HelmholtzMachine) -> list[torch.Tensor]:
    sizes = model.layers[1:]
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sum(sizes))), dtype=torch.float64)
    return list(states.unsqueeze(0).split(sizes, dim=-1))


def _exact_targets(model: HelmholtzMachine, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per parameter: the batch mean of grad log p(x) (p parameters) and of
    sum_h p(h|x) grad log q(h|x) (q parameters), the quantities RWS estimates."""
    hs = _hidden_states(model)
    s = hs[0].shape[1]
    grads = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for b in range(x.shape[1]):
        state = [x[:, b:b + 1].expand(1, s, -1)] + hs
        log_joint = model.log_p(state)
        posterior = torch.softmax(log_joint, dim=-1).detach()
        objective = torch.logsumexp(log_joint, dim=-1).sum() + (posterior * model.log_q(state)).sum()
        for (name, _), g in zip(model.named_parameters(), torch.autograd.grad(objective, list(model.parameters()))):
            grads[name] += g / x.shape[1]
    return grads


def test_rws_wake_gradients_match_enumeration(tiny_hm):
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]]], dtype=torch.float64)
    target = _exact_targets(tiny_hm, x)
    model = copy.deepcopy(tiny_hm)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rws = get_method("rws")(model, k=200_000, lr=1.0, optimizer="sgd", q_updates="wake", sleep_every=1, q_baseline=False)
    torch.manual_seed(0)
    rws.step(x)
    for name, p in model.named_parameters():
        estimate = p.detach() - before[name]  # one SGD step with lr 1 ascends by the gradient
        torch.testing.assert_close(estimate, target[name], atol=2e-2, rtol=0, msg=lambda m: f"{name}: {m}")


def test_rws_gradient_differs_from_wrong_reference(tiny_hm):
    """The comparison above can fail: a K=1 (wake-sleep) estimate is far from the exact gradient."""
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]]], dtype=torch.float64)
    target = _exact_targets(tiny_hm, x)
    model = copy.deepcopy(tiny_hm)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rws = get_method("rws")(model, k=1, lr=1.0, optimizer="sgd", q_updates="wake", sleep_every=1, q_baseline=False)
    torch.manual_seed(0)
    rws.step(x)
    worst = max((p.detach() - before[n] - target[n]).abs().max().item() for n, p in model.named_parameters())
    assert worst > 0.1


def test_replicas_do_not_interact():
    """Changing replica 1's data leaves replica 0's update untouched (lock-step seeds are independent)."""
    torch.manual_seed(0)
    model = HelmholtzMachine([6, 4, 2], seeds=[0, 1]).double()
    x = (torch.rand(2, 8, 6, dtype=torch.float64) < 0.5).double()
    x2 = x.clone()
    x2[1] = 1 - x2[1]
    updates = []
    for data in (x, x2):
        m = copy.deepcopy(model)
        method = get_method("rws")(m, k=3, lr=0.1, optimizer="adam", q_updates="wake+sleep", sleep_every=1, q_baseline=True)
        torch.manual_seed(5)
        method.step(data)
        updates.append([p.detach()[0].clone() for p in m.parameters()])
    for a, b in zip(*updates):
        torch.testing.assert_close(a, b)


def test_rws_rejects_sleep_every_below_one_and_names_rws_joint(tiny_hm):
    """sleep_every = 0 used to switch rws silently to another scheme; now it is an error that says where
    that scheme went."""
    for bad in (0, -1):
        with pytest.raises(ConfigError, match=rf"sleep_every={bad}\b.*>= 1.*method 'rws_joint'"):
            get_method("rws")(copy.deepcopy(tiny_hm), sleep_every=bad)
    with pytest.raises(ConfigError, match="sleep_every=0"):
        get_method("ws")(copy.deepcopy(tiny_hm), sleep_every=0)
    get_method("rws")(copy.deepcopy(tiny_hm), sleep_every=1)  # the smallest valid value


def test_joint_scheme_keys_are_gone_from_rws_joint_and_nrws():
    """The joint methods have no phase keys: a claim still passing sleep_every (or q_updates) fails at load."""
    for name in ("rws_joint", "nrws", "nbihm"):
        cls = get_method(name)
        assert "sleep_every" not in cls.defaults and "q_updates" not in cls.defaults
        with pytest.raises(ConfigError, match="unknown key 'sleep_every'"):
            resolve_hparams(cls, {"sleep_every": 0})


X3 = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 0, 0]]], dtype=torch.float64)


def _sgd_update(model: HelmholtzMachine, objective: torch.Tensor) -> None:
    """theta <- theta + grad objective (plain SGD with lr 1 on -objective), by hand."""
    grads = torch.autograd.grad(objective.sum(), list(model.parameters()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            if g is not None:
                p.add_(g)


def _hand_joint_update(model: HelmholtzMachine, x: torch.Tensor, k: int, weight_q: float, weight_sleep: float) -> None:
    """The joint scheme written out: K wake samples, self-normalised weights, K x B dreams, then ONE
    step along wake-p + weight_q wake-q (1/K baseline) + weight_sleep sleep-q."""
    r, b, _ = x.shape
    state, _ = model.sample_q(x, k)
    log_p = model.log_p(state).view(r, k, b)
    log_q = model.log_q(state).view(r, k, b)
    w = torch.exp((log_p - log_q).detach() - torch.logsumexp((log_p - log_q).detach(), dim=1, keepdim=True))
    wake_p = (w * log_p).sum(1).mean(1)
    wake_q = ((w - 1.0 / k) * log_q).sum(1).mean(1)
    dreams = model.sample_p(k * b)
    sleep_q = model.log_q(dreams).mean(1)
    _sgd_update(model, wake_p + weight_q * wake_q + weight_sleep * sleep_q)


def test_rws_joint_single_update_is_wake_p_plus_half_wake_q_plus_half_sleep_q(tiny_hm):
    ours, hand, wrong = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    torch.manual_seed(11)
    get_method("rws_joint")(ours, k=4, lr=1.0, optimizer="sgd", q_baseline=True).step(X3)
    torch.manual_seed(11)
    _hand_joint_update(hand, X3, 4, 0.5, 0.5)
    torch.manual_seed(11)
    _hand_joint_update(wrong, X3, 4, 1.0, 1.0)  # full-weight q terms: not the scheme
    for (name, a), b, c in zip(ours.named_parameters(), hand.parameters(), wrong.parameters()):
        torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}")
    assert max((a - c).abs().max().item() for a, c in zip(ours.parameters(), wrong.parameters())) > 1e-3


def test_rws_alternating_step_is_a_wake_update_then_a_sleep_update(tiny_hm):
    """rws with sleep_every = 1: a wake update (wake-p + wake-q), then a separate sleep-q update on B
    dreams drawn from the *updated* model, each its own SGD step."""
    ours, hand = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    r, b, _ = X3.shape
    torch.manual_seed(4)
    get_method("rws")(ours, k=3, lr=1.0, optimizer="sgd", q_updates="wake+sleep", sleep_every=1,
                      q_baseline=False).step(X3)
    torch.manual_seed(4)
    state, _ = hand.sample_q(X3, 3)
    log_p, log_q = hand.log_p(state).view(r, 3, b), hand.log_q(state).view(r, 3, b)
    w = torch.softmax((log_p - log_q).detach(), dim=1)
    _sgd_update(hand, (w * log_p).sum(1).mean(1) + (w * log_q).sum(1).mean(1))
    dreams = hand.sample_p(b)
    _sgd_update(hand, hand.log_q(dreams).sum(1) / b)
    for (name, a), h in zip(ours.named_parameters(), hand.parameters()):
        torch.testing.assert_close(a, h, msg=lambda m: f"{name}: {m}")


def test_bihm_single_update_uses_sqrt_weights_and_a_baseline(tiny_hm):
    ours, hand = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    r, b, _ = X3.shape
    torch.manual_seed(2)
    get_method("bihm")(ours, k=4, lr=1.0, optimizer="sgd").step(X3)
    torch.manual_seed(2)
    state, _ = hand.sample_q(X3, 4)
    log_p, log_q = hand.log_p(state).view(r, 4, b), hand.log_q(state).view(r, 4, b)
    sqrt_w = torch.exp(0.5 * (log_p - log_q).detach())
    w = sqrt_w / sqrt_w.sum(1, keepdim=True)
    _sgd_update(hand, (w * log_p).sum(1).mean(1) + ((w - 0.25) * log_q).sum(1).mean(1))
    for (name, a), h in zip(ours.named_parameters(), hand.parameters()):
        torch.testing.assert_close(a, h, msg=lambda m: f"{name}: {m}")
