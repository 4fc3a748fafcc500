"""Gaussian-latent variational autoencoders with a replica axis (Kingma & Welling 2014; Burda et al. 2016).

``layers = [D, z1, ..., zL]`` lists the stochastic layers from the data side, ``hidden[i]`` the
deterministic units (tanh; ELU for Cremer et al.) between layer i and layer i+1, as in IWAE's
``experiments.py``:
one stochastic layer is ``layers=[784, 50], hidden=[[200, 200]]``; two are
``layers=[784, 100, 50], hidden=[[200, 200], [100, 100]]`` (q 784-[200,200]-100 then
100-[100,100]-50; p mirrors it: 50-[100,100]-100 then 100-[200,200]-784). AEVB's net is
``layers=[784, 20], hidden=[[500]]``.

* q(z1 | x) q(z2 | z1) ... are diagonal Gaussians whose mean and log sigma are linear heads on an MLP
  (IWAE's ``GaussianSampler``: sigma = exp(linear)); p(zL) = N(0, I), p(z_i | z_{i+1}) the same kind
  of layer, and p(x | z1) Bernoulli (binary data) or Gaussian (Frey faces, see ``DataLayer``).
  Their densities are written out (``gaussian_log_prob``, ``gaussian_sample``,
  ``standard_normal_kl``), not built as ``torch.distributions`` objects on every step.
* Every parameter has a leading replica axis R (``ReplicaLinear``: weight (R, out, in)); latents are
  laid out (R, K, B, d): K samples of each of B examples, for every replica. Replicas never mix.

``GaussianLatentModel`` holds what VAEs and the DLGM (``bench/models/dlgm.py``) share: the
importance log-weights the harness's IS estimator reads, the analytic-KL ELBO and sampling from p
for wake-sleep. Their evaluation is bench/workloads/gaussian_latent.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.core.missing import register_observed_moments, set_observed_moments
from bench.models import register_family
from bench.nn import noise
from bench.nn.bernoulli import bernoulli_log_prob, sample_bernoulli
from bench.nn.linear import ReplicaLinear, ReplicaMLP

LIKELIHOODS = ("bernoulli", "gaussian")
# Frey faces: a learned decoder variance can collapse onto training pixels and send the bound to
# +inf (the research notes section 4 pitfalls); log sigma^2 is clamped at -10: sigma >= 0.0067, under two grey
# levels, and well below the sigma ~0.02 per pixel that AEVB's Frey bounds of ~1600 nats imply.
MIN_LOG_VAR = -10.0


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(z; mean, diag(exp(log_sigma)^2)) summed over the last axis; the arguments broadcast
    and the result has their shape less the last axis."""
    return -(0.5 * ((z - mean) * torch.exp(-log_sigma)).square() + log_sigma + HALF_LOG_2PI).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last axis."""
    return -(0.5 * z.square() + HALF_LOG_2PI).sum(-1)


def standard_normal_kl(mean: Tensor, log_sigma: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(log_sigma)^2)) || N(0, I)) summed over the last axis (Kingma & Welling
    2014, appendix B): sum_j (mean_j^2 + sigma_j^2 - 1) / 2 - log sigma_j."""
    return (0.5 * (mean.square() + torch.exp(2 * log_sigma) - 1) - log_sigma).sum(-1)


def _standard_noise(mean: Tensor, k: int | None) -> Tensor:
    """eps ~ N(0, I) from per-replica noise: mean's shape (k None), or k draws per row of a
    (R, B, d) mean, (R, K, B, d)."""
    return noise.randn(mean.shape if k is None else (mean.shape[0], k, *mean.shape[1:]), mean)


