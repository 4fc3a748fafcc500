"""K-FAC, FOOF and exact natural gradient (bench/curvature.py, methods/{kfac,foof,ngd}.py) against
references in float64: curvlinops' KFAC operators for the Kronecker factors and the
preconditioned gradients, and dense Fisher/GGN matrices built with torch.func for the exact ones.
"""

from __future__ import annotations

import copy

import pytest
import torch
from curvlinops import KFACInverseLinearOperator, KFACLinearOperator
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

from bench.curvature import mlp as C
from bench.engine.methods import get_method
from bench.models.mlp import MLP
from bench.workloads import workload_for

# (model config, curvlinops loss): a sigmoid autoencoder with biases (Martens & Grosse) and a
# bias-free ReLU classifier (Benzing)
CASES = {
    "autoencoder": (dict(layers=[6, 5, 3, 5, 6], activations=["sigmoid", "linear", "sigmoid"], loss="bernoulli",
                         bias=True, init="kaiming"), nn.BCEWithLogitsLoss()),
    "classifier": (dict(layers=[6, 5, 4, 3], activations="relu", loss="categorical", bias=False, init="kaiming"),
                   nn.CrossEntropyLoss()),
}
B = 9
TORCH_ACT = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "linear": nn.Identity}


def _model(case: str, seeds: tuple[int, ...] = (0,)) -> MLP:
    torch.manual_seed(0)
    model = MLP(seeds=list(seeds), **CASES[case][0]).double()
    with torch.no_grad():  # non-zero biases, so the homogeneous coordinate matters
        for b in model.biases or []:
            b.normal_()
    return model


