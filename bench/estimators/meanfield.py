"""Mean-field inference for sigmoid belief networks (Saul, Jaakkola & Jordan, JAIR 1996; Jordan,
Ghahramani, Jaakkola & Saul 1999, Sec. 6), for the generative half of a HelmholtzMachine.

Units S_i in {0, 1}, P(S_i = 1 | parents) = sigma(z_i), z_i = sum_j W_ij S_j + b_i. With a factorised
q(h) = prod_i mu_i^{h_i} (1 - mu_i)^{1 - h_i} over the hidden units (the visible units are clamped to
x, i.e. mu = x there), log p(x) is bounded below by

    L(mu, xi) = sum_{i non-top} [ (mu_i - xi_i) m_i - log( M_i(-xi_i) + M_i(1 - xi_i) ) ]
              + sum_{i top} [ mu_i b_i - softplus(b_i) ] + H(mu),

with m_i = E_q[z_i] = sum_j W_ij mu_j + b_i and M_i(t) = E_q[e^{t z_i}] = e^{t b_i} prod_j (1 - mu_j + mu_j e^{t W_ij}).
It comes from Saul et al.'s E[log(1 + e^z)] <= xi E[z] + log E[e^{-xi z} + e^{(1 - xi) z}], valid for
every xi (the E-step picks the tightest), and E_q[S_i z_i] = mu_i m_i (no unit is its own parent).
Writing lambda_j = logit(mu_j),
g_i(t) = log M_i(t) = t b_i + sum_j [log(1 - mu_j) + softplus(lambda_j + t W_ij)], so that

    g_i'(t) = b_i + sum_j W_ij rho_ij(t),   g_i''(t) = sum_j W_ij^2 rho_ij(t) (1 - rho_ij(t)),
    rho_ij(t) = sigmoid(lambda_j + t W_ij)  (parent j's mean under the tilted distribution).

The E-step (``infer``) repeats a parallel sweep (``update``) over all units:

* xi: each xi_i minimises the convex f_i(xi) = xi m_i + log(M_i(-xi) + M_i(1 - xi)), whose minimiser
  lies in [0, 1] (f_i'(0) <= 0 <= f_i'(1)): one clamped Newton step per sweep with the closed-form
  f', f'' (warm-started, so the steps accumulate over the sweeps; Saul et al. use a 1-D root-find);
* mu: the mean-field equations mu_i = sigmoid(dL/dmu_i + logit mu_i) (L minus the entropy is
  linear in mu_i except through the children's log M terms, so this is Saul et al.'s fixed point
  with their K_ij terms), in closed form, applied to all units at once with damping 1/2 (parallel
  updates can oscillate; the research notes section 8 pitfalls).

The M-step differentiates ``bound`` (autograd) in the generative parameters at the E-step's
(mu, xi); the tests check the closed-form dL/dmu against autograd of the same ``bound``.

Every tensor keeps the replica axis first: mu (R, B, n), W (R, C, P). Costs are dominated by the
(R, B, C, P) tilted tensors, one per layer and value of t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.models.helmholtz import HelmholtzMachine
from bench.nn import noise

EPS = 1e-6  # mean-field means are kept in [EPS, 1 - EPS]
DAMPING = 0.5


@dataclass
class MeanField:
    """Variational parameters for a minibatch: mu[l] for hidden layer l+1 (R, B, n_{l+1}) and xi[l]
    for the units of layer l (the visible layer is l = 0), every layer that has parents."""

    mu: list[Tensor]
    xi: list[Tensor]


def _log_mgf(parent: Tensor, weight: Tensor, bias: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """g_i(t) = log E_q[e^{t z_i}], g_i'(t) and g_i''(t), each (R, B, C), and the tilted means
    rho (R, B, C, P), for the C children of P parents with means `parent` (R, B, P), weights
    (R, C, P) and biases (R, C), at t (R, B, C)."""
    s = torch.logit(parent).unsqueeze(2) + t.unsqueeze(-1) * weight.unsqueeze(1)  # (R, B, C, P)
    rho = torch.sigmoid(s)
    g = t * bias.unsqueeze(1) + (F.softplus(s) + torch.log1p(-parent).unsqueeze(2)).sum(-1)
    d = bias.unsqueeze(1) + (weight.unsqueeze(1) * rho).sum(-1)
    h = (weight.square().unsqueeze(1) * rho * (1 - rho)).sum(-1)
    return g, d, h, rho


def _expected_logits(parent: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """m_i = E_q[z_i] = sum_j W_ij mu_j + b_i: (R, B, C)."""
    return torch.einsum("rbp,rcp->rbc", parent, weight) + bias.unsqueeze(1)


def _layers(model: HelmholtzMachine, x: Tensor, mu: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Per layer with parents, from the data side: (means of the children, means of the parents, W, b)."""
    means = [x, *mu]
    return [(means[i], means[i + 1], layer.weight, layer.bias) for i, layer in enumerate(model.generative)]


