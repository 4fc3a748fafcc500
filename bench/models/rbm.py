"""Binary restricted Boltzmann machine (RBM) with a leading replica axis.

``layers = [D, H]``: D visible and H hidden binary (0/1) units. The energy and the distributions
(Smolensky 1986; Hinton 2002; notation of Salakhutdinov & Murray, ICML 2008, eqs. 1-3):

    E(v, h) = -b.v - c.h - h^T W v,        p(v, h) = exp(-E(v, h)) / Z,
    F(v)    = -b.v - sum_j softplus(c_j + W_j.v),       p(v) = exp(-F(v)) / Z,
    p(h_j = 1 | v) = sigmoid(c_j + W_j.v),  p(v_d = 1 | h) = sigmoid(b_d + W_:d . h).

Parameters per replica r: ``weight`` W (R, H, D), ``visible_bias`` b (R, D), ``hidden_bias`` c (R, H);
the buffer ``base_rate`` (R, D) holds the logits of the data-marginal base-rate model (the
factorial Bernoulli of the training pixel means), the starting distribution of AIS
(bench.estimators.ais). Every random draw goes through bench.nn.noise (replica r's from its own
generator).

log Z is exact by enumerating the smaller layer's 2^min(D, H) states in chunks (at most
MAX_ENUMERATED units): with the hidden layer enumerated,

    log Z = logsumexp_h [ c.h + sum_d softplus(b_d + (W^T h)_d) ],

computed in the model's dtype and accumulated (sums over units, log-sum-exp over states) in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise
from bench.nn.bernoulli import sample_bernoulli

MAX_ENUMERATED = 25  # units of the enumerated layer: 2^25 states is the largest exact log Z (a GPU's job)
ENUMERATION_CHUNK = {"cpu": 256, "cuda": 65_536}  # states per chunk: (R, 256, D) stays in a CPU's cache
INIT_STD = 0.01  # W ~ N(0, 0.01^2) (Hinton 2010, "A practical guide to training RBMs", Sec. 8)
PSEUDO_COUNTS = 1.0  # pixel means (count + 1) / (N + 2): a pixel never on in training gets a finite logit


def enumerated_log_sum(enumerated_bias: Tensor, other_bias: Tensor, coupling: Tensor, chunk: int | None = None) -> Tensor:
    """log sum_s exp(s.e + sum_m softplus(o_m + (s C)_m)) over every s in {0, 1}^n, per replica.

    enumerated_bias e (R, n), other_bias o (R, m), coupling C (R, n, m). With (e, o, C) = (c, b, W)
    this is log Z summed over the hidden layer; with (b, c, W^T), over the visible layer.
    Returns (R,) float64. Cost: 2^n * m softplus per replica, `chunk` states at a time (default by
    device, ENUMERATION_CHUNK). Raises ValueError for n > MAX_ENUMERATED."""
    r, n = enumerated_bias.shape
    chunk = chunk or ENUMERATION_CHUNK.get(coupling.device.type, ENUMERATION_CHUNK["cpu"])
    if n > MAX_ENUMERATED:
        raise ValueError(f"exact log Z enumerates 2^{n} states of the smaller layer; at most 2^{MAX_ENUMERATED}")
    powers = 2 ** torch.arange(n, device=coupling.device)
    acc = torch.full((r,), -torch.inf, dtype=torch.float64, device=coupling.device)
    for start in range(0, 2**n, chunk):
        index = torch.arange(start, min(start + chunk, 2**n), device=coupling.device)
        states = ((index.unsqueeze(1) & powers) > 0).to(coupling.dtype).unsqueeze(0).expand(r, -1, -1)  # (R, S, n)
        other = torch.baddbmm(other_bias.unsqueeze(1), states, coupling)  # (R, S, m)
        terms = (states @ enumerated_bias.unsqueeze(-1)).squeeze(-1).double() + F.softplus(other).sum(-1, dtype=torch.float64)
        acc = torch.logaddexp(acc, torch.logsumexp(terms, dim=1))
    return acc


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


@register_family("rbm")
class RBM(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int]):
        super().__init__()
        if len(layers) != 2:
            raise ValueError(f"an RBM has one visible and one hidden layer, layers=[D, H]; got layers={layers}")
        self.layers = list(layers)
        self.replicas = len(seeds)
        d, h = layers
        self.weight = nn.Parameter(torch.stack([INIT_STD * torch.randn(h, d, generator=g)
                                                for g in noise.replica_generators(seeds)]))
        self.visible_bias = nn.Parameter(torch.zeros(len(seeds), d))
        self.hidden_bias = nn.Parameter(torch.zeros(len(seeds), h))
        self.register_buffer("base_rate", torch.zeros(len(seeds), d))
        self._log_z_memo: tuple[list[Tensor], Tensor] | None = None

    @torch.no_grad()
    def initialize_from_data(self, x_train: Tensor) -> None:
        """Visible biases b_d = log(p_d / (1 - p_d)) from the training pixel means p_d (Hinton 2010,
        Sec. 8), p_d = (count_d + 1) / (N + 2); the same logits are the base-rate model of AIS.
        x_train: (N, D) with values in [0, 1]."""
        p = (x_train.sum(0) + PSEUDO_COUNTS) / (x_train.shape[0] + 2 * PSEUDO_COUNTS)
        logits = torch.log(p) - torch.log1p(-p)
        self.visible_bias.copy_(logits.expand_as(self.visible_bias))
        self.base_rate.copy_(logits.expand_as(self.base_rate))

    # ----------------------------------------------------------------- conditionals and sampling
    def hidden_logits(self, v: Tensor) -> Tensor:
        """c + W v: (R, N, D) -> (R, N, H)."""
        return torch.baddbmm(self.hidden_bias.unsqueeze(1), v, self.weight.transpose(1, 2))

    def visible_logits(self, h: Tensor) -> Tensor:
        """b + W^T h: (R, N, H) -> (R, N, D)."""
        return torch.baddbmm(self.visible_bias.unsqueeze(1), h, self.weight)

    @torch.no_grad()
    def gibbs(self, v: Tensor, steps: int) -> Tensor:
        """`steps` full block-Gibbs sweeps v -> h ~ p(h | v) -> v ~ p(v | h) from v (R, N, D); the
        last visible sample (R, N, D), detached."""
        for _ in range(steps):
            v = sample_bernoulli(self.visible_logits(sample_bernoulli(self.hidden_logits(v))))
        return v

    # ----------------------------------------------------------------- energies and likelihoods
    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -b.v - sum_j softplus(c_j + W_j.v): (R, N, D) -> (R, N), differentiable. The
        gradient of mean F(v_data) - mean F(v_model) in (W, b, c) is minus the likelihood gradient's
        positive phase plus its negative phase, with p(h | v) in place of sampled h (Hinton 2002)."""
        return -(v @ self.visible_bias.unsqueeze(-1)).squeeze(-1) - F.softplus(self.hidden_logits(v)).sum(-1)

    def free_energy_gap(self, positive: Tensor, negative: Tensor) -> Tensor:
        """mean_n F(positive_n) - mean_n F(negative_n) per replica, (R,), differentiable in the
        parameters: minimising it ascends the log-likelihood with the negative phase estimated on
        `negative` (CD-k: k Gibbs sweeps from the data; PCD: persistent chains). Both (R, B, D)."""
        return self.free_energy(positive).mean(1) - self.free_energy(negative.detach()).mean(1)

    @torch.no_grad()
    def log_partition(self) -> Tensor:
        """Exact log Z per replica, (R,) float64, enumerating the smaller layer (see the module's
        docstring). Memoised on the parameters' values: evaluating several splits, or the final
        K / 10 and K evaluations, of unchanged parameters enumerates once."""
        params = [self.weight, self.visible_bias, self.hidden_bias]
        if self._log_z_memo is not None and all(_same(a, p) for a, p in zip(self._log_z_memo[0], params)):
            return self._log_z_memo[1]
        d, h = self.layers
        if h <= d:
            log_z = enumerated_log_sum(self.hidden_bias, self.visible_bias, self.weight)
        else:
            log_z = enumerated_log_sum(self.visible_bias, self.hidden_bias, self.weight.transpose(1, 2))
        self._log_z_memo = ([p.detach().clone() for p in params], log_z)
        return log_z

    @torch.no_grad()
    def log_prob(self, v: Tensor, log_z: Tensor) -> Tensor:
        """log p(v) = -F(v) - log Z: v (R, N, D), log_z (R,) -> (R, N) float64 (F summed in float64)."""
        visible = (v.double() @ self.visible_bias.double().unsqueeze(-1)).squeeze(-1)
        hidden = F.softplus(self.hidden_logits(v)).sum(-1, dtype=torch.float64)
        return visible + hidden - log_z.unsqueeze(1)
