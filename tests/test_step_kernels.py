"""The per-step shortcuts of the latent-variable models (issue 15) compute what the plain forms do,
in float64, against torch.distributions and the two-pass forms they replace:

* bernoulli_log_prob with broadcasting = torch's Bernoulli log-density;
* HelmholtzMachine.sample_q's one pass (bottom layer once per example) draws the samples of
  sampling each layer's K*B rows in turn, and its log q and gradient are those of log_q(state);
* the VAE's written-out Gaussian densities and KL = torch's Normal and kl_divergence, values and
  gradients; the one-encoding analytic-KL ELBO = the two-encoding one on the same draws (VAE, DLGM);
* the fused optimizers (bench.nn.optim) = torch's default implementation of the same rule;
* replica_affine (every SBN and VAE layer) = autograd's baddbmm, values and gradients, with the
  weight's gradient contiguous like the weight (no copy in a fused optimizer step).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from bench.models.dlgm import DLGM
from bench.models.helmholtz import HelmholtzMachine
from bench.models.vae import VAE
from bench.nn import noise
from bench.nn.bernoulli import bernoulli_log_prob, sample_bernoulli
from bench.nn.linear import replica_affine
from bench.nn.optim import ascent_step, make_optimizer

SEEDS = [3, 8]


def _grads(value: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value.sum(), params, retain_graph=True, allow_unused=True,
                                    materialize_grads=True))


def _binary(*shape: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < 0.4).double()


def test_bernoulli_log_prob_broadcasts_like_torchs_bernoulli():
    y = _binary(2, 4, 3, 6)
    logits = (5 * torch.randn(2, 1, 3, 6, dtype=torch.float64)).requires_grad_(True)
    ours = bernoulli_log_prob(y, logits)
    ref = Bernoulli(logits=logits.expand_as(y)).log_prob(y).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_grads(ours, [logits]), _grads(ref, [logits]), rtol=1e-12, atol=1e-12)


def _two_pass_sample_q(model: HelmholtzMachine, x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The reference draws: x tiled to K*B rows, then each layer's rows sampled in turn."""
    state = [x.repeat(1, k, 1)]
    with torch.no_grad():
        for layer in model.recognition:
            state.append(sample_bernoulli(layer.logits(state[-1])))
    return state


