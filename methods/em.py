"""Expectation-maximisation for a mixture of Bernoullis (Dempster, Laird & Rubin 1977; Bishop, PRML
2006, Sec. 9.3.3, eqs 9.56-9.60), with a small Beta prior on the pixel probabilities.

One ``step`` is one E+M iteration on the minibatch it gets, x (R, B, D) binary; the claims give it
the whole training set (batch_size = N), so one step is one iteration of batch EM:

* E-step (eq 9.56): responsibilities gamma_nk = pi_k p(x_n | k) / sum_j pi_j p(x_n | j), from the
  log-joint in float64 (logsumexp; bench.models.finite_mixture), accumulated over blocks of
  examples into N_k = sum_n gamma_nk and S_kd = sum_n gamma_nk x_nd;
* M-step: pi_k = N_k / N (eq 9.60) and, instead of the maximum-likelihood mean S_kd / N_k (eq 9.59),
  the MAP estimate under a Beta(1 + c, 1 + c) prior on every p_kd, c = ``pseudo_count``,

      p_kd = (S_kd + c) / (N_k + 2 c),

  i.e. c imaginary examples with the pixel on and c with it off per component, which keeps the
  probabilities off 0 and 1 (a test pixel never seen on in a component's examples would otherwise
  cost infinitely many nats). c = 0.01 by default (2e-5 of the 500 examples a component holds on
  average at K = 100 on 50000 images: maximum likelihood to that precision); c must be > 0. The mixing
  weights are maximum likelihood: a component that wins no example gets pi_k = 0 and stays empty.

EM increases the MAP objective log p(X) + log Beta prior at every iteration (Dempster et al. 1977,
Sec. 3; Bishop Sec. 9.4); with c -> 0 that is the log-likelihood. The step returns, at the
parameters it started from (those the E-step used), the batch's mean log-likelihood 'll' and the
mean MAP objective 'map_objective' (the log prior, without its normalising constant, divided by B),
both nats per example.

EM has no step size: the equal-budget tuning has no knob to search (``tunable=()``), so each label
is run at its stated configuration. c is a regulariser of the estimate, not a step size, and is not
tuned either: the claims compare EM's maximum-likelihood fit with the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.finite_mixture import responsibilities
from bench.models.mixture import CHUNK, BernoulliMixture
from bench.workloads.method import Method, register


@register("em", family="bernoulli_mixture", defaults={"pseudo_count": 0.01}, tunable=())
class EM(Method):
    model: BernoulliMixture

    def __init__(self, model: BernoulliMixture, **hparams):
        super().__init__(model, **hparams)
        if not self.pseudo_count > 0:
            raise ConfigError(f"em: pseudo_count must be > 0 (the Beta(1 + c, 1 + c) prior's c); got {self.pseudo_count}")

    @torch.no_grad()
    def step(self, x: Tensor) -> dict[str, Tensor]:
        model, c = self.model, self.pseudo_count
        r, b, d = x.shape
        ll = torch.zeros(r, dtype=torch.float64, device=x.device)
        counts = torch.zeros(r, model.components, dtype=torch.float64, device=x.device)  # N_k
        sums = torch.zeros(r, model.components, d, dtype=torch.float64, device=x.device)  # S_kd
        for xc in x.split(CHUNK, dim=1):
            xc = xc.to(torch.float64)
            log_px, gamma = responsibilities(model.log_joint(xc))  # E-step, eq 9.56: (R, n), (R, n, K)
            ll += log_px.sum(1)
            counts += gamma.sum(1)
            sums += torch.bmm(gamma.transpose(1, 2), xc)
        log_prior = c * (F.logsigmoid(model.pixel_logits) + F.logsigmoid(-model.pixel_logits)).sum((1, 2))
        # M-step: pi_k = N_k / N (eq 9.60); p_kd = (S_kd + c) / (N_k + 2c), the Beta(1 + c, 1 + c) MAP estimate
        model.mixing_logits.copy_(torch.log(counts))
        off = (counts.unsqueeze(-1) - sums).clamp_min(0.0)  # sum_n gamma_nk (1 - x_nd), >= 0 up to rounding
        model.pixel_logits.copy_(torch.log(sums + c) - torch.log(off + c))
        return {"ll": ll / b, "map_objective": (ll + log_prior) / b}
