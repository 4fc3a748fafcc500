"""Baum-Welch: expectation-maximisation for a hidden Markov model with categorical emissions (Baum,
Petrie, Soules & Weiss 1970; Rabiner 1989, Secs. III.C and V.B; Bishop, PRML 2006, Sec. 13.2.1).

One ``step`` is one E+M iteration on the sequences it gets, x (R, B, D) indicator bits decoded by
the workload into symbols o (R, B, T) (bench/workloads/hmm.py); the claims give it the whole
training set (batch_size = N), so one step is one iteration of batch EM:

* E-step, scaled forward-backward in float64 (Rabiner Sec. V.A; Bishop Sec. 13.2.4): the forward
  pass of the model gives alpha_t (filtered posteriors) and the scales c_t, log p(o) = sum_t log c_t;
  the backward pass beta_T-1 = 1, beta_t = A (B(o_t+1) * beta_t+1) / c_t+1; then the state posteriors
  gamma_t = alpha_t * beta_t and the expected transitions xi_t(i, j) = alpha_t(i) A_ij B_j(o_t+1)
  beta_t+1(j) / c_t+1, summed over sequences and positions;
* M-step (maximum likelihood, pooled over the sequences: Rabiner Sec. V.B):

      pi_s = sum_n gamma_n,0(s) / N,    A_ij = sum_n,t xi_n,t(i, j) / sum_n,t<T-1 gamma_n,t(i),
      B_s(v) = sum_n,t gamma_n,t(s) [o_n,t = v] / sum_n,t gamma_n,t(s).

This is hmmlearn's ``CategoricalHMM`` iteration with its default (flat) priors, the reference of
tests/test_hmm.py. No smoothing: a probability whose expected count is 0 becomes exactly 0 (-inf in
log space). EM never decreases the log-likelihood (Baum et al. 1970; Dempster, Laird & Rubin 1977).

The step returns 'll_decrease', the largest relative decrease so far, between consecutive
iterations, of the batch's mean log-likelihood (nats per sequence) at the parameters each iteration
started from, the one its E-step computes (bench.workloads.monotone.LargestDecrease); the workload
evaluates the log-likelihood itself on the evaluated splits.

Baum-Welch has no step size: the equal-budget tuning has no knob to search (``tunable=()``), so each
label is run at its stated configuration. The initial parameters are the model's (a flat Dirichlet
draw per replica, bench/models/hmm.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.hmm import CategoricalHMM
from bench.workloads.hmm import decode_indicators
from bench.workloads.method import Method, register
from bench.workloads.monotone import LargestDecrease


@register("baum_welch", family="categorical_hmm", defaults={}, tunable=())
class BaumWelch(Method):
    model: CategoricalHMM

    def __init__(self, model: CategoricalHMM, **hparams):
        super().__init__(model, **hparams)
        self.decrease = LargestDecrease()

    @torch.no_grad()
    def step(self, x: Tensor) -> dict[str, Tensor]:
        model = self.model
        obs = decode_indicators(x, model.symbols)  # (R, B, T)
        alpha, c, probs = model.forward_pass(obs)  # time first: (T, R, B, S), (T, R, B), (T, R, B, S)
        t, r, b, s = alpha.shape
        trans = torch.exp(model.log_trans)
        symbols = obs.permute(2, 0, 1).unsqueeze(-1).expand(-1, -1, -1, s)  # o_t per state, (T, R, B, S)
        pairs = alpha.new_zeros(r, s, s)  # sum_n,t alpha_t-1(i) B_j(o_t) beta_t(j) / c_t, times A_ij below
        emits = alpha.new_zeros(r, model.symbols, s)  # sum_n,t gamma_t(s) [o_t = v], as (R, V, S)
        beta = torch.ones_like(alpha[0])  # beta_T-1
        for i in range(t - 1, 0, -1):
            emits.scatter_add_(1, symbols[i], alpha[i] * beta)  # gamma_i = alpha_i * beta_i
            weighted = probs[i] * beta / c[i].unsqueeze(-1)
            pairs += torch.bmm(alpha[i - 1].transpose(1, 2), weighted)
            beta = torch.bmm(weighted, trans.transpose(1, 2))  # beta_i-1
        gamma = alpha[0] * beta
        emits.scatter_add_(1, symbols[0], gamma)
        start, pairs, emits = gamma.sum(1), trans * pairs, emits.transpose(1, 2)
        model.log_start.copy_(torch.log(start / b))
        model.log_trans.copy_(torch.log(pairs / pairs.sum(-1, keepdim=True)))
        model.log_emit.copy_(torch.log(emits / emits.sum(-1, keepdim=True)))
        return {"ll_decrease": self.decrease.update(torch.log(c).sum(0).mean(1))}
