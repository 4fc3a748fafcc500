"""Linear autoencoders with a leading replica axis (``linear_autoencoder`` family).

``layers = [D, k]``: D inputs, k hidden units. Per replica, on data centred on the training mean m,

    h = W1 (x - m) + b1,        x^ = m + W2 h + b2,

with the encoder W1 (R, k, D), the decoder W2 (R, D, k) and the biases b1 (R, k), b2 (R, D), float32
parameters. The objective of training is the mean squared reconstruction error per example,
mean_n ||x^_n - x_n||^2 (summed over the D values). Its global minima reconstruct exactly as PCA with
k components does (x^ = m + U_k U_k^T (x - m)), every other critical point is a saddle (Baldi &
Hornik 1989, "Neural networks and principal component analysis", Fact 4 and Theorem 1), and the
decoder's columns then span the principal subspace span(U_k).

Initialisation, per replica from its own seed (``bench.nn.noise.replica_generators``, seeded by
1000 * seed + 1, as the other families' layers): W1 = Q^T and W2 = Q, where Q (D, k) has orthonormal
columns (the QR factor of a standard normal matrix): a random k-dimensional orthogonal projection,
the balanced orthogonal start Saxe, McClelland & Ganguli (2014) recommend for deep linear networks;
biases 0. (N(0, 1/fan-in) weights leave W1 about sqrt(D / k) times smaller than W2, an ill-balanced
start: on the first 10000 MNIST images with k = 32, plain SGD (batch 100) diverged at lr 0.01 from it
and at lr 0.003 was still 1.5 times PCA's error after 30 epochs, where the orthogonal start at lr 0.03
was within 0.4%.)

The training mean m is the buffer ``reference.mean`` of `TrainingPCA` (bench/models/principal.py),
set with the PCA reference by the workload's ``prepare``; until then m = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.models.principal import TrainingPCA
from bench.nn import noise


@register_family("linear_autoencoder")
class LinearAutoencoder(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int]):
        super().__init__()
        if len(layers) != 2 or not 1 <= layers[1] < layers[0]:
            raise ValueError(f"a linear autoencoder needs layers [D, k] with 1 <= k < D; got layers={layers}")
        self.layers = list(layers)
        d, k = layers
        bases = torch.stack([torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64)).Q
                             for g in noise.replica_generators([1000 * s + 1 for s in seeds])]).float()
        self.encoder = nn.Parameter(bases.transpose(1, 2).contiguous())  # W1 (R, k, D)
        self.decoder = nn.Parameter(bases)  # W2 (R, D, k)
        self.encoder_bias = nn.Parameter(torch.zeros(len(seeds), k))
        self.decoder_bias = nn.Parameter(torch.zeros(len(seeds), d))
        self.reference = TrainingPCA(len(seeds), d, k)

    def reconstruct(self, x: Tensor) -> Tensor:
        """x^ for x (R, N, D), computed in x's dtype (float64 for the workload's metrics): (R, N, D)."""
        dtype = x.dtype
        mean = self.reference.mean.to(dtype).unsqueeze(1)
        h = torch.baddbmm(self.encoder_bias.to(dtype).unsqueeze(1), x - mean, self.encoder.to(dtype).transpose(1, 2))
        return mean + torch.baddbmm(self.decoder_bias.to(dtype).unsqueeze(1), h, self.decoder.to(dtype).transpose(1, 2))

    def squared_error(self, x: Tensor) -> Tensor:
        """||x^_n - x_n||^2 per example for x (R, N, D): (R, N), in x's dtype."""
        return (self.reconstruct(x) - x).square().sum(-1)
