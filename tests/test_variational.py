"""VAE / IWAE / DLGM / wake-sleep on Gaussian-latent models against independent references:
closed forms for a linear-Gaussian model (probabilistic PCA), numerical quadrature over the latent
space for the real (non-linear) VAE and DLGM classes, all in float64."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal

from bench.core.errors import ConfigError
from bench.engine.methods import get_method
from bench.estimators.amortization import active_units, amortization_gaps
from bench.estimators.importance import importance_log_likelihood
from bench.models.dlgm import DLGM
from bench.models.vae import VAE
from bench.nn.optim import ascent_step, iwae_learning_rate
from bench.workloads import workload_for


class LinearGaussian(nn.Module):
    """p(x | z) = N(W z + b, sigma^2 I), a stand-in for VAE.data with the same interface."""

    def __init__(self, w: Tensor, b: Tensor, sigma: float):
        super().__init__()
        self.w, self.b, self.sigma = nn.Parameter(w), nn.Parameter(b), sigma

    def mean(self, h: Tensor) -> Tensor:
        return torch.einsum("rdz,rkbz->rkbd", self.w, h) + self.b[:, None, None]

    def log_prob(self, x: Tensor, h: Tensor) -> Tensor:
        return Normal(self.mean(h), self.sigma).log_prob(x.unsqueeze(1)).sum(-1)

    def sample(self, h: Tensor) -> Tensor:
        return self.mean(h) + self.sigma * torch.randn_like(self.mean(h))


def ppca(d: int = 4, z: int = 2, sigma: float = 0.5, seed: int = 0) -> VAE:
    """The real VAE class (linear Gaussian encoder: no hidden units) with a linear-Gaussian decoder
    whose W has orthogonal columns, so the exact posterior is a diagonal Gaussian, inside q's family.
    The encoder starts away from it."""
    g = torch.Generator().manual_seed(seed)
    model = VAE([d, z], [[]], seeds=[seed]).double()
    w = torch.linalg.qr(torch.randn(d, z, generator=g, dtype=torch.float64))[0]
    w = w * torch.tensor([2.0, 0.7], dtype=torch.float64)  # column norms 2 and 0.7
    model.data = LinearGaussian(w.unsqueeze(0), 0.3 * torch.randn(1, d, generator=g, dtype=torch.float64), sigma)
    return model


def exact_log_px(model: VAE, x: Tensor) -> Tensor:
    w, b, s = model.data.w[0], model.data.b[0], model.data.sigma
    cov = w @ w.T + s**2 * torch.eye(w.shape[0], dtype=w.dtype)
    return MultivariateNormal(b, cov).log_prob(x)


def set_exact_posterior(model: VAE) -> None:
    """q(z | x) = N(M^-1 W^T (x - b) / s^2, M^-1), M = I + W^T W / s^2 (diagonal here)."""
    w, b, s = model.data.w[0].detach(), model.data.b[0].detach(), model.data.sigma
    m_inv = torch.linalg.inv(torch.eye(w.shape[1], dtype=w.dtype) + w.T @ w / s**2)
    assert torch.allclose(m_inv, torch.diag(torch.diag(m_inv)))
    q = model.q[0]
    with torch.no_grad():
        q.mean.weight[0] = m_inv @ w.T / s**2
        q.mean.bias[0] = -(m_inv @ w.T @ b) / s**2
        q.log_sigma.weight.zero_()
        q.log_sigma.bias[0] = 0.5 * torch.log(torch.diag(m_inv))


def encoder(model: VAE, x: Tensor) -> Normal:
    """q(z1 | x) as a torch distribution, batch shape (R, B, z1): the reference the written-out
    densities are checked against."""
    mean, log_sigma = model.q[0](x)
    return Normal(mean, log_sigma.exp())


def _x(d: int = 4, n: int = 3, seed: int = 1) -> Tensor:
    return torch.randn(1, n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _repeat(fn, reps: int) -> tuple[Tensor, Tensor]:
    vals = torch.stack([fn() for _ in range(reps)])
    return vals.mean(0), vals.std(0) / reps**0.5


# --------------------------------------------------------------------------- closed forms (PPCA)
def test_exact_posterior_gives_constant_weights():
    """With q the exact posterior, log p(x, z) - log q(z | x) = log p(x) for every z: checks every
    normalising constant of the encoder, prior and decoder densities at once."""
    model, x = ppca(), _x()
    set_exact_posterior(model)
    torch.manual_seed(0)
    lw = model.log_weights(x, 50)
    torch.testing.assert_close(lw, exact_log_px(model, x[0]).expand_as(lw), atol=1e-10, rtol=0)


def test_is_estimate_converges_to_closed_form():
    model, x = ppca(), _x()
    exact = exact_log_px(model, x[0])
    torch.manual_seed(0)
    mean, se = _repeat(lambda: importance_log_likelihood(model.log_weights, x, 2000)[0], 20)
    assert torch.all((mean - exact).abs() < 4 * se + 1e-3), (mean, exact, se)
    k1, se1 = _repeat(lambda: importance_log_likelihood(model.log_weights, x, 1)[0], 2000)
    assert torch.all(k1 + 4 * se1 < exact), "the K=1 estimate must be a strictly loose bound here"


def test_iwae_bound_increases_with_k_towards_log_px():
    """E[L_1] < E[L_5] < E[L_50] < log p(x) (Burda et al., Theorem 1), on a fixed model."""
    model, x = ppca(), _x()
    exact = exact_log_px(model, x[0]).sum()
    torch.manual_seed(0)
    means, ses = [], []
    for k in (1, 5, 50):
        iwae = _method("iwae", model, k=k)
        bound = torch.stack([iwae.bound(x).detach().sum() for _ in range(400)])
        means.append(bound.mean())
        ses.append(bound.std() / 400**0.5)
    for i in range(2):
        assert means[i] + 3 * (ses[i] + ses[i + 1]) < means[i + 1], (means, ses)
    assert means[-1] < exact, (means, exact)


def test_analytic_kl_elbo_equals_closed_form_elbo():
    """AEVB's estimator B (closed-form KL) and estimator A (mean log w) against the ELBO in closed
    form: E_q log N(x; W z + b, s^2 I) - KL(q || N(0, I))."""
    model, x = ppca(), _x()
    q = encoder(model, x)
    w, b, s = model.data.w[0], model.data.b[0], model.data.sigma
    mu, var = q.loc[0], q.scale[0] ** 2
    resid = x[0] - mu @ w.T - b
    expected_ll = (-0.5 * w.shape[0] * math.log(2 * math.pi * s**2)
                   - ((resid**2).sum(-1) + (var * (w**2).sum(0)).sum(-1)) / (2 * s**2))
    kl = 0.5 * (var + mu**2 - 1 - var.log()).sum(-1)
    closed = (expected_ll - kl).detach()
    torch.manual_seed(0)
    b_est, b_se = _repeat(lambda: model.elbo_analytic_kl(x, 10)[0].detach(), 400)
    a_est, a_se = _repeat(lambda: model.log_weights(x, 10).mean(1)[0].detach(), 400)
    assert torch.all((b_est - closed).abs() < 4 * b_se + 1e-9)
    assert torch.all((a_est - closed).abs() < 4 * a_se + 1e-9)
    torch.testing.assert_close(model.kl(x)[0], kl)


# --------------------------------------------------------------------------- methods
def _method(name: str, model: nn.Module, **overrides):
    cls = get_method(name)
    return cls(model, **{**cls.defaults, **overrides})


def test_iwae_with_k1_is_the_vae_bound():
    """Same samples -> the same bound and the same gradient (IWAE k=1 = VAE k=1, sampled KL)."""
    x = (torch.rand(2, 7, 12, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    results = []
    for name, extra in (("iwae", {}), ("vae", {"kl": "sampled"})):
        model = VAE([12, 3], [[8]], seeds=[0, 1]).double()
        method = _method(name, model, k=1, **extra)
        torch.manual_seed(3)
        bound = method.bound(x)
        grads = torch.autograd.grad(bound.sum(), list(model.parameters()))
        results.append((bound.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_iwae_gradient_is_the_normalised_weights_estimator():
    """grad L_k = sum_k w~_k grad log w_k with w~ held constant (Burda et al., eq. 14); the VAE's
    k-sample gradient (uniform weights) differs, which shows the comparison can fail."""
    x = (torch.rand(1, 5, 12, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    model = VAE([12, 3], [[8]], seeds=[0]).double()
    params = list(model.parameters())
    torch.manual_seed(4)
    g_iwae = torch.autograd.grad(_method("iwae", model, k=7).bound(x).sum(), params)
    torch.manual_seed(4)
    lw = model.log_weights(x, 7)
    g_ref = torch.autograd.grad((torch.softmax(lw, 1).detach() * lw).sum(), params)
    torch.manual_seed(4)
    g_vae = torch.autograd.grad(model.log_weights(x, 7).mean(1).sum(), params)
    for a, b in zip(g_iwae, g_ref):
        torch.testing.assert_close(a, b)
    assert max((a - b).abs().max() for a, b in zip(g_iwae, g_vae)) > 1e-3


@pytest.mark.parametrize("name", ["vae", "ws_continuous"])
def test_training_q_with_p_fixed_recovers_the_exact_posterior(name):
    """With p frozen, the VAE step (max ELBO) and wake-sleep's sleep phase (min KL(p(z|x) || q) over
    fantasies) both drive the encoder to the exact posterior, which q's family contains: the mean
    KL(q(z|x) || p(z|x)) over data from p falls from > 1 nat to < 0.03 (Adam's noise floor at lr 0.02)."""
    model = ppca(seed=2)
    exact = copy.deepcopy(model)
    set_exact_posterior(exact)
    model.data.requires_grad_(False)
    torch.manual_seed(0)
    x_test, _ = model.sample_p(2000)

    def kl_to_posterior() -> float:
        with torch.no_grad():
            return torch.distributions.kl_divergence(encoder(model, x_test), encoder(exact, x_test)).sum(-1).mean().item()

    assert kl_to_posterior() > 1.0
    method = _method(name, model, lr=0.02)
    for _ in range(2000):
        x, _ = model.sample_p(128)
        method.step(x.detach())
    assert kl_to_posterior() < 0.03


def test_iwae_schedule_follows_the_official_checkpoints():
    """yburda/iwae checkpoint1to8: for i = 1..8, 3^(i-1) epochs at 1e-4 * round(10^(1 - (i-1)/7), 1)."""
    start = 0
    for i in range(1, 9):
        expected = 1e-4 * round(10.0 ** (1 - (i - 1) / 7.0), 1)
        for epoch in (start, start + 3 ** (i - 1) - 0.5):
            assert iwae_learning_rate(1e-3, epoch) == pytest.approx(expected), (i, epoch)
        start += 3 ** (i - 1)
    assert start == 3280 and iwae_learning_rate(1e-3, 5000) == pytest.approx(1e-4)


def test_ascent_step_sets_the_iwae_rate_and_decays_only_the_given_parameters():
    """ascent_step: lr from the IWAE schedule at examples / epoch_size, then one SGD step up
    objective - weight_decay * B/2 * ||theta||^2 per replica, the prior on `decayed` only."""
    theta = nn.Parameter(torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64))  # (R, 2): decayed
    phi = nn.Parameter(torch.tensor([[0.5], [-1.0]], dtype=torch.float64))  # (R, 1): not decayed
    opt = torch.optim.SGD([theta, phi], lr=123.0)
    objective = (theta.sum(1) * phi[:, 0]) * 4  # (R,), e.g. a sum over B = 4 examples
    lr, wd, b = 1e-3, 0.1, 4
    rate = iwae_learning_rate(lr, 100 / 40)  # 2.5 epochs: stage 1
    assert rate == pytest.approx(7.2e-4)  # 1e-4 * round(10^(6/7), 1)
    expected_theta = theta.detach() + rate * (4 * phi.detach() - wd * b * theta.detach())
    expected_phi = phi.detach() + rate * 4 * theta.detach().sum(1, keepdim=True)
    ascent_step(opt, objective, b, lr=lr, schedule="iwae", examples=100, epoch_size=40, weight_decay=wd,
                decayed=[theta])
    assert opt.param_groups[0]["lr"] == rate
    torch.testing.assert_close(theta.detach(), expected_theta)
    torch.testing.assert_close(phi.detach(), expected_phi)


