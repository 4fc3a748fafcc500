"""RWS gradient estimates vs float64 references computed by exact enumeration on a tiny model."""

from __future__ import annotations

import copy
import itertools

import torch

from bench.engine.methods import get_method
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
