"""The VAE slice of variational Gibbs inference (methods/vgi.py, methods/mean_imputation.py and
methods/miwae.py on the ``vae`` family, bench/workloads/incomplete_data.py, the VAE workload on a split
with missing values) against independent references: numerical quadrature over a one-dimensional
latent (the observed values' likelihood p(x_o) = int p(z) prod_{j observed} p(x_j | z) dz, for
Gaussian and Bernoulli decoders), the closed-form conditional that VGI's variational conditionals
reach when the VAE's bound is the complete-data density they read (a fixed N(0, 1) encoder: the
ELBO's conditional of x_j is N(E_z[mu_j(z)], sigma_j^2), E_z by quadrature), numpy's observed means,
and the masked values never reaching a loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_blind_to_hidden_values

from bench.core.missing import mcar
from bench.engine.methods import get_method
from bench.estimators.importance import importance_log_likelihood
from bench.models.vae import VAE
from bench.workloads import workload_for
from bench.workloads.incomplete_data import observed_log_weights

GRID = torch.linspace(-9.0, 9.0, 6001)  # quadrature nodes of the one-dimensional latent


def tiny_vae(likelihood: str, seed: int = 3, d: int = 4) -> VAE:
    torch.manual_seed(seed)
    return VAE([d, 1], [[6]], [seed], likelihood=likelihood)


def quadrature_log_likelihood(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x_o) per example of x (1, B, D) (NaN = missing) by the trapezoid-free Riemann sum over
    GRID of p(z) prod_{j observed} p(x_j | z), written from the decoder's outputs: (1, B) float64."""
    z = GRID.reshape(1, -1, 1, 1).expand(1, -1, x.shape[1], 1)
    with torch.no_grad():
        a, log_var = model.data._params(z)
    a, xx = a.double(), x.unsqueeze(1).double()
    if log_var is None:
        per_value = xx * a - torch.nn.functional.softplus(a)
    else:
        log_var = log_var.double()
        per_value = -0.5 * ((xx - a).square() / log_var.exp() + log_var + math.log(2 * math.pi))
    data = torch.where(torch.isfinite(xx), per_value, 0.0).sum(-1)  # (1, G, B)
    prior = -0.5 * GRID.double().square() - 0.5 * math.log(2 * math.pi)
    step = float(GRID[1] - GRID[0])
    return (data + prior.reshape(1, -1, 1)).logsumexp(1) + math.log(step)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_observed_log_weights_estimate_the_observed_likelihood(likelihood):
    """The importance-sampling estimate with the encoder on zero-filled data, K = 20000, against
    quadrature; one example complete, the others with one and two values missing. The encoder's
    sigma is held at 1.5 (its mean still reads x): wider than the prior, so the weights are bounded
    and K = 20000 pins the estimate (a narrower q's heavy-tailed weights need K in the millions)."""
    model = tiny_vae(likelihood)
    with torch.no_grad():
        model.q[0].log_sigma.weight.zero_()
        model.q[0].log_sigma.bias.fill_(math.log(1.5))
    x = torch.rand(1, 3, 4, generator=torch.Generator().manual_seed(0))
    if likelihood == "bernoulli":
        x = (x > 0.5).float()
    x[0, 1, 1] = float("nan")
    x[0, 2, [0, 2]] = float("nan")
    torch.manual_seed(1)
    with torch.no_grad():
        estimate = importance_log_likelihood(lambda xs, k: observed_log_weights(model, xs, k), x, 20000)
    exact = quadrature_log_likelihood(model, x)
    torch.testing.assert_close(estimate, exact, rtol=0, atol=0.03)
    # dropping a value changes the answer: the estimate is of the observed values, not of a filled-in x
    assert (exact[0, 1:] - quadrature_log_likelihood(model, x.nan_to_num(0.0))[0, 1:]).abs().min() > 0.1