@pytest.mark.parametrize("name", ["vae", "iwae", "dlgm", "ws_continuous"])
def test_schedule_hyper_parameters_are_validated(name):
    model = (DLGM if name == "dlgm" else VAE)([10, 3], [[6]], seeds=[0])
    with pytest.raises(ConfigError, match="schedule 'cosine'"):
        _method(name, model, schedule="cosine")
    with pytest.raises(ConfigError, match="needs epoch_size"):
        _method(name, model, schedule="iwae")
    _method(name, model, schedule="iwae", epoch_size=100)


def test_replicas_do_not_interact():
    """Changing replica 1's data leaves replica 0's update untouched, for every method."""
    x = (torch.rand(2, 6, 10, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    x2 = x.clone()
    x2[1] = 1 - x2[1]
    cases = [("vae", VAE([10, 3, 2], [[6], [4]], seeds=[0, 1]), {"kl": "sampled"}),
             ("iwae", VAE([10, 3], [[6]], seeds=[0, 1]), {}),
             ("ws_continuous", VAE([10, 3], [[6]], seeds=[0, 1]), {}),
             ("dlgm", DLGM([10, 3, 2], [[6], [4]], seeds=[0, 1]), {})]
    for name, model, extra in cases:
        updates = []
        for data in (x, x2):
            m = copy.deepcopy(model).double()
            method = _method(name, m, **extra)
            torch.manual_seed(5)
            method.step(data)
            updates.append([p.detach()[0].clone() for p in m.parameters()])
        for a, b in zip(*updates):
            torch.testing.assert_close(a, b, msg=lambda s: f"{name}: {s}")


# --------------------------------------------------------------------------- quadrature (real models)
def _perturbed(model: nn.Module, scale: float, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def test_vae_is_estimate_converges_to_quadrature():
    """A Bernoulli VAE with one latent unit: log p(x) = log int p(x | z) N(z; 0, 1) dz on a fine grid."""
    model = _perturbed(VAE([6, 1], [[5]], seeds=[0]).double(), 0.5, 0)
    x = (torch.rand(1, 4, 6, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    z = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    with torch.no_grad():
        log_joint = model.log_joint(x, [z.view(1, -1, 1, 1).expand(1, -1, 4, 1)])  # (1, Z, B)
    exact = torch.logsumexp(log_joint, dim=1)[0] + math.log(z[1] - z[0])
    torch.manual_seed(0)
    mean, se = _repeat(lambda: importance_log_likelihood(model.log_weights, x, 2000)[0], 20)
    assert torch.all((mean - exact).abs() < 4 * se + 2e-3), (mean, exact, se)


@pytest.mark.parametrize("layers, hidden", [([5, 2], [[4]]), ([5, 1, 1], [[4], [3]])])
def test_dlgm_is_estimate_converges_to_quadrature(layers, hidden):
    """DLGMs with two latent units in total, 2-D quadrature over xi: one layer of two units (a full
    2x2 rank-one-plus-diagonal q covariance and G), and two layers of one unit (T_1, the hierarchy)."""
    model = _perturbed(DLGM(layers, hidden, seeds=[0]).double(), 0.5, 2)
    x = (torch.rand(1, 3, 5, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    grid = torch.linspace(-9, 9, 901, dtype=torch.float64)
    xi = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(1, -1, 1, 2).expand(1, -1, 3, 2)
    zs = [xi] if len(layers) == 2 else list(xi.split(1, dim=-1))
    with torch.no_grad():
        exact = torch.logsumexp(model.log_joint(x, zs), dim=1)[0] + 2 * math.log(grid[1] - grid[0])
    torch.manual_seed(0)
    mean, se = _repeat(lambda: importance_log_likelihood(model.log_weights, x, 2000)[0], 20)
    assert torch.all((mean - exact).abs() < 4 * se + 2e-3), (mean, exact, se)
    kl_elbo, kl_se = _repeat(lambda: model.elbo_analytic_kl(x, 50)[0].detach(), 100)
    mc_elbo, mc_se = _repeat(lambda: model.log_weights(x, 50).mean(1)[0].detach(), 100)
    assert torch.all((kl_elbo - mc_elbo).abs() < 4 * (kl_se + mc_se))


# --------------------------------------------------------------------------- analyses
def test_output_bias_starts_at_the_data_mean():
    """IWAE's initialisation: logit of the training mean, clipped to [0.001, 0.999]."""
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    model = VAE([3, 2], [[4]], seeds=[0, 1], output_bias="data_mean")
    model.initialize_from_data(x)
    expected = torch.logit(torch.tensor([0.999, 0.001, 0.5]))
    torch.testing.assert_close(model.data.head.bias, expected.expand(2, 3))
    untouched = VAE([3, 2], [[4]], seeds=[0, 1])
    untouched.initialize_from_data(x)
    assert untouched.data.head.bias.abs().max() == 0


def test_active_units_counts_known_dead_units():
    """Units whose posterior mean does not vary with x (weights zeroed) or varies with variance
    below 0.01 are inactive; the others are active."""
    model = VAE([8, 6], [[]], seeds=[0, 1]).double()
    x = torch.randn(2, 500, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        w = model.q[0].mean.weight
        w.zero_()
        w[:, 1, 0] = 1.0  # variance 1
        w[:, 3, 2] = 0.5  # variance 0.25
        w[:, 4, 5] = 0.3  # variance 0.09
        w[:, 5, 6] = 0.05  # variance 0.0025 < 0.01: inactive
    torch.testing.assert_close(workload_for("vae").metrics(model, None, x, 1, None)["active_units"], torch.tensor([3.0, 3.0], dtype=torch.float64))
    means = torch.zeros(1, 1000, 4, dtype=torch.float64)
    means[0, :, 0] = torch.linspace(-1, 1, 1000)
    assert active_units(means).item() == 1


def test_amortization_gaps_match_closed_forms():
    """On PPCA the exact posterior is a factorised Gaussian: the approximation gap is 0 and the
    amortization gap is KL(q || p(z | x)), in closed form, for an encoder moved off the posterior."""
    model, x = ppca(), _x(n=6)
    set_exact_posterior(model)
    post = encoder(model, x)
    with torch.no_grad():
        model.q[0].mean.bias.add_(0.4)
        model.q[0].log_sigma.bias.add_(-0.3)
    q = encoder(model, x)
    kl = torch.distributions.kl_divergence(q, post).sum(-1).mean(1)
    torch.manual_seed(0)
    gaps = amortization_gaps(model, x, k=2000, steps=3000, lr=0.01, draws=4000)
    assert abs(gaps["gap_approximation"].item()) < 0.02, gaps
    assert abs(gaps["gap_amortization"].item() - kl.item()) < 0.03, (gaps, kl)