def _data(model: MLP, r: int = 1) -> tuple[Tensor, Tensor | None]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(r, B, model.layers[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, model.layers[-1], (r, B), generator=g) if model.loss == "categorical" else None
    return x, y


def _sequential(model: MLP, r: int = 0) -> nn.Sequential:
    """Replica r as a plain torch network, the form curvlinops reads."""
    mods = []
    for i, act in enumerate(model.activations):
        lin = nn.Linear(model.layers[i], model.layers[i + 1], bias=model.has_bias).double()
        with torch.no_grad():
            lin.weight.copy_(model.weights[i][r])
            if model.has_bias:
                lin.bias.copy_(model.biases[i][r])
        mods += [lin, TORCH_ACT[act]()]
    return nn.Sequential(*mods[:-1])


def _sampled_targets(model: MLP, x: Tensor, seed: int) -> Tensor:
    """The targets C.sampled_statistics draws after torch.manual_seed(seed) (its first RNG use)."""
    torch.manual_seed(seed)
    return model.sample(model(x).detach())


def _curvlinops_kfac(model: MLP, case: str, x: Tensor, t: Tensor, fisher_type: str) -> KFACLinearOperator:
    """curvlinops' K-FAC of replica 0. 'empirical' with the model-sampled targets t is the
    sampled-label (true) Fisher of one MC sample, i.e. exactly what our statistics estimate."""
    net = _sequential(model)
    op = KFACLinearOperator(net, CASES[case][1], list(net.parameters()), [(x[0], t[0])], fisher_type=fisher_type,
                            separate_weight_and_bias=False, check_deterministic=False)
    op.compute_kronecker_factors()
    return op


def _scale(model: MLP) -> int:
    """Our Fisher / curvlinops' Fisher. BCEWithLogitsLoss(reduction='mean') also averages over the
    C output units, while our per-case loss sums them (the papers' convention), so for the
    autoencoder our K-FAC is C times curvlinops' (A equal, G C times larger)."""
    return model.layers[-1] if model.loss == "bernoulli" else 1


def _kfac_inverse(op: KFACLinearOperator, model: MLP, damping: float) -> KFACInverseLinearOperator:
    """curvlinops' heuristically damped K-FAC inverse in our scale: with K = c K', pi = pi'/sqrt(c),
    (A + pi sqrt(l) I) (x) (G + sqrt(l)/pi I) = c [(A + pi' sqrt(l/c) I) (x) (G' + sqrt(l/c)/pi' I)],
    so our inverse is 1/c times curvlinops' inverse at damping l/c."""
    c = _scale(model)
    return (1.0 / c) * KFACInverseLinearOperator(op, damping=damping / c, use_heuristic_damping=True)


def _random_blocks(model: MLP, seed: int = 3) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return C.to_blocks(model, [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in C.flat_params(model)])


def _flat(blocks: list[Tensor], model: MLP) -> Tensor:
    return torch.cat([p[0].flatten() for p in C.from_blocks(model, blocks)])


# --------------------------------------------------------------------------- K-FAC and FOOF vs curvlinops
@pytest.mark.parametrize("case", CASES)
def test_kfac_factors_match_curvlinops(case):
    model = _model(case)
    x, _ = _data(model)
    torch.manual_seed(7)
    stats = C.sampled_statistics(model, x)
    ref = _curvlinops_kfac(model, case, x, _sampled_targets(model, x, 7), "empirical").state_dict()
    names = list(ref["input_covariances"])
    assert len(names) == len(stats.inputs) == len(model.weights)
    for name, a, g in zip(names, stats.inputs, stats.grads):
        torch.testing.assert_close(C.second_moment(a)[0], ref["input_covariances"][name])
        torch.testing.assert_close(C.second_moment(g)[0], _scale(model) * ref["gradient_covariances"][name])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("damping", [1e-3, 10.0])
def test_kfac_preconditioned_gradient_matches_curvlinops(case, damping):
    """Factored Tikhonov damping with the pi correction = curvlinops' heuristic damping."""
    model = _model(case)
    x, _ = _data(model)
    torch.manual_seed(7)
    stats = C.sampled_statistics(model, x)
    op = _curvlinops_kfac(model, case, x, _sampled_targets(model, x, 7), "empirical")
    v = _random_blocks(model)
    inv = C.kfac_inverses  # (A + pi sqrt(l) I)^-1, (G + sqrt(l)/pi I)^-1
    ours = [C.precondition(vl, *inv(C.second_moment(a), C.second_moment(g), torch.tensor([damping**0.5], dtype=torch.float64)))
            for vl, a, g in zip(v, stats.inputs, stats.grads)]
    ref = _kfac_inverse(op, model, damping) @ _flat(v, model)
    torch.testing.assert_close(_flat(ours, model), ref)


@pytest.mark.parametrize("case", CASES)
def test_foof_preconditioned_gradient_matches_curvlinops(case):
    """FOOF = K-FAC with G = I and the damping on A only (curvlinops' 'forward-only' Fisher)."""
    model = _model(case)
    x, _ = _data(model)
    damping = 0.1
    stats = C.layer_inputs(model, model.forward_layers(x)[0])
    op = _curvlinops_kfac(model, case, x, _sampled_targets(model, x, 0), "forward-only")
    v = _random_blocks(model)
    ours = [C.precondition(vl, C.damped_inverse(C.second_moment(a), torch.tensor([damping], dtype=torch.float64)))
            for vl, a in zip(v, stats.inputs)]
    ref = KFACInverseLinearOperator(op, damping=(damping, 0.0)) @ _flat(v, model)
    torch.testing.assert_close(_flat(ours, model), ref)


# --------------------------------------------------------------------------- exact Fisher / GGN vs dense autograd
def _per_example(model: MLP, fn):
    """fn(params, x_n (D,), t_n) -> per-example quantity, for replica 0 through functional_call."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    keys = [name_of[id(p)] for p in C.flat_params(model)]

    def call(params: tuple[Tensor, ...], xn: Tensor) -> Tensor:
        return functional_call(model, dict(zip(keys, params)), (xn.view(1, 1, -1),)).view(-1)

    params = tuple(p.detach()[:1] for p in C.flat_params(model))
    return params, lambda ps, xn, tn: fn(call, ps, xn, tn)


def test_natural_gradient_equals_dense_fisher_solve():
    """(F + lambda I)^-1 v by Woodbury = a dense solve with F = (1/m) sum_n u_n u_n^T built from
    per-example gradients (torch.func.vmap(grad)) of -log p(t_n | x_n), t_n sampled."""
    model = _model("autoencoder")
    x, _ = _data(model)
    torch.manual_seed(7)
    stats = C.sampled_statistics(model, x)
    t = _sampled_targets(model, x, 7)

    def nll(call, ps, xn, tn):
        return model.nll(call(ps, xn).view(1, 1, -1), tn.view(1, 1, -1)).sum()

    params, f = _per_example(model, nll)
    per_ex = vmap(grad(f), in_dims=(None, 0, 0))(params, x[0], t[0])  # tuple of (B, *param shape)
    u = torch.cat([g.reshape(B, -1) for g in per_ex], 1)
    fisher = u.T @ u / B
    v = _random_blocks(model)
    damping = 0.05
    dense = torch.linalg.solve(fisher + damping * torch.eye(len(fisher), dtype=fisher.dtype), _flat(v, model))
    torch.testing.assert_close(_flat(C.natural_gradient(stats, v, damping), model), dense)


@pytest.mark.parametrize("case", CASES)
def test_ggn_gram_equals_dense_ggn(case):
    """d_i^T G d_j with G = (1/B) sum_n J_n^T H_n J_n, J by jacrev and H the Hessian of the loss in
    the output by torch.func.hessian (the quadratic model behind K-FAC's alpha and mu)."""
    model = _model(case)
    x, y = _data(model)
    t = model.target(x, y)

    def out(call, ps, xn, tn):
        return call(ps, xn)

    params, f = _per_example(model, out)
    jac = vmap(jacrev(f), in_dims=(None, 0, 0))(params, x[0], t[0])  # per param: (B, out, *shape)
    j = torch.cat([g.reshape(B, model.layers[-1], -1) for g in jac], -1)
    z = model(x)[0]
    h = torch.stack([hessian(lambda zn: model.nll(zn.view(1, 1, -1), tn.view(1, 1, *tn.shape)).sum())(zn)
                     for zn, tn in zip(z, t[0])])
    ggn = torch.einsum("nop,noq,nqr->pr", j, h, j) / B
    dirs = [_random_blocks(model, s) for s in (3, 4)]
    flat = torch.stack([_flat(d, model) for d in dirs])
    torch.testing.assert_close(C.ggn_gram(model, x, dirs)[0], flat @ ggn @ flat.T)


# --------------------------------------------------------------------------- the methods' steps
def _step(name: str, model: MLP, x: Tensor, y: Tensor | None, seed: int, **hp) -> list[Tensor]:
    """Parameter change (as blocks) of one step of a method."""
    cls = get_method(name)
    method = cls(model, **{**cls.defaults, **hp})
    before = [p.detach().clone() for p in C.flat_params(model)]
    torch.manual_seed(seed)
    method.step(x, y)
    return C.to_blocks(model, [p.detach() - b for p, b in zip(C.flat_params(model), before)])


def _gradient(model: MLP, x: Tensor, y: Tensor | None) -> list[Tensor]:
    return C.objective_gradient(model, x, y)[1]


@pytest.mark.parametrize("case", CASES)
def test_kfac_fixed_step_is_curvlinops_preconditioned_gradient(case):
    """Benzing's K-FAC (constant lr and damping), first step: -lr K^-1 grad h with K from curvlinops."""
    model = _model(case)
    x, y = _data(model)
    lr, damping = 0.3, 0.5
    op = _curvlinops_kfac(model, case, x, _sampled_targets(model, x, 11), "empirical")
    ref = -lr * (_kfac_inverse(op, model, damping) @ _flat(_gradient(model, x, y), model))
    delta = _step("kfac", model, x, y, 11, adaptive=False, lr=lr, damping=damping, stats_fraction=1.0)
    torch.testing.assert_close(_flat(delta, model), ref)


@pytest.mark.parametrize("case", CASES)
def test_foof_step_is_curvlinops_preconditioned_gradient(case):
    model = _model(case)
    x, y = _data(model)
    lr, damping = 0.3, 0.5
    op = _curvlinops_kfac(model, case, x, _sampled_targets(model, x, 0), "forward-only")
    ref = -lr * (KFACInverseLinearOperator(op, damping=(damping, 0.0)) @ _flat(_gradient(model, x, y), model))
    torch.testing.assert_close(_flat(_step("foof", model, x, y, 0, lr=lr, damping=damping), model), ref)


def test_kfac_adaptive_first_step_minimises_the_exact_quadratic_model():
    """Step 1 of the paper's K-FAC is alpha * Delta with alpha = -grad.Delta / Delta^T (F + (lambda+eta) I) Delta,
    Delta = -K^-1 grad (curvlinops, gamma = sqrt(lambda + eta)) and F the exact GGN (dense, torch.func)."""
    model = _model("autoencoder")
    model.l2 = 1e-3
    x, y = _data(model)
    lam = 2.0
    op = _curvlinops_kfac(model, "autoencoder", x, _sampled_targets(model, x, 5), "empirical")
    g = _flat(_gradient(model, x, y), model)
    proposal = -(_kfac_inverse(op, model, lam + model.l2) @ g)
    delta = _flat(_step("kfac", copy.deepcopy(model), x, y, 5, damping=lam, stats_fraction=1.0), model)
    dirs = [C.to_blocks(model, [p.unsqueeze(0) for p in _unflat(proposal, model)])]
    curvature = C.ggn_gram(model, x, dirs)[0, 0, 0] + (lam + model.l2) * proposal @ proposal
    torch.testing.assert_close(delta, -(g @ proposal) / curvature * proposal)


def _unflat(v: Tensor, model: MLP) -> list[Tensor]:
    out, i = [], 0
    for p in C.flat_params(model):
        n = p[0].numel()
        out.append(v[i:i + n].view(p[0].shape))
        i += n
    return out


def test_ngd_step_is_dense_natural_gradient():
    """NGD's first step: -lr (F + lambda I)^-1 grad h, F on the same batch (no previous batch yet)."""
    model = _model("classifier")
    x, y = _data(model)
    lr, damping = 0.5, 0.1
    torch.manual_seed(2)
    stats = C.sampled_statistics(copy.deepcopy(model), x)
    ref = [-lr * d for d in C.natural_gradient(stats, _gradient(model, x, y), damping)]
    torch.testing.assert_close(_flat(_step("ngd", model, x, y, 2, lr=lr, damping=damping), model), _flat(ref, model))


# --------------------------------------------------------------------------- replicas and schedule
@pytest.mark.parametrize("name, hp", [("sgd", {}), ("adam", {}), ("foof", {}), ("ngd", {}),
                                      ("kfac", {"inverse_every": 2}), ("kfac", {"adaptive": False})])
def test_replicas_share_nothing(name, hp):
    """Replica 0 follows the same trajectory whatever replica 1 sees (other data, other seed):
    no statistic, damping, step size or solve is pooled across the replica axis."""
    trajectories = []
    for other in (0.0, 1.0):
        model = _model("autoencoder", seeds=(0, 1 + int(other)))
        x, _ = _data(model, r=2)
        x[1] = x[1] * other + (1 - other) * 0.5
        cls = get_method(name)
        method = cls(model, **{**cls.defaults, **hp, **({"lr": 0.05} if name in ("foof", "ngd") else {})})
        torch.manual_seed(0)
        for _ in range(6):
            method.step(x)
        trajectories.append([p.detach()[0].clone() for p in C.flat_params(model)])
    for a, b in zip(*trajectories):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_running_average_weights():
    """eps = min(1 - 1/t, decay) at update t: the first estimates are plain means, then an EMA."""
    avg = C.RunningAverage(0.5)
    values = [torch.tensor(v) for v in (1.0, 3.0, 8.0)]
    out = [avg.update([v])[0].item() for v in values]
    assert out == [1.0, 2.0, 5.0]  # mean(1, 3) = 2, then 0.5 * 2 + 0.5 * 8


def test_sparse_init():
    model = MLP([40, 30, 10], seeds=[3, 4])
    w = model.weights[0]
    assert ((w != 0).sum(-1) == 15).all()
    assert ((model.weights[1] != 0).sum(-1) == 15).all()
    assert not torch.equal(w[0], w[1])
    torch.testing.assert_close(MLP([40, 30, 10], seeds=[9, 3]).weights[0][1], w[0])
    assert all((b == 0).all() for b in model.biases)


def test_metrics_are_the_papers_errors():
    """Autoencoder 'error' = sum_d (sigmoid(z_d) - x_d)^2 per case; classifier 'error' = misclassification rate."""
    model = _model("autoencoder")
    x, _ = _data(model)
    evaluate = workload_for("mlp").metrics
    m = evaluate(model, None, x, 0, None)
    torch.testing.assert_close(m["error"], (torch.sigmoid(model(x)) - x).square().sum(-1).mean(1))
    torch.testing.assert_close(m["loss"], nn.functional.binary_cross_entropy_with_logits(model(x), x, reduction="none").sum(-1).mean(1))
    model = _model("classifier")
    x, y = _data(model)
    assert torch.equal(evaluate(model, None, x, 0, y)["error"], (model(x).argmax(-1) != y).double().mean(1))
