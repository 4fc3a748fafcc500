"""Latplan's state autoencoder (SAE; Asai & Fukunaga, AAAI 2018, Sec. 3), one network per replica.

``layers = [D, h_1, ..., h_L, N]``: the encoder maps an image x (R, B, D) through ReLU layers
h_1..h_L to 2N logits, a categorical of 2 categories per latent bit (R, B, N, 2); the decoder maps
N bits through ReLU layers h_L..h_1 to D pixel logits (Bernoulli means sigmoid(logit)). Training
relaxes each bit by Gumbel-softmax (Jang et al. 2017; Maddison et al. 2017):

    y_c = softmax_c((logit_c + g_c) / tau),   g_c = -log(-log u_c),  u_c ~ U(0, 1),

and feeds y_1 (the weight of category 1) to the decoder. At test time the code is deterministic:
bit = argmax_c logit_c (category 1 -> 1), never a noisy sample (the JAIR version's "symbol
stability"). Loss terms per example, in nats: the Bernoulli cross-entropy of the image given the
decoder's logits, and KL(q || uniform) = sum_bits sum_c q_c log(2 q_c), q = softmax(logit).

Data-dependent initialisation (`initialize_from_data`, the workload's `prepare`): the encoder reads
x - m, m the training mean image (a fixed buffer, D values), and the decoder's output bias starts
at logit(m) (IWAE's output bias, Burda et al. 2016), so training starts from the mean image
instead of spending its first updates learning it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise
from bench.nn.linear import INITS, ReplicaLinear

EPS = 1e-20  # keeps log(-log u) finite at u = 0 or 1


def _stack(sizes: list[int], gens: list[torch.Generator], init: str) -> nn.ModuleList:
    return nn.ModuleList(ReplicaLinear(a, b, gens, init) for a, b in zip(sizes, sizes[1:]))


def _forward(linears: nn.ModuleList, h: Tensor) -> Tensor:
    """ReLU after every layer but the last (logits)."""
    for i, linear in enumerate(linears):
        h = linear(h)
        if i < len(linears) - 1:
            h = torch.relu(h)
    return h


@register_family("latplan")
class StateAutoencoder(nn.Module):
    """The SAE: `layers` = [D, hidden..., N bits]; `init` one of bench.nn.linear.INITS."""

    def __init__(self, layers: list[int], seeds: list[int], init: str = "glorot_uniform"):
        super().__init__()
        if len(layers) < 2 or init not in INITS:
            raise ValueError(f"latplan: layers [D, hidden..., N] and init in {INITS}; got {layers}, {init!r}")
        self.layers, self.bits = list(layers), layers[-1]
        gens = noise.replica_generators(seeds)
        self.encoder = _stack([*layers[:-1], 2 * self.bits], gens, init)
        self.decoder = _stack(layers[::-1], gens, init)
        self.register_buffer("input_mean", torch.zeros(layers[0]))

    @torch.no_grad()
    def initialize_from_data(self, x_train: Tensor) -> None:
        """input_mean <- the mean image m of x_train (N, D) in [0, 1]; the decoder's output bias
        <- logit(m), m clamped to [1e-3, 1 - 1e-3] (every replica)."""
        mean = x_train.mean(0).to(self.input_mean)
        self.input_mean.copy_(mean)
        bias = self.decoder[-1].bias
        bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)).to(bias).expand_as(bias))

    def logits(self, x: Tensor) -> Tensor:
        """Encoder logits: x (R, B, D) -> (R, B, N, 2)."""
        return _forward(self.encoder, x - self.input_mean.to(x)).unflatten(-1, (self.bits, 2))

    def code(self, x: Tensor) -> Tensor:
        """The deterministic test-time code: x (R, B, D) -> (R, B, N) in {0., 1.} (argmax per bit)."""
        return self.logits(x).argmax(-1).to(x.dtype)

    def relaxed(self, logits: Tensor, tau: float) -> Tensor:
        """Gumbel-softmax sample of every bit's category-1 weight: logits (R, B, N, 2) -> (R, B, N)
        in (0, 1), at temperature tau > 0; noise drawn per replica (bench.nn.noise)."""
        u = noise.rand(logits.shape, logits)
        g = -torch.log(-torch.log(u + EPS) + EPS)
        return torch.softmax((logits + g) / tau, -1)[..., 1]

    def decode(self, z: Tensor) -> Tensor:
        """Pixel logits: bits z (R, B, N) -> (R, B, D)."""
        return _forward(self.decoder, z)

    @staticmethod
    def cross_entropy(x: Tensor, pixel_logits: Tensor) -> Tensor:
        """-log p(x | z) per example, summed over pixels (x in [0, 1]): (R, B, D) -> (R, B) nats."""
        return F.binary_cross_entropy_with_logits(pixel_logits, x, reduction="none").sum(-1)

    @staticmethod
    def kl_uniform(logits: Tensor) -> Tensor:
        """KL(softmax(logits) || uniform over 2) summed over bits: (R, B, N, 2) -> (R, B) nats."""
        log_q = torch.log_softmax(logits, -1)
        return (log_q.exp() * (log_q + torch.log(torch.tensor(2.0)))).sum((-2, -1))
