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

Batch normalisation (`batch_norm: true`; Ioffe & Szegedy 2015), in every hidden layer of the
encoder and the decoder as Latplan's fully connected SAE has it (guicho271828/latplan,
latplan/mixins/encoder_decoder.py: Dense + ReLU, then BN, then dropout; here Dense, BN, ReLU, with
no BN on the decoder's input bits and no dropout): each hidden layer's pre-activations are normalised per replica over the minibatch in training mode, and by
running averages in evaluation mode (`model.eval()`, which the workload sets for every
evaluation, so a test-time code never depends on the other images of its batch).
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


class ReplicaBatchNorm(nn.Module):
    """Batch normalisation of (R, B, H) per replica over B: scale 1 and shift 0 at the start; the
    running mean and unbiased variance (momentum 0.1, as torch's BatchNorm1d) serve evaluation."""

    def __init__(self, replicas: int, width: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(replicas, 1, width))
        self.bias = nn.Parameter(torch.zeros(replicas, 1, width))
        self.register_buffer("running_mean", torch.zeros(replicas, 1, width))
        self.register_buffer("running_var", torch.ones(replicas, 1, width))

    def forward(self, h: Tensor) -> Tensor:
        if self.training:
            mean, var = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
            with torch.no_grad():
                n = h.shape[1]
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * n / max(n - 1, 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _norms(sizes: list[int], replicas: int, on: bool) -> nn.ModuleList:
    """One batch norm per hidden layer of a stack of `sizes` (none when off)."""
    return nn.ModuleList(ReplicaBatchNorm(replicas, w) for w in sizes[1:-1]) if on else nn.ModuleList()


def _forward(linears: nn.ModuleList, norms: nn.ModuleList, h: Tensor) -> Tensor:
    """ReLU (after batch norm, when on) after every layer but the last (logits)."""
    for i, linear in enumerate(linears):
        h = linear(h)
        if i < len(linears) - 1:
            h = torch.relu(norms[i](h) if len(norms) else h)
    return h


@register_family("latplan")
class StateAutoencoder(nn.Module):
    """The SAE: `layers` = [D, hidden..., N bits]; `init` one of bench.nn.linear.INITS;
    `batch_norm` after every hidden layer (Latplan's code) or none."""

    def __init__(self, layers: list[int], seeds: list[int], init: str = "glorot_uniform",
                 batch_norm: bool = False):
        super().__init__()
        if len(layers) < 2 or init not in INITS:
            raise ValueError(f"latplan: layers [D, hidden..., N] and init in {INITS}; got {layers}, {init!r}")
        self.layers, self.bits = list(layers), layers[-1]
        gens = noise.replica_generators(seeds)
        self.encoder = _stack([*layers[:-1], 2 * self.bits], gens, init)
        self.decoder = _stack(layers[::-1], gens, init)
        self.encoder_norms = _norms([*layers[:-1], 2 * self.bits], len(seeds), bool(batch_norm))
        self.decoder_norms = _norms(layers[::-1], len(seeds), bool(batch_norm))
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
        return _forward(self.encoder, self.encoder_norms, x - self.input_mean.to(x)).unflatten(-1, (self.bits, 2))

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
        return _forward(self.decoder, self.decoder_norms, z)

    @staticmethod
    def cross_entropy(x: Tensor, pixel_logits: Tensor) -> Tensor:
        """-log p(x | z) per example, summed over pixels (x in [0, 1]): (R, B, D) -> (R, B) nats."""
        return F.binary_cross_entropy_with_logits(pixel_logits, x, reduction="none").sum(-1)

    @staticmethod
    def kl_uniform(logits: Tensor) -> Tensor:
        """KL(softmax(logits) || uniform over 2) summed over bits: (R, B, N, 2) -> (R, B) nats."""
        log_q = torch.log_softmax(logits, -1)
        return (log_q.exp() * (log_q + torch.log(torch.tensor(2.0)))).sum((-2, -1))
