"""Deep latent Gaussian model (Rezende, Mohamed & Wierstra, ICML 2014, Sec. 2-4), replica axis first.

``layers = [D, d1, ..., dL]``. The generative model is written, as in the paper, with standard-normal
noise xi_l ~ N(0, I) in every layer and deterministic maps between them:

    h_L = G_L xi_L,    h_l = T_l(h_{l+1}) + G_l xi_l  (l = L-1 .. 1),    x ~ Bernoulli(T_0(h_1)),

with G_l a full (d_l x d_l) matrix (initialised to the identity) and T_l an MLP with
``hidden[l]`` tanh units and a linear output. So p(h_l | h_{l+1}) = N(T_l(h_{l+1}), G_l G_l^T) and
log p(x, xi) = sum_l log N(xi_l; 0, I) + log p(x | h_1(xi)).

The recognition model (paper eq. 13) is q(xi | x) = prod_l N(xi_l; mu_l(x), C_l(x)), every layer
read from x alone (not from the layer below, unlike IWAE's hierarchical q), with the paper's
rank-one-plus-diagonal covariance C_l = diag(sigma_l^2) + u_l u_l^T. mu_l, log sigma_l and u_l are
linear heads on one shared MLP of x with ``hidden[0]`` units (the paper leaves the recognition
network's shape open). The KL to the N(0, I) prior is in closed form for every layer, so the
paper's free energy (eq. 12) needs no sampled KL.

Open choices, documented: tanh units (the paper's MNIST networks are not specified), Glorot-uniform
initialisation (``output_bias: data_mean`` starts T_0's output bias at the logit of the data mean, as
IWAE's code does), and no noise augmentation of the static binarization (the paper's MNIST number used
"the fixed binarization dataset augmented by samples with added flip-bit or drop-out noise",
IWAE README).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import LowRankMultivariateNormal, kl_divergence

from bench.models import register_family
from bench.models.vae import DataLayer, GaussianLatentModel, standard_normal_log_prob
from bench.nn import noise
from bench.nn.linear import ReplicaLinear, ReplicaMLP


class _Transition(nn.Module):
    """T_l: an MLP with a linear output."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, gens: list[torch.Generator], init: str,
                 activation: str):
        super().__init__()
        self.trunk = ReplicaMLP([n_in, *hidden], gens, init, activation)
        self.out = ReplicaLinear(self.trunk.n_out, n_out, gens, init)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.trunk(h))


@register_family("dlgm")
class DLGM(GaussianLatentModel):
    def __init__(self, layers: list[int], hidden: list[list[int]], seeds: list[int], activation: str = "tanh",
                 init: str = "glorot_uniform", output_bias: str = "zero"):
        super().__init__()
        gens = self._setup(layers, hidden, seeds, output_bias)
        n = len(layers) - 1
        self.data = DataLayer(layers[1], hidden[0], layers[0], gens, init, activation, "bernoulli")  # T_0
        self.transitions = nn.ModuleList(_Transition(layers[i + 1], hidden[i], layers[i], gens, init, activation)
                                         for i in range(1, n))  # T_1 .. T_{L-1}
        self.g = nn.ParameterList(nn.Parameter(torch.eye(d).repeat(self.replicas, 1, 1)) for d in layers[1:])
        self.trunk = ReplicaMLP([layers[0], *hidden[0]], gens, init, activation)
        f = self.trunk.n_out
        self.mu = nn.ModuleList(ReplicaLinear(f, d, gens, init) for d in layers[1:])
        self.log_sigma = nn.ModuleList(ReplicaLinear(f, d, gens, init) for d in layers[1:])
        self.u = nn.ModuleList(ReplicaLinear(f, d, gens, init) for d in layers[1:])

    def generative_parameters(self) -> list[nn.Parameter]:
        return list(self.data.parameters()) + list(self.transitions.parameters()) + list(self.g)

    def _posterior(self, x: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per layer (mu, sigma, u), each (R, B, d)."""
        f = self.trunk(x)
        return [(mu(f), ls(f).exp(), u(f)) for mu, ls, u in zip(self.mu, self.log_sigma, self.u)]

    @staticmethod
    def _dist(mu: Tensor, sigma: Tensor, u: Tensor) -> LowRankMultivariateNormal:
        """N(mu, diag(sigma^2) + u u^T) with batch shape (R, 1, B), so K samples broadcast."""
        return LowRankMultivariateNormal(mu.unsqueeze(1), u.unsqueeze(1).unsqueeze(-1), sigma.square().unsqueeze(1),
                                         validate_args=False)

    @staticmethod
    def _draw(mu: Tensor, sigma: Tensor, u: Tensor, k: int) -> Tensor:
        """k reparameterised draws per example of N(mu, diag(sigma^2) + u u^T), (R, K, B, d), from
        per-replica noise (eps, then eta)."""
        eps = noise.randn((mu.shape[0], k, *mu.shape[1:]), mu)
        eta = noise.randn((*eps.shape[:-1], 1), mu)
        return mu.unsqueeze(1) + sigma.unsqueeze(1) * eps + u.unsqueeze(1) * eta

    @staticmethod
    def _kl(mu: Tensor, sigma: Tensor, u: Tensor) -> Tensor:
        """KL(N(mu, diag(sigma^2) + u u^T) || N(0, I)), (R, B)."""
        q = LowRankMultivariateNormal(mu, u.unsqueeze(-1), sigma.square(), validate_args=False)
        p = LowRankMultivariateNormal(torch.zeros_like(mu), torch.zeros_like(u).unsqueeze(-1),
                                      torch.ones_like(sigma), validate_args=False)
        return kl_divergence(q, p)

    def sample_q(self, x: Tensor, k: int) -> tuple[list[Tensor], Tensor]:
        zs, log_q = [], 0.0
        for params in self._posterior(x):
            zs.append(self._draw(*params, k))
            log_q = log_q + self._dist(*params).log_prob(zs[-1])
        return zs, log_q

    def log_q(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        return sum(self._dist(*params).log_prob(xi) for params, xi in zip(self._posterior(x), zs))

    def log_prior(self, zs: list[Tensor]) -> Tensor:
        return sum(standard_normal_log_prob(xi) for xi in zs)

    def decoder_input(self, zs: list[Tensor]) -> Tensor:
        """h_1 from the noise of every layer: h_L = G_L xi_L, h_l = T_l(h_{l+1}) + G_l xi_l."""
        def noise(i: int) -> Tensor:  # G xi of layer i + 1, for xi (R, K, B, d)
            return torch.einsum("rij,rkbj->rkbi", self.g[i], zs[i])

        h = noise(len(zs) - 1)
        for i in range(len(zs) - 2, -1, -1):
            h = self.transitions[i](h) + noise(i)
        return h

    def sample_prior(self, n: int) -> list[Tensor]:
        ref = self.g[0]
        return [noise.randn((self.replicas, 1, n, d), ref) for d in self.layers[1:]]

    def posterior_means(self, x: Tensor) -> list[Tensor]:
        """The means mu_l(x) of q(xi_l | x), the noise units IWAE's criterion counts."""
        return [mu for mu, _, _ in self._posterior(x)]

    def kl(self, x: Tensor) -> Tensor:
        return sum(self._kl(*params) for params in self._posterior(x))

    def sample_q_kl(self, x: Tensor, k: int) -> tuple[list[Tensor], Tensor]:
        posterior = self._posterior(x)
        return [self._draw(*params, k) for params in posterior], sum(self._kl(*params) for params in posterior)