def test_one_pass_sample_q_draws_the_layerwise_samples_and_scores_them_with_gradients():
    torch.manual_seed(0)
    model = HelmholtzMachine([7, 5, 4, 3], seeds=SEEDS, init="glorot_normal", bias=0.0).double()
    x, k = _binary(2, 3, 7), 4
    with noise.replica_noise(SEEDS, "cpu"):
        state, log_q = model.sample_q(x, k)
    with noise.replica_noise(SEEDS, "cpu"):
        ref_state = _two_pass_sample_q(model, x, k)
    for ours, ref in zip(state, ref_state, strict=True):
        assert torch.equal(ours, ref)
        assert not ours.requires_grad
    ref = model.log_q(ref_state)
    torch.testing.assert_close(log_q, ref, rtol=1e-12, atol=1e-12)
    params = model.q_parameters()
    torch.testing.assert_close(_grads(log_q, params), _grads(ref, params), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert not model.sample_q(x, k)[1].requires_grad


def _normal_log_q(model: VAE, x: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
    """log q(zs | x) from torch.distributions.Normal."""
    out, h = 0.0, x.unsqueeze(1)
    for layer, z in zip(model.q, zs):
        mean, log_sigma = layer(h)
        out, h = out + Normal(mean, log_sigma.exp()).log_prob(z).sum(-1), z
    return out


def test_vae_densities_equal_torch_normal_values_and_gradients():
    model = VAE([6, 3, 2], [[5], [4]], seeds=SEEDS).double()
    x, k = _binary(2, 4, 6), 3
    params = list(model.parameters())
    torch.manual_seed(1)
    zs, log_q = model.sample_q(x, k)  # reparameterised: zs depend on the parameters
    ref = _normal_log_q(model, x, zs)
    torch.testing.assert_close(log_q, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_grads(log_q, params), _grads(ref, params), rtol=1e-10, atol=1e-12)
    detached = [z.detach() for z in zs]
    torch.testing.assert_close(model.log_q(x, detached), _normal_log_q(model, x, detached), rtol=1e-12, atol=1e-12)
    prior = Normal(0.0, 1.0).log_prob(detached[1]).sum(-1)
    mean, log_sigma = model.p[0](detached[1])
    prior = prior + Normal(mean, log_sigma.exp()).log_prob(detached[0]).sum(-1)
    torch.testing.assert_close(model.log_prior(detached), prior, rtol=1e-12, atol=1e-12)


def test_one_encoding_analytic_kl_elbo_equals_two_encodings_on_the_same_draws():
    x, k = _binary(2, 4, 6), 3
    for model in (VAE([6, 3], [[5]], seeds=SEEDS).double(), DLGM([6, 3, 2], [[5], [4]], seeds=SEEDS).double()):
        params = list(model.parameters())
        torch.manual_seed(2)
        elbo = model.elbo_analytic_kl(x, k)
        torch.manual_seed(2)
        zs, _ = model.sample_q(x, k)
        ref = model.data.log_prob(x, model.decoder_input(zs)).mean(1) - model.kl(x)
        torch.testing.assert_close(elbo, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(_grads(elbo, params), _grads(ref, params), rtol=1e-10, atol=1e-12)
    model = VAE([6, 3], [[5]], seeds=SEEDS).double()
    mean, log_sigma = model.q[0](x)
    ref = kl_divergence(Normal(mean, log_sigma.exp()), Normal(torch.zeros_like(mean), torch.ones_like(mean))).sum(-1)
    torch.testing.assert_close(model.kl(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, reference", [
    ("momentum_ema", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.95, dampening=0.95, fused=False)),
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.5, fused=False)),
    ("adam", lambda ps: torch.optim.Adam(ps, lr=0.1, betas=(0.99, 0.999), eps=1e-4, fused=False)),
    ("adagrad", lambda ps: torch.optim.Adagrad(ps, lr=0.1, eps=1e-4, fused=False)),
])
def test_fused_optimizers_make_torchs_default_update(name, reference):
    """Five steps from the same gradients, one parameter without a gradient on some steps (a sleep
    update touches q only): the same parameters to float64 rounding, and they moved."""
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(2, 5, 4, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g, dtype=torch.float64)]
    ours, ref = ([torch.nn.Parameter(t.clone()) for t in start] for _ in range(2))
    opt = make_optimizer(ours, name, 0.1, beta1=0.99, eps=1e-4, momentum=0.5)
    assert opt.defaults["fused"]
    ref_opt = reference(ref)
    for step in range(5):
        grads = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in start]
        for params in (ours, ref):
            for p, grad in zip(params, grads):
                p.grad = None if (step % 2 and p.dim() == 2) else grad.clone()
        opt.step()
        ref_opt.step()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    assert all(not torch.equal(p, t) for p, t in zip(ours, start))


def test_linear_schedule_makes_torchs_linear_lr_update():
    """ascent_step with the 'linear' schedule over 4 updates, then 2 more: the rates are
    lr (1 - t/4), then 0, and the parameters those of torch's SGD with momentum driven by its
    LinearLR scheduler (descending the negated objective) from the same objectives, to float64
    rounding (LinearLR computes the rate recursively, so it may differ in the last bit)."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    ours, ref = (torch.nn.Parameter(start.clone()) for _ in range(2))
    opt = make_optimizer([ours], "sgd", 0.3, momentum=0.5)
    ref_opt = torch.optim.SGD([ref], lr=0.3, momentum=0.5, fused=False)
    schedule = torch.optim.lr_scheduler.LinearLR(ref_opt, 1.0, 0.0, 4)
    for t in range(6):
        c = torch.randn(start.shape, generator=g, dtype=torch.float64)
        ascent_step(opt, (ours * c).flatten(1).sum(1), 3, lr=0.3, schedule="linear", updates=t, anneal_updates=4)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.3 * max(0, 4 - t) / 4, rel=1e-15, abs=0)
        ref_opt.zero_grad()
        (-(ref * c).sum()).backward()
        ref_opt.step()
        schedule.step()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    assert not torch.equal(ours, start)


@pytest.mark.parametrize("shape", [(2, 16, 20, 10), (1, 100, 784, 200), (3, 7, 5, 9)])
def test_replica_affine_equals_autograds_baddbmm_with_a_contiguous_weight_gradient(shape):
    r, n, n_in, n_out = shape
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
               for s in ((r, n, n_in), (r, n_out, n_in), (r, n_out)))
    upstream = torch.randn(r, n, n_out, generator=g, dtype=torch.float64)
    reference = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
    ours = replica_affine(x, w, b)
    assert torch.equal(ours, reference)
    expected = torch.autograd.grad(reference, (x, w, b), upstream)
    got = torch.autograd.grad(ours, (x, w, b), upstream)
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)
    assert got[1].is_contiguous() and not expected[1].is_contiguous()
    replica_affine(x.detach(), w, b).sum().backward()  # accumulated as a fused optimizer reads it
    assert w.grad.is_contiguous()
