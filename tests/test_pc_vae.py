"""Predictive-coding VAE training (methods/pc_vae.py; Pinchetti et al. 2022, the research notes
section 10, PC-3).

References: autograd of backprop's loss (the negative single-draw ELBO with the same draw) for the
weight update at the inference fixed point, torch.distributions' Gaussian KL for the KL energy, a
closed-form energy at the feed-forward pass; seeds alone vs beside others; a pickled method resumed
vs an uninterrupted one."""

from __future__ import annotations

import io

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from bench.core.errors import ConfigError
from bench.models.vae import VAE, standard_normal_kl
from bench.nn import noise
from methods.pc_vae import PCVAE, gaussian_kl


def _vae(seeds: list[int], layers=(8, 2)) -> VAE:
    hidden = [[6]] * (len(layers) - 1)
    return VAE(list(layers), hidden, seeds, activation="tanh", likelihood="bernoulli").double()


def _data(replicas: int, n: int = 16, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(n, d, generator=g, dtype=torch.float64) < 0.4).double()
    return x.expand(replicas, -1, -1).contiguous()


def _flat_grad(model: VAE) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _pc_and_bp_gradients(iterations: int, precision: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(PC_F_KL's weight gradient after `iterations` inference steps, backprop's gradient of the
    negative ELBO with the same draw eps), on one replica in float64."""
    model, x = _vae([0]), _data(1)
    method = PCVAE(model, energy="kl", iterations=iterations, lr_x=0.05, precision=precision)
    eps = noise.randn((1, x.shape[1], 2), x)
    mean, log_sigma = model.q[0](x)
    m, s = method.infer(x, mean, log_sigma, eps)
    model.zero_grad()
    method.free_energy(x, m, s, mean, log_sigma, eps).sum().backward()
    pc = _flat_grad(model)
    model.zero_grad()
    mean, log_sigma = model.q[0](x)
    z = (mean + log_sigma.exp() * eps).unsqueeze(1)
    elbo = model.data.log_prob(x, z)[:, 0] - standard_normal_kl(mean, log_sigma)
    (-elbo.sum()).backward()
    return pc, _flat_grad(model)


def _cosine(iterations: int, precision: float) -> float:
    with noise.replica_noise([0], "cpu"):  # the same model, data and draw eps in every call
        pc, bp = _pc_and_bp_gradients(iterations, precision)
    return torch.nn.functional.cosine_similarity(pc, bp, dim=0).item()


def test_the_pc_weight_update_converges_to_the_backprop_gradient():
    """PC-3: at T = 0 the encoder gets nothing; as T grows (lr_x 0.05) the update turns towards
    backprop's, and at the fixed point of a precise node (small errors) it is backprop's."""
    cosines = [_cosine(t, precision=100.0) for t in (0, 5, 50, 2000)]
    assert cosines[0] < 0.9 and cosines == sorted(cosines), cosines
    assert cosines[-1] > 0.999, cosines
    assert _cosine(2000, precision=1.0) < 0.99  # the paper's unit weighting: another update


def test_the_fixed_point_is_stationary_and_lowers_the_energy():
    with noise.replica_noise([0], "cpu"):
        model, x = _vae([0]), _data(1)
        method = PCVAE(model, energy="kl", iterations=2000, lr_x=0.5)
        eps = noise.randn((1, x.shape[1], 2), x)
        mean, log_sigma = (t.detach() for t in model.q[0](x))
        m, s = method.infer(x, mean, log_sigma, eps)
        m.requires_grad_(True)
        s.requires_grad_(True)
        energy = method.free_energy(x, m, s, mean, log_sigma, eps)
        grads = torch.autograd.grad(energy.sum(), (m, s))
        start = method.free_energy(x, mean, log_sigma, mean, log_sigma, eps)
    assert max(g.abs().max().item() for g in grads) < 1e-8
    assert (energy.detach() < start).all()


def test_the_kl_energy_of_two_gaussians_is_torch_distributions_kl():
    g = torch.Generator().manual_seed(0)
    m, s, mp, sp = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) for _ in range(4))
    expected = kl_divergence(Normal(m, s.exp()), Normal(mp, sp.exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(m, s, mp, sp), expected)
    torch.testing.assert_close(gaussian_kl(m, s, torch.zeros(()), torch.zeros(())), standard_normal_kl(m, s))


@pytest.mark.parametrize("energy", ["kl", "gaussian"])
def test_at_the_feed_forward_pass_the_energy_is_the_negative_elbo_or_the_squared_errors(energy):
    """With the node at its prediction, F_KL = -(log p(x | z) - KL(q || p)) and F = KL(q || p) +
    |x - x_hat|^2 / 2, both written out here."""
    with noise.replica_noise([0], "cpu"):
        model, x = _vae([0]), _data(1)
        method = PCVAE(model, energy=energy)
        eps = noise.randn((1, x.shape[1], 2), x)
        with torch.no_grad():
            mean, log_sigma = model.q[0](x)
            z = mean + log_sigma.exp() * eps
            f = model.data.trunk(z)
            logits = model.data.head(f)
            kl = standard_normal_kl(mean, log_sigma)
            nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            squared = 0.5 * (x - torch.sigmoid(logits)).square().sum(-1)
            expected = kl + (nll if energy == "kl" else squared)
            got = method.free_energy(x, mean, log_sigma, mean, log_sigma, eps)
    torch.testing.assert_close(got, expected)


def test_a_deeper_model_is_refused():
    with pytest.raises(ConfigError, match="one stochastic layer"):
        PCVAE(_vae([0], layers=(8, 4, 2)))


# ----------------------------------------------------------------------------- replicas and checkpoints
def _train(energy: str, seeds: list[int], steps: int, state: bytes | None = None):
    """(per-replica energies of `steps` steps, the state pickled after them), from a fresh method
    or from a pickled `state`."""
    x = _data(len(seeds))
    with noise.replica_noise(seeds, "cpu"):
        if state is None:
            method = PCVAE(_vae(seeds), energy=energy, iterations=3, lr=0.01)
        else:
            saved = torch.load(io.BytesIO(state), weights_only=False)
            method = saved["method"]
            noise.set_states(saved["noise"])
        energies = torch.stack([method.step(x)["energy"] for _ in range(steps)])
        buffer = io.BytesIO()
        torch.save({"method": method, "noise": noise.states()}, buffer)
        return energies, buffer.getvalue()


@pytest.mark.parametrize("energy", ["kl", "gaussian"])
def test_a_seed_alone_trains_as_beside_other_seeds(energy):
    together, _ = _train(energy, [0, 1, 2], 4)
    alone, _ = _train(energy, [1], 4)
    torch.testing.assert_close(together[:, 1:2], alone, rtol=1e-7, atol=1e-9)
    assert not torch.equal(together[:, 0], together[:, 1])


@pytest.mark.parametrize("energy", ["kl", "gaussian"])
def test_a_pickled_method_resumes_to_the_same_numbers(energy):
    whole, _ = _train(energy, [0, 1], 6)
    _, state = _train(energy, [0, 1], 3)
    resumed, _ = _train(energy, [0, 1], 3, state)
    assert torch.equal(whole[3:], resumed)
