"""Hidden Markov model with categorical emissions and a leading replica axis (``categorical_hmm``).

    p(o_0..o_T-1) = sum_z pi_z0 B_z0(o_0) prod_{t>0} A_z(t-1) z(t) B_zt(o_t)

(Rabiner 1989, Sec. III; Bishop, PRML 2006, Sec. 13.2, eq 13.10). ``layers = [D, V, S]`` lists
sizes from the data side, as in the other families: D values per example (the data's width: T
positions of V - 1 indicator bits, so D must be a multiple of V - 1), V symbols of the emission
alphabet, then S hidden states. Parameters, float64 log-probabilities (log space: an exact zero is -inf), one slice per
replica (seed):

* ``log_start`` (R, S): log pi_s, the initial state distribution;
* ``log_trans`` (R, S, S): log A_ij = log p(z_t = j | z_t-1 = i), rows normalised;
* ``log_emit`` (R, S, V): log B_s(v) = log p(o_t = v | z_t = s), rows normalised.

Initialisation: every row of pi, A and B drawn from the flat Dirichlet(1, ..., 1) (uniform on the
simplex: independent Exp(1) draws -log U, normalised), per replica from its own generator seeded by
1000 * seed + 1 (``bench.nn.noise.replica_generators``; as the mixture family), so a seed alone
starts where it starts beside others.

Observations are integer symbols o (R, N, T) in [0, V), one sequence of length T per example;
decoding a dataset's encoding into symbols is the workload's business (bench/workloads/hmm.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise


def _flat_dirichlet(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Rows (last axis) drawn from the flat Dirichlet(1, ..., 1), as log-probabilities, float64."""
    exp1 = -torch.log1p(-torch.rand(shape, generator=generator, dtype=torch.float64))  # Exp(1), U in [0, 1)
    return torch.log(exp1 / exp1.sum(-1, keepdim=True))


@register_family("categorical_hmm")
class CategoricalHMM(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int]):
        super().__init__()
        if len(layers) != 3 or layers[1] < 2 or layers[2] < 1 or layers[0] < 1 or layers[0] % (layers[1] - 1):
            raise ValueError(f"a categorical HMM needs layers [D, V, S]: D values per example, a multiple of V - 1 "
                             f"(T positions of V - 1 indicator bits), V >= 2 symbols, S >= 1 hidden states; "
                             f"got layers={layers}")
        self.layers, self.seeds = list(layers), list(seeds)
        _, v, s = layers
        draws = [(_flat_dirichlet((s,), g), _flat_dirichlet((s, s), g), _flat_dirichlet((s, v), g))
                 for g in noise.replica_generators([1000 * seed + 1 for seed in seeds])]
        start, trans, emit = (torch.stack(d) for d in zip(*draws))
        self.log_start = nn.Parameter(start, requires_grad=False)
        self.log_trans = nn.Parameter(trans, requires_grad=False)
        self.log_emit = nn.Parameter(emit, requires_grad=False)

    @property
    def symbols(self) -> int:
        return self.layers[1]

    @property
    def states(self) -> int:
        return self.layers[2]

    def emission_probs(self, obs: Tensor) -> Tensor:
        """B_s(o_nt) for symbols obs (R, N, T) long: (T, R, N, S), float64, time first (each
        position's slice contiguous for the recursions)."""
        replica = torch.arange(obs.shape[0], device=obs.device).view(1, -1, 1)
        return torch.exp(self.log_emit).transpose(1, 2)[replica, obs.permute(2, 0, 1)]  # (R, V, S) -> (T, R, N, S)

    def forward_pass(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The scaled forward algorithm (Rabiner 1989, Sec. V.A; Bishop Sec. 13.2.4) on symbols
        obs (R, N, T) long, in float64:

            c_0 alpha_0 = pi * B(o_0),   c_t alpha_t = (alpha_t-1 A) * B(o_t),   sum_s alpha_t(s) = 1,

        so alpha_t(s) = p(z_t = s | o_0..o_t) and log p(o_0..o_T-1) = sum_t log c_t. Returns, time
        first, (alpha (T, R, N, S), c (T, R, N), the emission probabilities B(o_t) (T, R, N, S)). A
        sequence the model gives probability 0 has c_t = 0 from some t on (log p = -inf) and alpha = 0
        there."""
        probs = self.emission_probs(obs)
        trans = torch.exp(self.log_trans)
        alpha = torch.empty_like(probs)
        scales = probs.new_empty(probs.shape[:-1])
        for t in range(obs.shape[2]):
            a = torch.exp(self.log_start).unsqueeze(1) if t == 0 else torch.bmm(alpha[t - 1], trans)
            a = a * probs[t]
            scales[t] = a.sum(-1)
            alpha[t] = a / torch.where(scales[t] > 0, scales[t], 1.0).unsqueeze(-1)
        return alpha, scales, probs

    def log_prob(self, obs: Tensor) -> Tensor:
        """Exact log p(o) per sequence by the forward algorithm, obs (R, N, T) long: (R, N) nats, float64."""
        return torch.log(self.forward_pass(obs)[1]).sum(0)
