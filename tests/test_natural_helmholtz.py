"""BiHM's estimators against exact enumeration, and NRWS/NBiHM steps against dense solves."""

from __future__ import annotations

import copy
import itertools

import torch

from bench.curvature.sbn import MAX_DAMPING, HelmholtzFisher, fisher_blocks
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
    gradient of RWS with the same (joint) phases, rws_joint, on the same draw and F is built densely from the same samples the method uses."""
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 0, 0]]], dtype=torch.float64)
    hp = dict(k=4, lr=1.0, optimizer="sgd", q_baseline=True)
    nat_model, plain_model = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    before = {n: p.detach().clone() for n, p in tiny_hm.named_parameters()}
    torch.manual_seed(7)
    get_method("nrws")(nat_model, damping=0.05, fisher_every=1, clip=1e-3, **hp).step(x)
    torch.manual_seed(7)  # replay the same draws: RWS's gradient, then the dreams NRWS fits p's Fisher on
    rws = get_method("rws_joint")(plain_model, **hp)
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
    hp = dict(k=4, lr=1.0, optimizer="sgd", q_baseline=True)
    a, b = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    torch.manual_seed(3)
    get_method("nrws")(a, damping=0.05, fisher_every=1, clip=1e-3, **hp).step(x)
    torch.manual_seed(3)
    get_method("rws_joint")(b, **hp).step(x)
    assert (a.generative[0].weight - b.generative[0].weight).abs().max() > 1e-2


def test_nbihm_step_is_the_natural_gradient_of_the_bihm_step(tiny_hm):
    """One NBiHM step (SGD, lr 1) = BiHM's gradient of the same draw, preconditioned by a
    HelmholtzFisher fitted on the same wake samples and the dreams drawn right after BiHM's draw."""
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 0, 0]]], dtype=torch.float64)
    hp = dict(k=4, lr=1.0, optimizer="sgd")
    nat_model, plain_model = copy.deepcopy(tiny_hm), copy.deepcopy(tiny_hm)
    torch.manual_seed(5)
    get_method("nbihm")(nat_model, damping=0.05, fisher_every=1, clip=1e-3, **hp).step(x)
    torch.manual_seed(5)
    state, _ = plain_model.sample_q(x, 4)
    torch.manual_seed(5)
    get_method("bihm")(plain_model, **hp).step(x)  # leaves BiHM's gradient g on plain_model's .grad
    ref = copy.deepcopy(tiny_hm)  # the parameters before the step, which NBiHM fits its Fisher at
    for p, g in zip(ref.parameters(), plain_model.parameters()):
        p.grad = g.grad.clone()
    HelmholtzFisher(ref, 4, 0.05, 1, 1e-3).precondition(state, 0)  # its dreams: the draw after BiHM's, as in NBiHM
    for (n, p), q, r in zip(tiny_hm.named_parameters(), nat_model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.detach() - q.detach(), r.grad, msg=lambda m: f"{n}: {m}")  # SGD lr 1: -P(g)
    assert max((q - pl).abs().max().item() for q, pl in zip(nat_model.parameters(), plain_model.parameters())) > 1e-2


def test_helmholtz_fisher_refits_every_fisher_every_updates(tiny_hm):
    """Fitted at update 0, then at every multiple of fisher_every, once per update (0 = every update);
    each fit draws K x B dreams, so the schedule is visible in the random stream."""
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]]], dtype=torch.float64)
    state, _ = tiny_hm.sample_q(x, 3)
    for every, expected in ((3, [0, 3, 6]), (0, list(range(8))), (1, list(range(8)))):
        fisher = HelmholtzFisher(tiny_hm, 3, 0.05, every, 1e-3)
        fitted = []
        for update in range(8):
            for p in tiny_hm.parameters():
                p.grad = torch.ones_like(p)
            if fisher.due(update):
                fitted.append(update)
            fisher.precondition(state, update)
            assert fisher.fitted_at == (fitted[-1] if fitted else -1)
            assert not fisher.due(update)  # a second call within one update reuses the blocks
        assert fitted == expected, (every, fitted)
    for p in tiny_hm.parameters():
        p.grad = None


def test_helmholtz_fisher_leaves_gradients_alone_above_max_damping(tiny_hm):
    x = torch.tensor([[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]]], dtype=torch.float64)
    state, _ = tiny_hm.sample_q(x, 3)
    grads = {n: torch.randn_like(p) for n, p in tiny_hm.named_parameters()}
    for n, p in tiny_hm.named_parameters():
        p.grad = grads[n].clone()
    rng = torch.get_rng_state()
    HelmholtzFisher(tiny_hm, 3, MAX_DAMPING * 1.1, 1, 1e-3).precondition(state, 0)
    assert torch.equal(rng, torch.get_rng_state())  # nothing fitted: no dreams drawn
    for n, p in tiny_hm.named_parameters():
        assert torch.equal(p.grad, grads[n])
    HelmholtzFisher(tiny_hm, 3, 0.05, 1, 1e-3).precondition(state, 0)
    assert not torch.equal(rng, torch.get_rng_state())
    assert any(not torch.equal(p.grad, grads[n]) for n, p in tiny_hm.named_parameters())
    for p in tiny_hm.parameters():
        p.grad = None
