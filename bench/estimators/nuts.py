"""A gold-standard posterior by the No-U-Turn sampler: the reference the Bayesian-neural-network
methods' predictives are measured against (Jospin et al. 2022, "Hands-on Bayesian Neural Networks",
sec. V-A: MCMC is the reference on small models).

NUTS (Hoffman & Gelman 2014, "The No-U-Turn Sampler", JMLR 15, Algorithm 6: Hamiltonian Monte
Carlo with the trajectory length chosen by the no-U-turn criterion and the step size by dual
averaging) is Pyro's (`pyro.infer.NUTS`, Bingham et al. 2019), run on a potential U(theta) =
-log p(theta, data) of flat float64 parameters (P,), with a diagonal mass matrix adapted in the
warm-up. Each of `chains` chains starts from its own draw of N(0, init_scale^2 I) and its own seed;
convergence is ArviZ's (arviz-stats): the rank-normalised split R-hat (Vehtari et al. 2021,
"Rank-normalization, folding, and localization", Bayesian Analysis 16(2), eq. 4-5) and the bulk
effective sample size, the worst over the parameters.

The model here is multinomial (softmax) logistic regression, the one-layer ``mlp`` classifier:
theta = (W (C, D) row-major, b (C,)), p(y | x, theta) = softmax(W x + b)_y, prior N(0, sigma^2 I)
on every weight and bias (the prior of methods/bayes_by_backprop.py). Its posterior is log-concave
(one mode), so chains that agree (R-hat < RHAT_LIMIT) have found it.

`cached_posterior` computes it once per training set and settings and keeps it under a folder,
keyed by a hash of the data, prior, settings and this file: every run that trains on the same data
reads the same samples.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyro
import torch
from arviz_stats.base import array_stats
from pyro.infer import MCMC, NUTS
from torch import Tensor

from bench.core.layout import atomic_write

RHAT_LIMIT = 1.05  # Vehtari et al. 2021 recommend 1.01 for final results; 1.05 is the common rule of thumb
Potential = Callable[[Tensor], Tensor]  # theta (P,) float64 -> U(theta), a scalar


@dataclass(frozen=True)
class Settings:
    """NUTS's budget: warm-up (adaptation) and kept iterations per chain, chains, the first chain's
    seed (chain c uses seed + c), the tree-depth cap (2^depth - 1 leapfrog steps at most) and the
    scale of the initial draws."""

    warmup: int = 300
    samples: int = 300
    chains: int = 2
    seed: int = 20220202
    max_tree_depth: int = 6
    init_scale: float = 0.1


@dataclass
class Posterior:
    """NUTS draws `samples` (chains, S, P) float64 and their worst split R-hat and bulk ESS."""

    samples: Tensor
    rhat: float
    ess: float

    @property
    def flat(self) -> Tensor:
        """The draws of every chain in one (chains * S, P) tensor."""
        return self.samples.reshape(-1, self.samples.shape[-1])


def convergence(samples: Tensor) -> tuple[float, float]:
    """(max split R-hat, min bulk ESS) over the parameters of draws (chains, S, P); ArviZ's rank
    normalised estimators (at least 2 chains of 4 draws)."""
    draws = samples.detach().cpu().numpy().astype(np.float64)
    rhat = array_stats.rhat(draws, chain_axis=0, draw_axis=1, method="rank")
    ess = array_stats.ess(draws, chain_axis=0, draw_axis=1, method="bulk")
    return float(np.max(rhat)), float(np.min(ess))


def sample(potential: Potential, dim: int, settings: Settings) -> Posterior:
    """NUTS on `potential` over R^dim: Posterior with samples (chains, S, dim) float64."""
    chains = []
    for c in range(settings.chains):
        pyro.set_rng_seed(settings.seed + c)
        init = settings.init_scale * torch.randn(dim, dtype=torch.float64)
        kernel = NUTS(potential_fn=lambda p: potential(p["theta"]), max_tree_depth=settings.max_tree_depth,
                      adapt_step_size=True, adapt_mass_matrix=True, full_mass=False)
        mcmc = MCMC(kernel, num_samples=settings.samples, warmup_steps=settings.warmup,
                    initial_params={"theta": init}, disable_progbar=True)
        mcmc.run()
        chains.append(mcmc.get_samples()["theta"].detach())
    samples = torch.stack(chains)
    return Posterior(samples, *convergence(samples))


def softmax_regression_potential(x: Tensor, y: Tensor, classes: int, prior_sigma: float) -> Potential:
    """U(theta) = -sum_n log softmax(W x_n + b)_{y_n} + ||theta||^2 / (2 prior_sigma^2) (up to a
    constant) for x (N, D), labels y (N,) in [0, classes); theta = (W (C, D) row-major, b (C,))."""
    x, y = x.double(), y.long()

    def potential(theta: Tensor) -> Tensor:
        logits = softmax_regression_logits(theta.unsqueeze(0), x, classes)[0]
        ll = torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).sum()
        return theta.square().sum() / (2 * prior_sigma**2) - ll

    return potential


def softmax_regression_logits(theta: Tensor, x: Tensor, classes: int) -> Tensor:
    """Logits W_s x + b_s of each draw: theta (S, C * D + C), x (N, D) -> (S, N, C), float64."""
    d = x.shape[-1]
    w = theta[:, : classes * d].reshape(-1, classes, d)
    b = theta[:, classes * d:]
    return torch.einsum("scd,nd->snc", w, x.double()) + b.unsqueeze(1)


def cached_posterior(x: Tensor, y: Tensor, classes: int, prior_sigma: float, folder: Path,
                     settings: Settings = Settings()) -> Posterior:
    """The NUTS posterior of softmax regression on x (N, D), y (N,), read from `folder` when a
    run on the same data, prior and settings (and this module's code) computed it, computed and
    written there otherwise; a file lock lets concurrent runs compute it once."""
    key = hashlib.sha256()
    key.update(x.detach().double().cpu().numpy().tobytes())
    key.update(y.detach().long().cpu().numpy().tobytes())
    key.update(repr((classes, float(prior_sigma), asdict(settings))).encode())
    key.update(Path(__file__).read_bytes())
    path = Path(folder) / f"nuts-softmax-{key.hexdigest()[:16]}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return Posterior(**torch.load(path, weights_only=True))
        posterior = sample(softmax_regression_potential(x.cpu(), y.cpu(), classes, prior_sigma),
                           classes * (x.shape[-1] + 1), settings)
        atomic_write(path, lambda p: torch.save(asdict(posterior), p))
        return posterior