def bound(model: HelmholtzMachine, x: Tensor, state: MeanField) -> Tensor:
    """The mean-field lower bound L(mu, xi) on log p(x): (R, B), differentiable in the model's
    generative parameters (the M-step's gradient)."""
    total = (state.mu[-1] * model.prior.bias.unsqueeze(1) - F.softplus(model.prior.bias).unsqueeze(1)).sum(-1)
    for (child, parent, weight, bias), xi in zip(_layers(model, x, state.mu), state.xi):
        g_lo = _log_mgf(parent, weight, bias, -xi)[0]
        g_hi = _log_mgf(parent, weight, bias, 1 - xi)[0]
        total = total + ((child - xi) * _expected_logits(parent, weight, bias) - torch.logaddexp(g_lo, g_hi)).sum(-1)
    for mu in state.mu:
        total = total - (mu * torch.log(mu) + (1 - mu) * torch.log1p(-mu)).sum(-1)
    return total


@torch.no_grad()
def update(model: HelmholtzMachine, x: Tensor, state: MeanField, damping: float = DAMPING) -> None:
    """One parallel sweep, in place: a Newton step on every xi_i and a damped mean-field update of
    every mu_j, both from the gradient at the current (mu, xi). With theta_i(t) the children's
    weights pi_i(1 - xi) = sigmoid(g_i(1 - xi) - g_i(-xi)) and 1 - pi_i:

        dL/dmu_j = m_j [j as a child] + sum_i [ (mu_i - xi_i) W_ij
                   - sum_t theta_i(t) (rho_ij(t) - mu_j) / (mu_j (1 - mu_j)) ] [j as a parent] - logit mu_j,

    (the prior bias b_j replaces m_j in the top layer), and mu_j <- sigmoid(dL/dmu_j + logit mu_j),
    Saul et al.'s fixed point. ``bound`` is the same function differentiated by autograd (tested)."""
    grads = [torch.zeros_like(m) for m in state.mu]
    grads[-1] += model.prior.bias.unsqueeze(1)
    for j, (child, parent, weight, bias) in enumerate(_layers(model, x, state.mu)):
        m = _expected_logits(parent, weight, bias)
        xi = state.xi[j]
        g0, d0, h0, rho0 = _log_mgf(parent, weight, bias, -xi)
        g1, d1, h1, rho1 = _log_mgf(parent, weight, bias, 1 - xi)
        pi = torch.sigmoid(g1 - g0)
        if j > 0:
            grads[j - 1] += m
        tilted = torch.einsum("rbc,rbcp->rbp", 1 - pi, rho0) + torch.einsum("rbc,rbcp->rbp", pi, rho1)
        grads[j] += (torch.einsum("rbc,rcp->rbp", child - xi, weight)
                     - (tilted - weight.shape[1] * parent) / (parent * (1 - parent)))
        f_grad = m - (1 - pi) * d0 - pi * d1
        f_curv = (1 - pi) * h0 + pi * h1 + pi * (1 - pi) * (d1 - d0).square()
        state.xi[j] = (xi - f_grad / f_curv.clamp(min=1e-8)).clamp(0.0, 1.0)
    state.mu = [((1 - damping) * mu + damping * torch.sigmoid(g)).clamp(EPS, 1 - EPS)
                for mu, g in zip(state.mu, grads)]


def infer(model: HelmholtzMachine, x: Tensor, iterations: int) -> MeanField:
    """The E-step for x (R, B, D): mu and xi start at 1/2, then `iterations` sweeps of ``update``."""
    r, b, _ = x.shape
    sizes = model.layers
    state = MeanField(mu=[torch.full((r, b, n), 0.5, dtype=x.dtype, device=x.device) for n in sizes[1:]],
                      xi=[torch.full((r, b, n), 0.5, dtype=x.dtype, device=x.device) for n in sizes[:-1]])
    for _ in range(iterations):
        update(model, x, state)
    return state


def sample_log_weights(model: HelmholtzMachine, x: Tensor, mu: list[Tensor], k: int) -> Tensor:
    """Importance log-weights log p(x, h) - log q_MF(h) with h ~ q_MF = prod Bernoulli(mu) (the
    example's own mean-field posterior as the proposal): (R, K, B)."""
    r, b, _ = x.shape
    hs = [(noise.rand((r, k, b, m.shape[-1]), x) < m.unsqueeze(1)).to(x.dtype)
          for m in mu]
    log_q = sum((h * torch.log(m.unsqueeze(1)) + (1 - h) * torch.log1p(-m.unsqueeze(1))).sum(-1)
                for h, m in zip(hs, mu))
    state = [x.unsqueeze(1).expand(r, k, b, x.shape[-1]).reshape(r, k * b, -1)] + [h.reshape(r, k * b, -1) for h in hs]
    return model.log_p(state).view(r, k, b) - log_q
