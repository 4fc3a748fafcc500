"""Langevin dynamics on a posterior with a replica axis: the update, the Gaussian prior, and the ring
of thinned samples, shared by the samplers methods/sgld.py and methods/structured_sgld.py (each
computes its own gradient of the potential).

The potential is U(theta) = -(N / B) sum_{n in batch} log p(t_n | x_n, theta) - log p(theta), with
the Gaussian prior p(theta) = N(0, prior_std^2 I) on every parameter and N the run's number of
training examples (the engine's, Method.prepare). One step moves every parameter, replica by replica (Welling & Teh, "Bayesian
Learning via Stochastic Gradient Langevin Dynamics", ICML 2011, eq. 4, with lr for their eps_t / 2):

    theta <- theta - lr grad U(theta) + sqrt(2 lr T) xi,   xi ~ N(0, I),  T = ``temperature``

except the first ``deterministic_steps``, which add no noise (gradient descent on U towards the MAP:
the structured SG-MCMC authors' MNIST driver runs "the first epoch deterministic"). The noise is
drawn through bench.nn.noise, one N(0, I) tensor per step and parameter in the order given, replica
r's slice from its own generator.

Samples: the chain's start (the point after the deterministic steps) and then every
``thinning``-th iterate go into a ring of the last ``samples`` thinned samples (`SampleBuffer`);
those of steps after ``burn_in`` (steps counted from the first, deterministic ones included) are
the posterior samples.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bench.core.errors import ConfigError, refuse_weight_cost
from bench.nn import noise

# The samplers' defaults: prior N(0, 0.3^2) and chain settings of the structured SG-MCMC authors'
# MNIST driver (lvi; the ring of 100 samples = the 100 posterior samples it evaluates with).
DEFAULTS = {"lr": 1e-5, "prior_std": 0.3, "temperature": 1.0, "deterministic_steps": 0,
            "burn_in": 0, "thinning": 10, "samples": 100}


class SampleBuffer:
    """A ring of the last `capacity` thinned samples of R chains: per parameter of shape (R, *s), a
    tensor (R, capacity, prod(s)) on the parameter's device and dtype, and the step of each slot."""

    def __init__(self, params: list[nn.Parameter], capacity: int):
        self.shapes = [p.shape for p in params]
        self.values = [torch.zeros(p.shape[0], capacity, p[0].numel(), dtype=p.dtype, device=p.device)
                       for p in params]
        self.steps: list[int] = []
        self.capacity, self.next = capacity, 0

    @property
    def size(self) -> int:
        return len(self.steps)

    @torch.no_grad()
    def push(self, params: list[Tensor], step: int) -> None:
        """Store the current parameters as the sample of `step`, over the oldest when full."""
        for value, p in zip(self.values, params):
            value[:, self.next] = p.detach().flatten(1)
        if self.size < self.capacity:
            self.steps.append(step)
        else:
            self.steps[self.next] = step
        self.next = (self.next + 1) % self.capacity

    def slots(self, after: int) -> list[int]:
        """The slots holding samples of steps > `after`, oldest first."""
        order = range(self.size) if self.size < self.capacity else [*range(self.next, self.size), *range(self.next)]
        return [s for s in order if self.steps[s] > after]

    def sample(self, slot: int) -> list[Tensor]:
        """The parameters stored in `slot`, each of its parameter's shape (R, *s)."""
        return [value[:, slot].view(shape) for value, shape in zip(self.values, self.shapes)]


class LangevinChain:
    """The Langevin update of `params` (each (R, *s)) with the settings `hparams` (the keys of
    DEFAULTS), its step count and its ring of samples. Raises ConfigError, naming `method`, on a
    non-zero `weight_cost` (the prior replaces a model's l2), a non-positive lr or
    prior_std, a negative temperature, and a thinning, ring length, burn-in or deterministic-step
    count that is not an integer of its range."""

    def __init__(self, method: str, params: list[nn.Parameter], hparams: dict[str, Any], weight_cost: float = 0.0):
        refuse_weight_cost(method, weight_cost, f"N(0, {hparams['prior_std']}^2)")
        for key in ("lr", "prior_std"):
            if not hparams[key] > 0:
                raise ConfigError(f"{method}: {key} must be > 0; got {hparams[key]!r}")
        if not hparams["temperature"] >= 0:
            raise ConfigError(f"{method}: temperature must be >= 0; got {hparams['temperature']!r}")
        for key, least in (("thinning", 1), ("samples", 1), ("burn_in", 0), ("deterministic_steps", 0)):
            if not isinstance(hparams[key], int) or hparams[key] < least:
                raise ConfigError(f"{method}: {key} must be an integer >= {least}; got {hparams[key]!r}")
        self.params = list(params)
        self.lr, self.prior_std = hparams["lr"], hparams["prior_std"]
        self.noise_scale = math.sqrt(2.0 * hparams["lr"] * hparams["temperature"])
        self.deterministic_steps, self.thinning = hparams["deterministic_steps"], hparams["thinning"]
        self.burn_in = hparams["burn_in"]
        self.buffer = SampleBuffer(self.params, hparams["samples"])
        self.updates = 0
        if self.deterministic_steps == 0:
            self.buffer.push(self.params, 0)  # the chain's start

    def prior_energy(self) -> Tensor:
        """-log p(theta) up to a constant, ||theta||^2 / (2 prior_std^2) per replica: (R,)."""
        return 0.5 * sum(p.square().flatten(1).sum(1) for p in self.params) / self.prior_std**2

    @torch.no_grad()
    def advance(self, grads: tuple[Tensor, ...]) -> None:
        """One step with grad U = `grads` (in the order of `params`); then keep the chain's start
        or a thinned sample when this step is one."""
        noisy = self.updates >= self.deterministic_steps
        for p, g in zip(self.params, grads):
            p.add_(g, alpha=-self.lr)
            if noisy:
                p.add_(noise.randn(p.shape, p), alpha=self.noise_scale)
        self.updates += 1
        since = self.updates - self.deterministic_steps
        if since == 0 or (since > 0 and since % self.thinning == 0):
            self.buffer.push(self.params, self.updates)

    def posterior_samples(self) -> list[list[Tensor]]:
        """The kept samples of steps after burn_in, oldest first, each a list of (R, *s) tensors."""
        return [self.buffer.sample(s) for s in self.buffer.slots(after=self.burn_in)]
