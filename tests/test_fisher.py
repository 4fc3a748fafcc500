"""bench.curvature.sbn against Fisher matrices computed independently: autograd scores of log p summed
over exactly enumerated outcomes, assembled over ALL parameters, then dense float64 solves."""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.curvature.sbn import (
    LayerFisher,
    PriorFisher,
    choose_solver,
    fisher_blocks,
    precondition_layer,
    precondition_prior,
)
from bench.models.helmholtz import HelmholtzMachine
from bench.nn.bernoulli import BernoulliPrior, SBNLayer

ATOL = 1e-12


def _all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Weights of order 1 so that unit probabilities spread over (0, 1), unlike the tiny init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(1.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _unit_major(grad_w: torch.Tensor, grad_b: torch.Tensor) -> torch.Tensor:
    """(R, out, in), (R, out) -> (R, out*(in+1)): unit i's parameters [w_i; b_i] contiguous."""
    return torch.cat([grad_w, grad_b.unsqueeze(-1)], dim=-1).flatten(1)


def _exact_fisher(log_probs: torch.Tensor, weights: torch.Tensor, params, to_flat) -> torch.Tensor:
    """sum_j weights[:, j] s_j s_j^T over rows j, s_j the autograd score of log_probs[:, j]: (R, P, P).
    Summing log-probs over replicas before differentiating is exact: replica r's log-prob depends
    only on replica r's slice of every parameter."""
    scores = []
    for j in range(log_probs.shape[1]):
        grads = torch.autograd.grad(log_probs[:, j].sum(), params, retain_graph=True)
        scores.append(to_flat(*grads))
    s = torch.stack(scores, dim=1)
    return torch.einsum("rj,rjp,rjq->rpq", weights.detach(), s, s)


def _layer_case(n_in: int, n_out: int, n: int, seed: int = 0, replicas: int = 2):
    """A random float64 SBN layer, random 0/1 inputs (R, N, in) and its exact Fisher (R, P, P):
    E over the N inputs (uniform) and over all y in {0,1}^out of p(y|x) s s^T."""
    layer = SBNLayer(n_in, n_out, seeds=list(range(replicas))).double()
    _randomise(layer, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = (torch.rand(replicas, n, n_in, generator=g) < 0.5).double()
    ys = _all_states(n_out)
    x_rows = x.repeat_interleave(len(ys), dim=1)
    y_rows = ys.repeat(n, 1).expand(replicas, -1, -1)
    log_p = layer.log_prob(y_rows, x_rows)
    fisher = _exact_fisher(log_p, log_p.exp() / n, [layer.weight, layer.bias], _unit_major)
    return layer, x, fisher


def _blocks_of(full: torch.Tensor, size: int) -> torch.Tensor:
    """Diagonal (size, size) blocks of (R, P, P): (R, P/size, size, size)."""
    k = full.shape[-1] // size
    return torch.stack([full[:, i * size:(i + 1) * size, i * size:(i + 1) * size] for i in range(k)], dim=1)


def _block_diag(blocks: torch.Tensor) -> torch.Tensor:
    """(R, k, d, d) -> (R, k*d, k*d)."""
    return torch.stack([torch.block_diag(*b) for b in blocks])


def _random_problem(n_in: int, n_out: int, n: int, seed: int, replicas: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(replicas, n, n_in, generator=g) < 0.3).double()
    probs = torch.rand(replicas, n, n_out, generator=g, dtype=torch.float64)
    probs[0, 0, 0], probs[-1, -1, -1] = 0.0, 1.0  # saturated units go through the clip
    grad_w = torch.randn(replicas, n_out, n_in, generator=g, dtype=torch.float64)
    grad_b = torch.randn(replicas, n_out, generator=g, dtype=torch.float64)
    return grad_w, grad_b, x, probs


# ------------------------------------------------------------------------------------------------
def test_layer_fisher_is_block_diagonal_and_equals_fisher_blocks():
    layer, x, full = _layer_case(n_in=3, n_out=3, n=7)
    d = 4
    blocks = fisher_blocks(x, torch.sigmoid(layer.logits(x)))
    assert blocks.shape == (2, 3, d, d) and blocks.dtype == torch.float64
    assert torch.allclose(full, _block_diag(_blocks_of(full, d)), rtol=0, atol=ATOL)  # off-diagonal ~ 0
    assert torch.allclose(blocks, _blocks_of(full, d), rtol=0, atol=ATOL)
    assert blocks[..., -1, -1].gt(1e-4).all()  # E[c_i] of the bias: the blocks are not trivially zero


@pytest.mark.parametrize("solver", ["cholesky", "woodbury", "auto"])
@pytest.mark.parametrize(("n_in", "n"), [(3, 7), (6, 4)])  # N > in+1 and N < in+1
@pytest.mark.parametrize("damping", [1e-3, 0.7])
def test_natural_gradient_equals_dense_solve(solver, n_in, n, damping):
    layer, x, full = _layer_case(n_in=n_in, n_out=2, n=n, seed=3)
    g = torch.Generator().manual_seed(7)
    grad_w = torch.randn(2, 2, n_in, generator=g, dtype=torch.float64)
    grad_b = torch.randn(2, 2, generator=g, dtype=torch.float64)
    eye = torch.eye(full.shape[-1], dtype=torch.float64)
    expected = (1 + damping) * torch.linalg.solve(full + damping * eye, _unit_major(grad_w, grad_b))
    nat_w, nat_b = precondition_layer(grad_w, grad_b, x, torch.sigmoid(layer.logits(x)), damping, solver)
    assert torch.allclose(_unit_major(nat_w, nat_b), expected, rtol=1e-9, atol=ATOL)


@pytest.mark.parametrize(("n_in", "n_out", "n"), [(20, 13, 8), (5, 13, 40)])
def test_woodbury_and_cholesky_agree_with_and_without_chunking(n_in, n_out, n):
    grad_w, grad_b, x, probs = _random_problem(n_in, n_out, n, seed=n)
    ref_w, ref_b = precondition_layer(grad_w, grad_b, x, probs, 0.05, "cholesky")
    for solver in ("cholesky", "woodbury"):
        for max_bytes in (2**28, 1, 8 * 2 * 3 * 2 * max(n, n_in + 1) ** 2):  # all, 1 and 3 units a chunk
            nat_w, nat_b = precondition_layer(grad_w, grad_b, x, probs, 0.05, solver, max_bytes=max_bytes)
            assert torch.allclose(nat_w, ref_w, rtol=1e-8, atol=ATOL), (solver, max_bytes)
            assert torch.allclose(nat_b, ref_b, rtol=1e-8, atol=ATOL), (solver, max_bytes)


def test_float32_gradients_come_back_float32():
    grad_w, grad_b, x, probs = _random_problem(6, 4, 5, seed=1)
    for solver in ("cholesky", "woodbury"):
        nat_w, nat_b = precondition_layer(grad_w.float(), grad_b.float(), x.float(), probs.float(), 0.1, solver)
        ref_w, ref_b = precondition_layer(grad_w, grad_b, x, probs, 0.1, solver)
        assert nat_w.dtype == nat_b.dtype == torch.float32
        assert torch.allclose(nat_w.double(), ref_w, rtol=1e-4, atol=1e-5)
        assert torch.allclose(nat_b.double(), ref_b, rtol=1e-4, atol=1e-5)


def test_saturated_units_are_clipped():
    """s is clamped to [clip, 1-clip], so a saturated unit keeps a Fisher of clip(1-clip) E[x~ x~^T]."""
    _, _, x, _ = _random_problem(4, 2, 6, seed=4)
    xt = torch.cat([x, torch.ones(2, 6, 1, dtype=torch.float64)], dim=-1)
    second_moment = torch.einsum("rni,rnj->rij", xt, xt) / 6
    probs = torch.stack([torch.zeros(2, 6), torch.ones(2, 6)], dim=-1).double()
    blocks = fisher_blocks(x, probs, clip=1e-3)
    assert torch.allclose(blocks, 1e-3 * (1 - 1e-3) * second_moment.unsqueeze(1).expand_as(blocks), atol=ATOL)
    grad_b = torch.ones(1, 2, dtype=torch.float64)
    nat_b = precondition_prior(grad_b, torch.tensor([[-1e3, 1e3]], dtype=torch.float64), 0.1, clip=1e-3)
    assert torch.allclose(nat_b, torch.full_like(grad_b, 1.1 / (0.1 + 1e-3 * (1 - 1e-3))), rtol=1e-12)


def test_prior_equals_dense_solve():
    prior = BernoulliPrior(3, replicas=2).double()
    _randomise(prior, 5)
    hs = _all_states(3).expand(2, -1, -1)
    log_p = prior.log_prob(hs)
    full = _exact_fisher(log_p, log_p.exp(), [prior.bias], lambda gb: gb)
    grad_b = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for damping in (1e-3, 0.5):
        eye = torch.eye(3, dtype=torch.float64)
        expected = (1 + damping) * torch.linalg.solve(full + damping * eye, grad_b)
        assert torch.allclose(precondition_prior(grad_b, prior.bias, damping), expected, rtol=1e-10, atol=ATOL)


def test_joint_generative_fisher_is_block_diagonal_with_marginal_blocks():
    """The paper's claim: the Fisher of p(x, h) over all p-parameters is block-diagonal across
    layers and units, unit i of layer h_{l+1} -> h_l having E_{p(h_{l+1})}[c_i x~ x~^T]."""
    model = HelmholtzMachine([3, 2, 2], seeds=[0, 1]).double()
    _randomise(model, 11)
    sizes = model.layers
    joint = _all_states(sum(sizes)).expand(2, -1, -1)
    state = list(joint.split(sizes, dim=-1))
    log_p = model.log_p(state)
    weights = log_p.exp()
    assert torch.allclose(weights.sum(1), torch.ones(2, dtype=torch.float64), atol=ATOL)

    params = [p for layer in model.generative for p in (layer.weight, layer.bias)] + [model.prior.bias]

    def to_flat(*grads):
        pairs = [_unit_major(grads[2 * i], grads[2 * i + 1]) for i in range(len(model.generative))]
        return torch.cat(pairs + [grads[-1]], dim=1)

    full = _exact_fisher(log_p, weights, params, to_flat)

    expected = []
    r, s = weights.shape
    for i, layer in enumerate(model.generative):
        parent = state[i + 1]
        probs = torch.sigmoid(layer.logits(parent))
        # One state per "replica" row (N = 1), then weight each state's block by p(x, h).
        per_state = fisher_blocks(parent.reshape(r * s, 1, -1), probs.reshape(r * s, 1, -1))
        marginal = torch.einsum("rs,rsuij->ruij", weights, per_state.view(r, s, *per_state.shape[1:]))
        expected.append(_block_diag(marginal))
    sigma = torch.sigmoid(model.prior.bias)
    expected.append(torch.diag_embed(sigma * (1 - sigma)))
    expected_full = torch.stack([torch.block_diag(*(m[k] for m in expected)) for k in range(r)])
    assert full.shape == expected_full.shape == (2, 3 * 3 + 2 * 3 + 2, 17)
    assert torch.allclose(full, expected_full, rtol=0, atol=ATOL)


@pytest.mark.parametrize("solver", ["cholesky", "woodbury"])
def test_large_damping_returns_the_gradient(solver):
    grad_w, grad_b, x, probs = _random_problem(6, 5, 4, seed=9)
    nat_w, nat_b = precondition_layer(grad_w, grad_b, x, probs, 1e9, solver)
    assert torch.allclose(nat_w, grad_w, rtol=1e-7, atol=1e-9)
    assert torch.allclose(nat_b, grad_b, rtol=1e-7, atol=1e-9)
    bias = torch.randn(2, 5, dtype=torch.float64)
    assert torch.allclose(precondition_prior(grad_b, bias, 1e9), grad_b, rtol=1e-7, atol=1e-9)
    # ... while moderate damping changes it substantially, so the check above can fail.
    nat_w, _ = precondition_layer(grad_w, grad_b, x, probs, 0.1, solver)
    assert not torch.allclose(nat_w, grad_w, rtol=0.1)


def test_auto_solver_compares_costs():
    assert choose_solver(160, 200, 784) == "woodbury"  # authors' MNIST bottom layer, N = 32 * 5
    assert choose_solver(1000, 10, 50) == "cholesky"
    assert choose_solver(10, 100, 10) == "woodbury"


def test_rejects_bad_arguments():
    grad_w, grad_b, x, probs = _random_problem(3, 2, 4, seed=0)
    with pytest.raises(ValueError, match="damping"):
        precondition_layer(grad_w, grad_b, x, probs, 0.0)
    with pytest.raises(ValueError, match="solver"):
        precondition_layer(grad_w, grad_b, x, probs, 0.1, solver="qr")


# ------------------------------------------------------------------------------------------------
# fit / apply: the Fisher is factored once and reused for later gradients.
def _dense_natural(grad_w, grad_b, x, probs, damping, clip=1e-6):
    """(1 + a)(F + aI)^{-1} g with F = blockdiag(fisher_blocks(x, probs)), by dense linalg.solve."""
    full = _block_diag(fisher_blocks(x, probs, clip))
    eye = torch.eye(full.shape[-1], dtype=torch.float64)
    return (1 + damping) * torch.linalg.solve(full + damping * eye, _unit_major(grad_w, grad_b))


def _held_tensors(fisher) -> list[torch.Tensor]:
    return [t for v in vars(fisher).values() for t in (v if isinstance(v, list) else [v])
            if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("solver", ["cholesky", "woodbury"])
@pytest.mark.parametrize(("n_in", "n_out", "n"), [(7, 5, 4), (3, 5, 9)])  # N < in+1 and N > in+1
def test_fit_then_apply_equals_dense_solve_and_precondition_layer(solver, n_in, n_out, n):
    grad_w, grad_b, x, probs = _random_problem(n_in, n_out, n, seed=13)
    expected = _dense_natural(grad_w, grad_b, x, probs, 0.03)
    one_shot = precondition_layer(grad_w, grad_b, x, probs, 0.03, solver)
    d = n_in + 1
    two_units = 8 * 2 * 2 * (2 * d * d + n * d if solver == "cholesky" else 2 * n * n)  # R = 2, 8 B
    for max_bytes in (None, 2**28, 1, two_units):  # default, all units, 1 and 2 units a chunk
        fisher = LayerFisher.fit(x, probs, 0.03, solver, max_bytes=max_bytes)
        assert fisher.solver == solver and fisher.shape == (2, n_out, n_in)
        nat_w, nat_b = fisher.apply(grad_w, grad_b)
        assert torch.allclose(_unit_major(nat_w, nat_b), expected, rtol=1e-9, atol=ATOL), max_bytes
        assert torch.allclose(nat_w, one_shot[0], rtol=1e-10, atol=ATOL), max_bytes
        assert torch.allclose(nat_b, one_shot[1], rtol=1e-10, atol=ATOL), max_bytes
    assert len(LayerFisher.fit(x, probs, 0.03, solver, max_bytes=1)._factors) == n_out  # chunks happen
    chunked = LayerFisher.fit(x, probs, 0.03, solver, max_bytes=two_units)
    assert [f.shape[1] for f in chunked._factors] == [2, 2, 1]


@pytest.mark.parametrize("solver", ["cholesky", "woodbury"])
def test_fitted_fisher_is_frozen_at_the_fit_samples(solver):
    """Fit on samples A, then the samples are overwritten in place by B (as a training loop does)
    and a new gradient arrives: apply must still use F_A, not F_B."""
    _, _, x_a, probs_a = _random_problem(6, 4, 5, seed=21)
    grad_w, grad_b, x_b, probs_b = _random_problem(6, 4, 5, seed=22)
    expected_a = _dense_natural(grad_w, grad_b, x_a, probs_a, 0.02)
    expected_b = _dense_natural(grad_w, grad_b, x_b, probs_b, 0.02)
    assert not torch.allclose(expected_a, expected_b, rtol=1e-3)  # the check below can fail

    fisher = LayerFisher.fit(x_a, probs_a, 0.02, solver)
    x_a.copy_(x_b)
    probs_a.copy_(probs_b)
    nat_w, nat_b = fisher.apply(grad_w, grad_b)
    assert torch.allclose(_unit_major(nat_w, nat_b), expected_a, rtol=1e-9, atol=ATOL)
    refit_w, refit_b = LayerFisher.fit(x_a, probs_a, 0.02, solver).apply(grad_w, grad_b)
    assert torch.allclose(_unit_major(refit_w, refit_b), expected_b, rtol=1e-9, atol=ATOL)


@pytest.mark.parametrize("solver", ["cholesky", "woodbury"])
def test_apply_mutates_neither_the_factors_nor_the_gradient(solver):
    grad_w, grad_b, x, probs = _random_problem(5, 6, 4, seed=31)
    fisher = LayerFisher.fit(x, probs, 0.1, solver, max_bytes=1)
    held = [t.clone() for t in _held_tensors(fisher)]
    assert len(held) == (6 if solver == "cholesky" else 8)  # one factor per unit (+ X~, scalings)
    gw, gb = grad_w.clone(), grad_b.clone()
    first = fisher.apply(grad_w, grad_b)
    second = fisher.apply(grad_w, grad_b)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert all(torch.equal(a, b) for a, b in zip(held, _held_tensors(fisher)))
    assert torch.equal(grad_w, gw) and torch.equal(grad_b, gb)
    # a different gradient after that is still exact
    other = fisher.apply(2 * grad_w + 1, -grad_b)
    expected = _dense_natural(2 * grad_w + 1, -grad_b, x, probs, 0.1)
    assert torch.allclose(_unit_major(*other), expected, rtol=1e-9, atol=ATOL)


def test_layer_fisher_float32_gradients_and_shape_checks():
    grad_w, grad_b, x, probs = _random_problem(6, 4, 5, seed=41)
    for solver in ("cholesky", "woodbury"):
        fisher = LayerFisher.fit(x.float(), probs.float(), 0.1, solver)
        nat_w, nat_b = fisher.apply(grad_w.float(), grad_b.float())
        ref_w, ref_b = precondition_layer(grad_w, grad_b, x, probs, 0.1, solver)
        assert nat_w.dtype == nat_b.dtype == torch.float32
        assert torch.allclose(nat_w.double(), ref_w, rtol=1e-4, atol=1e-5)
        assert torch.allclose(nat_b.double(), ref_b, rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="fitted"):
            fisher.apply(grad_w[:, :3], grad_b[:, :3])
        with pytest.raises(ValueError, match="fitted"):
            fisher.apply(grad_w, grad_b[:1])
    with pytest.raises(ValueError, match="probs"):
        LayerFisher.fit(x, probs[:, :3], 0.1)


def test_layer_fisher_memory_matches_docstring_formula():
    """nbytes: R*out*d^2 doubles for cholesky; R*(out*N^2 + N*d + out*N) for woodbury."""
    _, _, x, probs = _random_problem(6, 4, 5, seed=51)
    r, n, d, k = 2, 5, 7, 4
    assert LayerFisher.fit(x, probs, 0.1, "cholesky", max_bytes=1).nbytes == 8 * r * k * d * d
    assert LayerFisher.fit(x, probs, 0.1, "woodbury").nbytes == 8 * r * (k * n * n + n * d + k * n)


def test_prior_fisher_is_frozen_at_the_fit_bias_and_reusable():
    g = torch.Generator().manual_seed(61)
    bias = 2 * torch.randn(2, 5, generator=g, dtype=torch.float64)
    bias_a = bias.clone()
    bias_b = 2 * torch.randn(2, 5, generator=g, dtype=torch.float64)
    grad1 = torch.randn(2, 5, generator=g, dtype=torch.float64)
    grad2 = torch.randn(2, 5, generator=g, dtype=torch.float64)

    def dense(grad, bias, damping):
        sigma = torch.sigmoid(bias)
        eye = torch.eye(5, dtype=torch.float64)
        full = torch.diag_embed(sigma * (1 - sigma))
        return (1 + damping) * torch.linalg.solve(full + damping * eye, grad.unsqueeze(-1)).squeeze(-1)

    assert not torch.allclose(dense(grad2, bias_a, 0.05), dense(grad2, bias_b, 0.05), rtol=1e-3)
    fisher = PriorFisher.fit(bias, 0.05)
    snapshot = [t.clone() for t in _held_tensors(fisher)]
    first = fisher.apply(grad1)
    assert torch.allclose(first, dense(grad1, bias_a, 0.05), rtol=1e-10, atol=ATOL)
    assert torch.allclose(first, precondition_prior(grad1, bias_a, 0.05), rtol=1e-12, atol=ATOL)
    bias.copy_(bias_b)  # the optimizer updates the bias in place after the refresh
    second = fisher.apply(grad2)
    assert torch.allclose(second, dense(grad2, bias_a, 0.05), rtol=1e-10, atol=ATOL)
    assert torch.equal(fisher.apply(grad1), first)  # apply twice: same result, factors untouched
    assert all(torch.equal(a, b) for a, b in zip(snapshot, _held_tensors(fisher))) and snapshot
    assert torch.allclose(PriorFisher.fit(bias, 0.05).apply(grad2), dense(grad2, bias_b, 0.05), rtol=1e-10)
    half = PriorFisher.fit(bias.float(), 0.05).apply(grad2.float())
    assert half.dtype == torch.float32 and torch.allclose(half.double(), dense(grad2, bias_b, 0.05), rtol=1e-5)
    with pytest.raises(ValueError, match="fitted"):
        fisher.apply(grad2[:1])
    with pytest.raises(ValueError, match="damping"):
        PriorFisher.fit(bias, -0.1)