def gaussian_sample(mean: Tensor, log_sigma: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
    """Reparameterised draws z = mean + exp(log_sigma) * eps, eps ~ N(0, I) (bench.nn.noise), and
    their log N(z; mean, sigma^2) summed over the last axis.

    k None: one draw per row, z with mean's shape (R, ..., d) and log q (R, ...); k: k draws per
    row of a (R, B, d) mean, z (R, K, B, d) and log q (R, K, B). The density is written in eps,
    -eps^2/2 - log sigma - log(2 pi)/2 per unit: (z - mean) / sigma = eps, so its value (to
    rounding) and its total derivative in the parameters (through z and sigma) are those of the
    density at z, without re-deriving eps from z."""
    eps = _standard_noise(mean, k)
    if k is not None:
        mean, log_sigma = mean.unsqueeze(1), log_sigma.unsqueeze(1)
    return mean + log_sigma.exp() * eps, -(0.5 * eps.square() + log_sigma + HALF_LOG_2PI).sum(-1)


class GaussianLayer(nn.Module):
    """A diagonal Gaussian over n_out units given n_in: mean and log sigma are linear heads on an
    MLP (IWAE's GaussianSampler), so sigma = exp(linear)."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, gens: list[torch.Generator], init: str,
                 activation: str):
        super().__init__()
        self.trunk = ReplicaMLP([n_in, *hidden], gens, init, activation)
        self.mean = ReplicaLinear(self.trunk.n_out, n_out, gens, init)
        self.log_sigma = ReplicaLinear(self.trunk.n_out, n_out, gens, init)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log sigma), each (R, ..., n_out), of the Gaussian given h (R, ..., n_in)."""
        f = self.trunk(h)
        return self.mean(f), self.log_sigma(f)


class DataLayer(nn.Module):
    """p(x | h) for x (R, B, D) and h (R, K, B, d): an MLP, then

    * 'bernoulli': logits = linear head;
    * 'gaussian': mean = sigmoid(linear head) (AEVB appendix C.2 passes the Frey decoder mean
      through a sigmoid) and log sigma^2 = linear head, clamped at MIN_LOG_VAR."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, gens: list[torch.Generator], init: str,
                 activation: str, likelihood: str):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r}; use one of {LIKELIHOODS}")
        self.likelihood = likelihood
        self.trunk = ReplicaMLP([n_in, *hidden], gens, init, activation)
        self.head = ReplicaLinear(self.trunk.n_out, n_out, gens, init)
        if likelihood == "gaussian":
            self.log_var = ReplicaLinear(self.trunk.n_out, n_out, gens, init)

    def _params(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        f = self.trunk(h)
        if self.likelihood == "bernoulli":
            return self.head(f), None
        return torch.sigmoid(self.head(f)), self.log_var(f).clamp(min=MIN_LOG_VAR)

    def log_prob(self, x: Tensor, h: Tensor) -> Tensor:
        """log p(x | h) summed over pixels: (R, K, B)."""
        a, log_var = self._params(h)
        x = x.unsqueeze(1)
        if log_var is None:
            return bernoulli_log_prob(x, a)
        return -0.5 * ((x - a).square() / log_var.exp() + log_var + math.log(2 * math.pi)).sum(-1)

    def sample(self, h: Tensor) -> Tensor:
        """x ~ p(x | h), (R, K, B, D)."""
        a, log_var = self._params(h)
        if log_var is None:
            return sample_bernoulli(a)
        return a + (0.5 * log_var).exp() * noise.randn(a.shape, a)


OUTPUT_BIASES = ("zero", "data_mean")


def check_output_bias(output_bias: str) -> str:
    if output_bias not in OUTPUT_BIASES:
        raise ValueError(f"output_bias {output_bias!r}; use one of {OUTPUT_BIASES}")
    return output_bias


class GaussianLatentModel(nn.Module):
    """What VAEs and DLGMs share. Subclasses define the latent structure:

    * ``sample_q(x, k)`` -> (latents [(R, K, B, d_i)], log q (R, K, B)), reparameterised;
    * ``log_q(x, zs)`` -> log q(zs | x) (R, K, B), for given latents (wake-sleep's sleep phase);
    * ``log_prior(zs)`` -> log p(zs) (R, K, B), and ``decoder_input(zs)``, what p(x | .) reads;
    * ``sample_prior(n)`` -> latents [(R, 1, n, d_i)] ~ p;
    * ``posterior_means(x)`` -> per stochastic layer, the means IWAE's active-unit count reads;
    * ``kl(x)`` -> KL(q(. | x) || p) (R, B) in closed form, where the structure allows it, and
      ``sample_q_kl(x, k)`` -> (latents as ``sample_q`` draws them, that KL) from one pass of q.
    """

    data: DataLayer
    layers: list[int]
    replicas: int
    output_bias: str

    def _setup(self, layers: list[int], hidden: list[list[int]], seeds: list[int],
               output_bias: str) -> list[torch.Generator]:
        """Check the sizes (one hidden list per stochastic layer), set the shared attributes and
        return one generator per replica for the subclass's initialisation."""
        self.output_bias = check_output_bias(output_bias)
        if len(layers) < 2 or len(hidden) != len(layers) - 1:
            raise ValueError(f"need layers [D, z1, ...] and one hidden list per stochastic layer; got "
                             f"layers={layers}, hidden={hidden}")
        self.layers, self.replicas = list(layers), len(seeds)
        # each value's observed training mean and sd (R, D), set by initialize_from_data: what VGI and
        # mean imputation standardise by and impute with (as the factor-analysis and flow models hold)
        register_observed_moments(self, len(seeds), layers[0], torch.get_default_dtype())
        return noise.replica_generators(seeds)

    def sample_q(self, x: Tensor, k: int) -> tuple[list[Tensor], Tensor]:
        raise NotImplementedError

    def log_q(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def log_prior(self, zs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def decoder_input(self, zs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def sample_prior(self, n: int) -> list[Tensor]:
        raise NotImplementedError

    def posterior_means(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def kl(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} {self.layers} has no closed-form KL; use kl: sampled")

    def sample_q_kl(self, x: Tensor, k: int) -> tuple[list[Tensor], Tensor]:
        """This default encodes x twice (``sample_q``, then ``kl``); subclasses share one pass."""
        return self.sample_q(x, k)[0], self.kl(x)

    def generative_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    # ----------------------------------------------------------------- shared
    @torch.no_grad()
    def initialize_from_data(self, x_train: Tensor) -> None:
        """With ``output_bias: data_mean``, start p(x | .)'s output bias at the logit of the training
        mean clipped to [0.001, 0.999] (IWAE's get_train_bias_np); the harness calls this once with
        the training set (N, D) before the first step. Without it, tanh VAEs sit for thousands of
        updates at the "mean image" solution (~205 nats on MNIST) before they learn latents.

        Always: observed_mean, observed_sd <- each value's mean and standard deviation over its
        observed (not NaN) training entries (bench.core.missing.observed_moments; a ValueError when a
        value is observed fewer than twice)."""
        set_observed_moments(self, x_train)
        if self.output_bias == "data_mean":
            mean = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
            self.data.head.bias.copy_(torch.logit(mean).expand_as(self.data.head.bias))

    def log_joint(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        """log p(x, zs): (R, K, B)."""
        return self.log_prior(zs) + self.data.log_prob(x, self.decoder_input(zs))

    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """log w = log p(x, z) - log q(z | x), z ~ q, k per example: (R, K, B). Differentiable
        (reparameterised) when called with gradients enabled: the VAE/IWAE objectives use it."""
        zs, log_q = self.sample_q(x, k)
        return self.log_joint(x, zs) - log_q

    def elbo_analytic_kl(self, x: Tensor, k: int) -> Tensor:
        """AEVB's estimator B (Kingma & Welling eq. 7): mean over k samples of log p(x | z) minus
        the closed-form KL(q(z | x) || p(z)): (R, B). x is encoded once for both terms."""
        zs, kl = self.sample_q_kl(x, k)
        return self.data.log_prob(x, self.decoder_input(zs)).mean(1) - kl

    def sample_p(self, n: int) -> tuple[Tensor, list[Tensor]]:
        """n ancestral samples (x, zs) ~ p per replica: x (R, n, D), zs [(R, 1, n, d_i)]."""
        zs = self.sample_prior(n)
        return self.data.sample(self.decoder_input(zs))[:, 0], zs

@register_family("vae")
class VAE(GaussianLatentModel):
    """A VAE with one or more diagonal-Gaussian stochastic layers (module docstring).

    likelihood: 'bernoulli' or 'gaussian'; activation: 'tanh' (AEVB, IWAE) or 'elu' (Cremer et al.);
    init: 'glorot_uniform' (IWAE) or 'normal' (AEVB); output_bias: 'zero' (the init's) or 'data_mean'
    (IWAE's code, see ``initialize_from_data``)."""

    def __init__(self, layers: list[int], hidden: list[list[int]], seeds: list[int], activation: str = "tanh",
                 likelihood: str = "bernoulli", init: str = "glorot_uniform", output_bias: str = "zero"):
        super().__init__()
        gens = self._setup(layers, hidden, seeds, output_bias)
        n = len(layers) - 1
        self.q = nn.ModuleList(GaussianLayer(layers[i], hidden[i], layers[i + 1], gens, init, activation)
                               for i in range(n))
        self.p = nn.ModuleList(GaussianLayer(layers[i + 1], hidden[i][::-1], layers[i], gens, init, activation)
                               for i in range(1, n))  # p(z_i | z_{i+1}), i = 1..L-1
        self.data = DataLayer(layers[1], hidden[0][::-1], layers[0], gens, init, activation, likelihood)

    def generative_parameters(self) -> list[nn.Parameter]:
        return list(self.p.parameters()) + list(self.data.parameters())

    def sample_q(self, x: Tensor, k: int) -> tuple[list[Tensor], Tensor]:
        z, log_q = gaussian_sample(*self.q[0](x), k)
        zs = [z]
        for layer in self.q[1:]:
            z, log_qi = gaussian_sample(*layer(zs[-1]))
            zs.append(z)
            log_q = log_q + log_qi
        return zs, log_q

    def log_q(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        inputs = [x.unsqueeze(1)] + zs[:-1]
        return sum(gaussian_log_prob(z, *layer(h)) for layer, h, z in zip(self.q, inputs, zs))

    def log_prior(self, zs: list[Tensor]) -> Tensor:
        out = standard_normal_log_prob(zs[-1])
        for layer, z, parent in zip(self.p, zs, zs[1:]):
            out = out + gaussian_log_prob(z, *layer(parent))
        return out

    def decoder_input(self, zs: list[Tensor]) -> Tensor:
        return zs[0]

    def sample_prior(self, n: int) -> list[Tensor]:
        ref = self.q[0].mean.weight
        zs = [noise.randn((self.replicas, 1, n, self.layers[-1]), ref)]
        for layer in reversed(self.p):
            zs.insert(0, gaussian_sample(*layer(zs[0]))[0].detach())
        return zs

    def posterior_means(self, x: Tensor) -> list[Tensor]:
        """IWAE's get_units_variances: the mean of q(z1 | x), then of q(z_i | z_{i-1}) at one sample
        of the layer below: [(R, N, d_i)]."""
        means, h = [], x
        for layer in self.q:
            mean, log_sigma = layer(h)
            means.append(mean)
            h = gaussian_sample(mean, log_sigma)[0].detach()
        return means

    def kl(self, x: Tensor) -> Tensor:
        if len(self.q) > 1:
            return super().kl(x)
        return standard_normal_kl(*self.q[0](x))

    def sample_q_kl(self, x: Tensor, k: int) -> tuple[list[Tensor], Tensor]:
        if len(self.q) > 1:
            return super().sample_q_kl(x, k)
        mean, log_sigma = self.q[0](x)
        return [gaussian_sample(mean, log_sigma, k)[0]], standard_normal_kl(mean, log_sigma)
