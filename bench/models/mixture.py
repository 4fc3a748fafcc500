"""Mixture of multivariate Bernoullis with a leading replica axis (``bernoulli_mixture`` family).

    p(x) = sum_k pi_k prod_d p_kd^x_d (1 - p_kd)^(1 - x_d),   x in {0, 1}^D

(Bishop, PRML 2006, Sec. 9.3.3, eqs 9.47-9.52). ``layers = [D, K]`` lists sizes from the data side,
as in the other families: D pixels, then the K values of the one categorical latent variable (the
components). Parameters, float64, one slice per replica (seed):

* ``mixing_logits`` (R, K): pi = softmax(mixing_logits); a component with no data has logit -inf;
* ``pixel_logits`` (R, K, D): p_kd = sigmoid(pixel_logits).

Initialisation (``init``), per replica from its own seed (``bench.nn.noise.replica_generators``,
seeded by 1000 * seed + 1):

* ``"data"`` (default): uniform mixing weights, and component k centred on the k-th of K distinct
  training examples drawn at random, p_kd = 1/4 + x_d / 2 (3/4 where the pixel is on, 1/4 where it
  is off), so that the first E-step assigns each example to its nearest such example in Hamming
  distance. Set by the workload's ``prepare`` from the training set (`init_from_data`); until then
  the model holds the ``"uniform"`` draw.
* ``"uniform"``: uniform mixing weights, p_kd ~ Uniform(1/4, 3/4) independently (Bishop's suggestion
  for mixtures of Bernoullis, Sec. 9.3.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise

INITS = ("data", "uniform")
CHUNK = 8192  # examples per block of the (R, n, K) log-joint, bounding memory at 60000 x K = 500


@register_family("bernoulli_mixture")
class BernoulliMixture(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int], init: str = "data"):
        super().__init__()
        if len(layers) != 2 or min(layers) < 1:
            raise ValueError(f"a Bernoulli mixture needs layers [D, K] (pixels, components); got layers={layers}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r} of a Bernoulli mixture; use one of {INITS}")
        self.layers, self.init, self.seeds = list(layers), init, list(seeds)
        d, k = layers
        probs = torch.stack([0.25 + 0.5 * torch.rand(k, d, generator=g, dtype=torch.float64)
                             for g in self._generators()])
        self.mixing_logits = nn.Parameter(torch.zeros(len(seeds), k, dtype=torch.float64), requires_grad=False)
        self.pixel_logits = nn.Parameter(torch.logit(probs), requires_grad=False)

    @property
    def components(self) -> int:
        return self.layers[1]

    def _generators(self) -> list[torch.Generator]:
        """Replica r's initialisation generator, seeded by 1000 * seed + 1 (as the Helmholtz machine's
        layers offset theirs): a stream apart from the seed's data order."""
        return noise.replica_generators([1000 * s + 1 for s in self.seeds])

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """The ``"data"`` initialisation from the training set x (N, D), binary: per replica, K
        distinct examples drawn by its seed's generator. A ValueError when N < K."""
        n, k = x.shape[0], self.components
        if n < k:
            raise ValueError(f"{k} components need at least {k} training examples to start from; got {n}")
        picks = torch.stack([torch.randperm(n, generator=g)[:k] for g in self._generators()])
        centres = x[picks.to(x.device)].to(self.pixel_logits)  # (R, K, D)
        self.pixel_logits.copy_(torch.logit(0.25 + 0.5 * centres))
        self.mixing_logits.zero_()

    def log_joint(self, x: Tensor) -> Tensor:
        """log pi_k + log p(x | k) for x (R, N, D) binary: (R, N, K), float64."""
        logits = self.pixel_logits
        # log p(x | k) = x . l_k - sum_d softplus(l_kd)  (bench.nn.bernoulli.bernoulli_log_prob, as a matmul)
        bias = torch.log_softmax(self.mixing_logits, dim=-1) - F.softplus(logits).sum(-1)  # (R, K)
        return torch.baddbmm(bias.unsqueeze(1), x.to(logits), logits.transpose(1, 2))

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(x) = logsumexp_k (log pi_k + log p(x | k)) for x (R, N, D): (R, N) nats,
        float64, in blocks of CHUNK examples."""
        return torch.cat([torch.logsumexp(self.log_joint(xc), dim=-1) for xc in x.split(CHUNK, dim=1)], dim=1)