def test_the_vae_workload_scores_an_incomplete_split_by_the_observed_likelihood_and_a_complete_one_as_before():
    model = tiny_vae("gaussian")
    x = torch.rand(1, 5, 4, generator=torch.Generator().manual_seed(2))
    holed = torch.where(torch.as_tensor(mcar((5, 4), 0.5, seed=3)), torch.nan, x)
    method = get_method("vae")(model)
    workload = workload_for("vae")
    torch.manual_seed(4)
    got = workload.metrics(model, method, holed, 20000, None)
    assert got["ll"].isfinite().all() and got["elbo"].isfinite().all() and got["elbo"] <= got["ll"] + 0.05
    torch.testing.assert_close(got["ll"], quadrature_log_likelihood(model, holed).mean(1), rtol=0, atol=0.03)
    torch.manual_seed(5)
    complete = workload.metrics(model, method, x, 100, None)
    torch.manual_seed(5)
    with torch.no_grad():
        before = importance_log_likelihood(model.log_weights, x, 100).mean(1)
    torch.testing.assert_close(complete["ll"], before, rtol=0, atol=0)


def fixed_encoder_vae(d: int) -> VAE:
    """A VAE whose encoder is N(0, 1) whatever x (the mean and log sigma heads are zero), so its
    analytic KL is 0 and its ELBO of x the one-sample log p(x | z), z ~ N(0, 1); the decoder's
    log-variances are constants (their head reads nothing)."""
    model = tiny_vae("gaussian", seed=7, d=d)
    with torch.no_grad():
        for head in (model.q[0].mean, model.q[0].log_sigma):
            head.weight.zero_()
            head.bias.zero_()
        model.data.log_var.weight.zero_()
        model.data.log_var.bias.copy_(torch.tensor([[-3.0, -2.0, -2.5][:d]]))
        model.data.head.weight.mul_(3.0)  # a decoder mean that moves with z
        model.data.head.bias.copy_(torch.tensor([[-1.0, 0.3, 1.0][:d]]))  # and differs between the values
    return model


def test_vgi_conditionals_and_chains_reach_the_elbo_conditional_of_a_vae():
    """With the VAE held fixed (lr = 0) and its encoder N(0, 1), VGI's bound reads the ELBO
    E_z[log p(x | z)] + const, whose conditional of x_j is N(E_z[mu_j(z)], sigma_j^2) (the square
    completes in x_j; E_z by quadrature over the decoder, independently of the method). VGI's
    q(x_j | x_-j) must reach it, and its Gibbs chains must sample it: the chains' average and variance
    of the missing values."""
    d, n = 3, 200
    model = fixed_encoder_vae(d)
    with torch.no_grad():
        a, log_var = model.data._params(GRID.reshape(1, -1, 1, 1))
    weights = torch.exp(-0.5 * GRID.double().square())
    weights = weights / weights.sum()
    mean = (a[0, :, 0].double() * weights[:, None]).sum(0)  # E_z[mu_j(z)], (D,)
    variance = log_var[0, 0, 0].double().exp()  # sigma_j^2, (D,)
    assert float(mean.max() - mean.min()) > 0.05  # the values differ, so a mixed-up j would show
    rng = np.random.default_rng(1)
    x = rng.normal(mean.numpy(), variance.sqrt().numpy(), size=(n, d)).astype(np.float32)  # data the model fits
    holed = torch.as_tensor(np.where(mcar(x.shape, 0.5, seed=2), np.nan, x)).unsqueeze(0)
    model.initialize_from_data(holed[0])  # the observed moments, as the workload's prepare sets them
    torch.manual_seed(0)
    vgi = get_method("vgi")(model, lr=0.0, lr_q=0.01, copies=4, hidden=16, delay=50)
    vgi.prepare(n)
    for t in range(700):
        if t == 500:
            vgi.opt_q.param_groups[0]["lr"] = 0.001
        vgi.step(holed)
    assert vgi.pool.dtype == torch.float32  # the VAE's own dtype
    points = rng.normal(mean.numpy(), variance.sqrt().numpy(), size=(300, d)).astype(np.float32)
    points = torch.as_tensor(points).unsqueeze(0)
    for j in range(d):
        dims = torch.full((1, 300), j)
        with torch.no_grad():
            q_mean, q_var = vgi.conditional(points, torch.nn.functional.one_hot(dims, d).bool(), dims)
        sd = float(variance[j].sqrt())
        assert float((q_mean[0].double() - mean[j]).square().mean().sqrt()) < 0.15 * sd
        assert float(q_var[0].median()) == pytest.approx(float(variance[j]), rel=0.2)
    sweeps = 300
    total = torch.zeros_like(vgi.pool, dtype=torch.float64)
    squares = torch.zeros_like(total)
    for _ in range(sweeps):
        vgi.gibbs(4)
        total += vgi.pool.double()
        squares += vgi.pool.double().square()
    missing = vgi.missing.expand_as(vgi.pool)[0]
    for j in range(d):
        cells = missing[..., j]
        average = (total[0, ..., j][cells] / sweeps).mean()
        spread = (squares[0, ..., j][cells] / sweeps).mean() - (total[0, ..., j][cells] / sweeps).square().mean()
        assert float(average) == pytest.approx(float(mean[j]), abs=0.1 * float(variance[j].sqrt()))
        assert float(spread) == pytest.approx(float(variance[j]), rel=0.2)


