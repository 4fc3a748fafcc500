"""BiHM's estimators against exact enumeration, and NRWS/NBiHM steps against dense solves."""

from __future__ import annotations

import copy
import itertools

import torch

from bench.curvature.sbn import fisher_blocks
from bench.engine.methods import get_method
from bench.estimators.sbn import (
    bihm_log_likelihood,
    bihm_log_z2,
    exact_bihm_log_likelihood,
)


def _images(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _brute_log_pt(model, x: torch.Tensor) -> torch.Tensor:
    """log p~*(x) = 2 log sum_h sqrt(p(x,h) q(h|x)) by explicit loops over h (replica 0)."""
    hidden = _images(sum(model.layers[1:]))
    sizes = model.layers[1:]
    out = []
    for xi in x:
        hs = list(hidden.unsqueeze(0).split(sizes, dim=-1))
        state = [xi.view(1, 1, -1).expand(1, len(hidden), -1), *hs]
        out.append(2 * torch.logsumexp(0.5 * (model.log_p(state)[0] + model.log_q(state)[0]), dim=0))
    return torch.stack(out).detach()


def test_exact_bihm_likelihood_matches_brute_force_and_normalises(tiny_hm):
    xs = _images(5)
    log_pt = _brute_log_pt(tiny_hm, xs)
    brute = log_pt - torch.logsumexp(log_pt, 0)
    exact = exact_bihm_log_likelihood(tiny_hm, xs.unsqueeze(0))[0]
    torch.testing.assert_close(exact, brute)
    assert abs(torch.logsumexp(exact, 0).item()) < 1e-10
    assert torch.logsumexp(log_pt, 0) < 0  # Z^2 <= 1 (Cauchy-Schwarz)


def test_z2_estimate_converges_to_exact(tiny_hm):
    exact = torch.logsumexp(_brute_log_pt(tiny_hm, _images(5)), 0)
    torch.manual_seed(0)
    reps = torch.stack([bihm_log_z2(tiny_hm, 20000, k_inner=4)[0] for _ in range(10)])
    assert abs(reps.mean() - exact) < 4 * reps.std() / 10**0.5 + 1e-3, (reps, exact)


def test_bihm_ll_estimate_agrees_with_exact(tiny_hm):
    x = _images(5)[[3, 17, 30]].unsqueeze(0)
    exact = exact_bihm_log_likelihood(tiny_hm, x)[0]
    torch.manual_seed(1)
    log_z2 = bihm_log_z2(tiny_hm, 200_000, k_inner=10)
    reps = torch.stack([bihm_log_likelihood(tiny_hm, x, 2000, log_z2)[0] for _ in range(20)])
    mean, se = reps.mean(0), reps.std(0) / 20**0.5
    assert torch.all((mean - exact).abs() < 4 * se + 0.01), (mean, exact, se)


def _dense_natural(grad_w, grad_b, parents, probs, damping, clip):
    """(1+a)(F + aI)^{-1} g with the full block-diagonal matrix of a layer, one dense solve."""
    blocks = fisher_blocks(parents, probs, clip)[0]  # (out, d, d)
    full = torch.block_diag(*blocks) + damping * torch.eye(blocks.shape[0] * blocks.shape[1], dtype=torch.float64)
    g = torch.cat([grad_w[0], grad_b[0].unsqueeze(-1)], dim=-1).reshape(-1)
    nat = ((1 + damping) * torch.linalg.solve(full, g)).view(blocks.shape[0], -1)
    return nat[:, :-1], nat[:, -1]


def test_nrws_step_is_the_dense_natural_gradient_of_the_rws_gradient(tiny_hm):
    """One NRWS step with plain SGD (lr 1) moves every layer by (1+a)(F+aI)^{-1} g, where g is the
    RWS gradient of the same draw and F is built densely from the same samples the method uses."""
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 0, 0]]], dtype=torch.float64)
    hp = dict(k=4, lr=1.0, optimizer="sgd", q_updates="wake+sleep", sleep_every=0, q_baseline=True)
    nat_model, plain_model = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    before = {n: p.detach().clone() for n, p in tiny_hm.named_parameters()}
    torch.manual_seed(7)
    get_method("nrws")(nat_model, damping=0.05, fisher_every=1, clip=1e-3, **hp).step(x)
    torch.manual_seed(7)  # replay the same draws: RWS's gradient, then the dreams NRWS fits p's Fisher on
    rws = get_method("rws")(plain_model, **hp)
    state, _ = plain_model.sample_q(x, 4)
    torch.manual_seed(7)
    rws.step(x)
    grads = {n: before[n] - p.detach() for n, p in plain_model.named_parameters()}  # SGD lr 1: -grad
    dreams = tiny_hm.sample_p(4 * 3)
    for i, layer in enumerate(tiny_hm.generative):
        parents = dreams[i + 1]
        expect_w, expect_b = _dense_natural(grads[f"generative.{i}.weight"], grads[f"generative.{i}.bias"], parents,
                                            torch.sigmoid(layer.logits(parents)), 0.05, 1e-3)
        torch.testing.assert_close(before[f"generative.{i}.weight"][0] - nat_model.generative[i].weight.detach()[0], expect_w)
        torch.testing.assert_close(before[f"generative.{i}.bias"][0] - nat_model.generative[i].bias.detach()[0], expect_b)
    for i, layer in enumerate(tiny_hm.recognition):
        parents = state[i][:, :3] if i == 0 else state[i]
        expect_w, expect_b = _dense_natural(grads[f"recognition.{i}.weight"], grads[f"recognition.{i}.bias"], parents,
                                            torch.sigmoid(layer.logits(parents)), 0.05, 1e-3)
        torch.testing.assert_close(before[f"recognition.{i}.weight"][0] - nat_model.recognition[i].weight.detach()[0], expect_w)
    c = torch.sigmoid(tiny_hm.prior.bias).clamp(1e-3, 1 - 1e-3)
    expect_prior = grads["prior.bias"] * 1.05 / (0.05 + c * (1 - c))
    torch.testing.assert_close(before["prior.bias"] - nat_model.prior.bias.detach(), expect_prior)


def test_natural_step_differs_from_plain_step(tiny_hm):
    """Guard against a silently skipped preconditioner: small damping changes the update."""
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]]], dtype=torch.float64)
    hp = dict(k=4, lr=1.0, optimizer="sgd", q_updates="wake+sleep", sleep_every=0, q_baseline=True)
    a, b = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    torch.manual_seed(3)
    get_method("nrws")(a, damping=0.05, fisher_every=1, clip=1e-3, **hp).step(x)
    torch.manual_seed(3)
    get_method("rws")(b, **hp).step(x)
    assert (a.generative[0].weight - b.generative[0].weight).abs().max() > 1e-2
