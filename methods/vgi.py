"""Variational Gibbs inference (VGI) for factor analysis, normalising flows and VAEs with missing data
(Simkus, Rhodes & Gutmann 2023, "Variational Gibbs inference for statistical model estimation from
incomplete data", JMLR 24, Sec. 3; the settings of their code,
github.com/vsimkus/variational-gibbs-inference, as the research notes read them). The update reads
only the model's log-density of complete data (``log_prob``) and its observed training moments, so
one class trains the families ``factor_analysis`` and ``flow``; for a ``vae``, whose log p(x) is
intractable, the log-density of complete data is replaced by its one-sample ELBO (analytic KL,
bench.workloads.incomplete_data.complete_elbo: the paper's VGI for VAEs fits the VAE's bound to the
imputed data, and q's bound reads it in place of log p), and the model step ascends it in the
encoder's and the decoder's parameters jointly.

VGI fits a density model p_theta(x) to incomplete data by keeping `copies` imputed copies x~ of each
training example (observed values fixed, missing ones imputed) and a variational model of the
univariate conditionals q_phi(x_j | x_-j) of every value. Per step:

1. *Gibbs-style imputation* (`gibbs`): `gibbs_steps` times, in every copy, one missing value j,
   drawn uniformly among the example's missing values, is resampled, x~_j ~ q_phi(x_j | x~_-j).
2. *Density model*: one Adam step (rate lr) on the mean log p_theta(x~) over the copies, the
   complete-data log-likelihood of the imputed data (exact: the factor analyser's Gaussian, the
   flow's change of variables).
3. *Variational model*: one AMSGrad step (rate lr_q) on the per-dimension variational bound
   E_{q_phi(x_j | x~_-j)}[log p_theta(x_j, x~_-j) - log q_phi(x_j | x~_-j)], j again drawn
   uniformly among the missing values of each copy, by the reparameterisation x_j = m + s eps with
   one Monte Carlo sample and entropy coefficient 1 (the authors' settings). Its maximiser over q is the model's
   own conditional p_theta(x_j | x~_-j), so at convergence the imputation chain is a Gibbs sampler
   of p_theta(x_m | x_o).

The variational conditionals are univariate Gaussians N(m_j, s_j^2) from one network with a
replica axis, in units standardised by each value's observed training mean and standard deviation:
the input is the standardised copy with value j zeroed, concatenated with the example's missing
indicator; the output (m_j, log s_j^2) for every j through a linear map of the input plus a hidden
ReLU layer of `hidden` units (the paper's resnet encoder reduced to one residual block: the linear
part, zero at the start, holds a Gaussian's linear conditionals exactly); head j is read for value j.

Simplifications against the paper (stated in the claim): Gaussian conditionals instead of
rational-quadratic flows; one gradient step per Gibbs step on the whole training set instead of
minibatches of 128; pre-imputation by samples of each value's observed training values (the
paper's empirical-distribution pre-imputation) and `delay` steps in which the density model and q
train on those pre-imputations before the chains move (the paper's imputation delay and q's
pre-training on observed data, in one warm-up); no learning-rate annealing.

**The copies persist when each step gets the whole training set** (batch_size = N, the claims'
quick and paper setting): the loop hands the rows in a new order every epoch, and each row is found
again by sorting the rows on a fixed random projection of their values and missing indicators
(equal keys mean equal rows but for a coincidence of probability zero, and equal rows may swap
copies). On a smaller batch (the smoke profile) rows cannot be told apart across steps, so each
batch is pre-imputed afresh and its chains run only that step's Gibbs updates: a degraded VGI,
not the paper's. The conditionals' standardisation is the model's observed training mean and
standard deviation (``observed_mean``, ``observed_sd``, set from the whole training split by the
workload's ``prepare``). A VAE is trained in its own
float32, the other families in float64. Returns 'll_imputed' (mean log p_theta over
the copies before the update, nats) and 'vgi_bound' (the variational objective of step 3, nats per
updated value). Its imputation of new data (`impute`, a workload's imputation error) averages
chains of the same Gibbs-style updates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.factor_analysis import FactorAnalysis
from bench.models.flow import Flow
from bench.models.vae import GaussianLatentModel
from bench.nn import noise
from bench.nn.linear import ReplicaLinear
from bench.workloads.incomplete_data import ObservedMoments, complete_log_density
from bench.workloads.method import Method, register

IMPUTE_CHAINS, IMPUTE_BURN_IN, IMPUTE_DRAWS = 4, 100, 200  # `impute`'s chains per example and updates


class GaussianConditionals(nn.Module):
    """q(x_j | x_-j) = N(m_j, exp(v_j)) for every j: inputs (R, M, 2D) -> (m, v), each (R, M, D)."""

    def __init__(self, d: int, hidden: int, gens: list[torch.Generator], dtype: torch.dtype = torch.float64):
        super().__init__()
        self.linear = ReplicaLinear(2 * d, 2 * d, gens, "glorot_uniform")
        nn.init.zeros_(self.linear.weight)  # q starts as the small network alone, not a random linear map
        self.hidden = ReplicaLinear(2 * d, hidden, gens, "glorot_uniform")
        self.out = ReplicaLinear(hidden, 2 * d, gens, "glorot_uniform")
        self.to(dtype)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        out = self.linear(inputs) + self.out(F.relu(self.hidden(inputs)))
        return out.chunk(2, -1)


@register("vgi", family=("factor_analysis", "flow", "vae"),
          defaults={"lr": 0.01, "lr_q": 0.01, "copies": 2, "gibbs_steps": 5, "hidden": 32, "delay": 100},
          tunable=("lr",))
class VariationalGibbs(ObservedMoments, Method):
    model: FactorAnalysis | Flow | GaussianLatentModel

    def __init__(self, model: FactorAnalysis | Flow | GaussianLatentModel, **hparams):
        super().__init__(model, **hparams)
        ref = model.observed_mean  # (R, D), in the model's dtype
        r, d = ref.shape[:2]
        seeds = (noise.rand((r,), ref) * 2**31).long().tolist()  # each replica's network from its own stream
        self.q = GaussianConditionals(d, self.hidden, [torch.Generator().manual_seed(s) for s in seeds],
                                      self.dtype()).to(ref.device)
        self.opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        self.opt_q = torch.optim.Adam(self.q.parameters(), lr=self.lr_q, amsgrad=True)
        self.key = torch.randn(2 * d, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(ref.device)
        self.pool: Tensor | None = None  # imputed copies (R, N, copies, D) in the rows' sorted order
        self.missing: Tensor | None = None  # (R, N, 1, D) bool, in the same order
        self.steps = 0

    def conditional(self, x: Tensor, missing: Tensor, dims: Tensor) -> tuple[Tensor, Tensor]:
        """q(x_j | x_-j) for x (R, M, D) complete (imputed), the examples' missing indicators
        (R, M, D) and one value index per row dims (R, M): (mean, variance), each (R, M)."""
        target = F.one_hot(dims, x.shape[-1]).to(x.dtype)
        centre, scale = (m.unsqueeze(1) for m in self.moments())  # (R, 1, D)
        standard = (x - centre) / scale
        mean, log_var = self.q(torch.cat([standard * (1 - target), missing.to(x.dtype)], -1))
        pick = dims.unsqueeze(-1)
        centre, scale = centre.expand_as(x).gather(-1, pick), scale.expand_as(x).gather(-1, pick)
        mean, variance = centre + scale * mean.gather(-1, pick), scale.square() * log_var.gather(-1, pick).exp()
        return mean.squeeze(-1), variance.squeeze(-1)

    def _flat(self) -> tuple[Tensor, Tensor]:
        assert self.pool is not None and self.missing is not None
        r, n, c, d = self.pool.shape
        return self.pool.reshape(r, n * c, d), self.missing.expand(-1, -1, c, -1).reshape(r, n * c, d)

    def _random_missing(self, missing: Tensor) -> Tensor:
        """One index per row, uniform among its missing values (any when none is missing): (R, M)."""
        return (noise.rand(missing.shape, self.key) + missing).argmax(-1)

    def _update(self, x: Tensor, missing: Tensor) -> None:
        """One Gibbs-style update of every row of x (R, M, D) in place: one missing value j each
        (missing (R, M, D)), x_j ~ q(x_j | x_-j); rows with nothing missing stay."""
        dims = self._random_missing(missing)
        mean, variance = self.conditional(x, missing, dims)
        draw = mean + variance.sqrt() * noise.randn(mean.shape, mean)
        fill = missing.gather(-1, dims.unsqueeze(-1)).squeeze(-1)
        x.scatter_(-1, dims.unsqueeze(-1), torch.where(fill, draw, x.gather(-1, dims.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1))

    @torch.no_grad()
    def gibbs(self, steps: int) -> None:
        """`steps` Gibbs-style updates of every copy: one missing value each, x~_j ~ q(x_j | x~_-j)."""
        x, missing = self._flat()
        for _ in range(steps):
            self._update(x, missing)
        self.pool = x.reshape(self.pool.shape)

    @torch.no_grad()
    def impute(self, x: Tensor) -> Tensor:
        """The average of Gibbs chains of q on the missing (NaN) values of x (R, N, D): IMPUTE_CHAINS
        chains per example start at the observed training means, IMPUTE_BURN_IN updates are
        discarded and the states of the next IMPUTE_DRAWS averaged (a Monte Carlo estimate of the
        chains' mean of x_m given x_o, the model's E[x_m | x_o] when q is its conditionals; its
        Monte Carlo error adds to an imputation error measured with it): (R, N, D)."""
        x = x.to(self.dtype())
        r, n, d = x.shape
        nan = torch.isnan(x)
        start = torch.where(nan, self.moments()[0].unsqueeze(1), x)
        chains = start.unsqueeze(2).expand(-1, -1, IMPUTE_CHAINS, -1).reshape(r, n * IMPUTE_CHAINS, d).clone()
        missing = nan.unsqueeze(2).expand(-1, -1, IMPUTE_CHAINS, -1).reshape(r, n * IMPUTE_CHAINS, d)
        total = torch.zeros_like(chains)
        for t in range(IMPUTE_BURN_IN + IMPUTE_DRAWS):
            self._update(chains, missing)
            if t >= IMPUTE_BURN_IN:
                total += chains
        return torch.where(nan, (total / IMPUTE_DRAWS).reshape(r, n, IMPUTE_CHAINS, d).mean(2), x)

    def _rows(self, x: Tensor) -> Tensor:
        """The rows of x (R, N, D) in a fixed order, whatever order the loop gives them in."""
        missing = ~torch.isfinite(x)
        key = torch.cat([x.to(torch.float64).nan_to_num(0.0), missing.to(torch.float64)], -1) @ self.key
        return x.gather(1, key.argsort(1).unsqueeze(-1).expand_as(x))

    def _pre_impute(self, x: Tensor) -> None:
        """Copies of x (R, N, D) with each missing value drawn from that value's observed training values."""
        r, n, d = x.shape
        missing = ~torch.isfinite(x)
        observed_first = missing.to(torch.int8).argsort(dim=1, stable=True)  # per value: observed rows first
        counts = (~missing).sum(1, keepdim=True).unsqueeze(1)  # (R, 1, 1, D)
        pick = (noise.rand((r, n, self.copies, d), x) * counts).long().clamp_max(n - 1)
        rows = observed_first.unsqueeze(2).expand(-1, -1, self.copies, -1).gather(1, pick)
        draws = x.unsqueeze(2).expand(-1, -1, self.copies, -1).gather(1, rows)
        self.pool = torch.where(missing.unsqueeze(2), draws, x.unsqueeze(2))
        self.missing = missing.unsqueeze(2)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        x = self._rows(x.to(self.dtype()))
        if self.pool is None or x.shape[1] != self.training_examples():  # a minibatch: fresh copies (see the docstring)
            self._pre_impute(x)
        if self.steps >= self.delay:
            self.gibbs(self.gibbs_steps)
        self.steps += 1
        imputed, missing = self._flat()
        ll = complete_log_density(self.model, imputed).mean(1)
        self.opt.zero_grad(set_to_none=True)
        (-ll.sum()).backward()
        self.opt.step()
        # the variational bound of one missing value per copy, reparameterised; gradients to q only
        dims = self._random_missing(missing)
        mean, variance = self.conditional(imputed, missing, dims)
        eps = noise.randn(mean.shape, mean)
        value = mean + variance.sqrt() * eps
        proposal = imputed.scatter(-1, dims.unsqueeze(-1), value.unsqueeze(-1))
        log_q = -0.5 * (math.log(2 * math.pi) + variance.log() + eps.square())
        counted = missing.gather(-1, dims.unsqueeze(-1)).squeeze(-1).to(mean.dtype)  # copies with a missing value
        bound = ((complete_log_density(self.model, proposal) - log_q) * counted).sum(1) / counted.sum(1).clamp_min(1)
        grads = torch.autograd.grad(-bound.sum(), list(self.q.parameters()))
        for p, g in zip(self.q.parameters(), grads):
            p.grad = g
        self.opt_q.step()
        return {"ll_imputed": ll.detach(), "vgi_bound": bound.detach()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "q": self.q.state_dict()}