def test_mean_imputation_of_a_vae_fits_its_elbo_on_the_observed_means():
    """The step's objective is the VAE's ELBO of the training set with each missing value at that
    value's observed training mean (numpy's nanmean), the same draw of z."""
    model = tiny_vae("gaussian")
    rng = np.random.default_rng(0)
    x = rng.random((30, 4)).astype(np.float32)
    holed = np.where(mcar(x.shape, 0.5, seed=1), np.nan, x)
    completed = torch.as_tensor(np.where(np.isnan(holed), np.nanmean(holed, 0), holed)).unsqueeze(0)
    with torch.no_grad():
        torch.manual_seed(2)
        want = model.elbo_analytic_kl(completed.float(), 1).mean(1)
    model.initialize_from_data(torch.as_tensor(holed))  # as the workload's prepare does
    method = get_method("mean_imputation")(model)
    method.prepare(30)
    torch.manual_seed(2)
    got = method.step(torch.as_tensor(holed).unsqueeze(0))["ll_imputed"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_masked_values_never_reach_a_vae_loss():
    """Data sets that differ only at the masked entries give the same step outputs and parameters for
    VGI, MIWAE and mean imputation on a VAE; one that differs at an observed entry does not."""
    n, d = 30, 4
    rng = np.random.default_rng(0)
    x = rng.random((n, d)).astype(np.float32)
    mask = mcar((n, d), 0.5, seed=1)
    other = np.where(mask, rng.random((n, d)).astype(np.float32) * 100, x)
    moved = x.copy()
    moved[tuple(np.argwhere(~mask)[0])] += 0.5

    def outputs(complete: np.ndarray, name: str) -> tuple[dict, list]:
        model = tiny_vae("gaussian", d=d)
        holed = torch.as_tensor(np.where(mask, np.nan, complete)).unsqueeze(0)
        model.initialize_from_data(holed[0])
        torch.manual_seed(0)
        method = get_method(name)(model, **({"delay": 1} if name == "vgi" else {}))
        method.prepare(n)
        steps = [method.step(holed) for _ in range(3)]
        return steps[-1], [p.detach().clone() for p in model.parameters()]

    assert_blind_to_hidden_values(outputs, x, other, moved, ("vgi", "miwae", "mean_imputation"))


def test_miwae_bound_is_the_observed_likelihood_as_k_grows_and_refuses_a_bad_k():
    model = tiny_vae("gaussian")
    x = torch.rand(1, 3, 4, generator=torch.Generator().manual_seed(0))
    x[0, 0, 2] = float("nan")
    exact = quadrature_log_likelihood(model, x)
    bounds = {}
    for k in (1, 5000):
        method = get_method("miwae")(model, k=k)
        torch.manual_seed(1)
        repeats = 40000 // k
        with torch.no_grad():
            bounds[k] = method.bound(x.repeat(1, repeats, 1)).reshape(1, repeats, 3).mean(1).double()
    assert (bounds[1] < exact + 0.005).all() and (exact - bounds[1]).max() > 0.05  # the MVAE's ELBO: below
    torch.testing.assert_close(bounds[5000], exact, rtol=0, atol=0.03)
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="integer >= 1"):
            get_method("miwae")(model, k=k)
