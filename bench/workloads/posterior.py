"""Evaluation of a classifier's posterior samples from a Langevin chain (the samplers
methods/sgld.py and methods/structured_sgld.py report it through `extra_metrics`): the Bayesian
model average and the chain's mixing.

On the evaluated examples x (R, N, D) with labels y (R, N), from S posterior samples theta_s in
chain order (bench.nn.langevin.LangevinChain.posterior_samples):

* the Bayesian-model-average metrics of bench.workloads.predictive (``bma_error``, ``bma_nll``,
  ``bma_ece`` with the workload's 15 bins, ``predictive_entropy``, and ``mutual_information``, the
  across-sample spread), shared with the other Bayesian methods;
* ``bma_ece_10``: the top-label ECE of the average with 10 bins, the structured SG-MCMC authors'
  evaluation script's (Alexos, Boyd & Mandt 2022, code lvi);
* ``iac_ll`` and ``iac_prob``: integrated autocorrelation times in steps (thinning x IAC of the
  thinned chain; bench.estimators.mixing, ArviZ's rank-normalised ESS) of the chain of the
  per-sample mean log-likelihood of the evaluated examples (the "test log-likelihood trace") and,
  the median over the first IAC_POINTS examples, of the chain of log p(t_n | x_n, theta_s) of each
  (the predicted probability of fixed test points: the rank-normalised ESS is the same for a
  probability and its log); reported from MIN_IAC_SAMPLES samples on;
* ``bma_samples``: S.

None of them before the first posterior sample (burn-in), nor for a model that is not a classifier.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from bench.estimators.mixing import integrated_autocorrelation_time
from bench.models.mlp import MLP
from bench.nn.langevin import LangevinChain
from bench.workloads.calibration import expected_calibration_error
from bench.workloads.method import Sampler
from bench.workloads.predictive import predictive_metrics, sample_log_probs

ECE_BINS = 10  # the structured SG-MCMC authors' evaluation script
IAC_POINTS = 100  # fixed evaluated examples whose predicted probability's chain gives iac_prob
MIN_IAC_SAMPLES = 20  # posterior samples before a mixing diagnostic is reported


def chain_metrics(log_probs: Tensor, y: Tensor, thinning: int) -> dict[str, Tensor]:
    """The metrics of the module docstring from log p(t | x, theta_s), log_probs (S, R, N, C)
    float64 in chain order, and labels y (R, N): name -> (R,) float64 on y's device."""
    s = log_probs.shape[0]
    out = predictive_metrics(log_probs, y)
    top = (torch.logsumexp(log_probs, 0) - np.log(s)).max(-1)
    out["bma_ece_10"] = expected_calibration_error(top.values.exp(), top.indices == y, bins=ECE_BINS)
    out["bma_samples"] = torch.full(y.shape[:1], float(s), dtype=torch.float64, device=y.device)
    if s >= MIN_IAC_SAMPLES:
        labelled = log_probs.gather(-1, y.expand(s, *y.shape).unsqueeze(-1)).squeeze(-1)  # (S, R, N)
        trace = labelled.permute(1, 2, 0).cpu().numpy()  # (R, N, S)
        iac_ll = thinning * integrated_autocorrelation_time(trace.mean(1))
        iac_prob = thinning * np.nanmedian(integrated_autocorrelation_time(trace[:, :IAC_POINTS]), axis=1)
        out |= {"iac_ll": torch.as_tensor(iac_ll, device=y.device),
                "iac_prob": torch.as_tensor(iac_prob, device=y.device)}
    return out


@torch.no_grad()
def posterior_metrics(model: MLP, chain: LangevinChain, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
    """`chain_metrics` of the chain's posterior samples of the classifier `model` on x (R, N, D)
    with labels y (R, N): name -> (R,); none for other models or before the first posterior sample."""
    samplers = chain_samplers(model, chain)
    if model.loss != "categorical" or y is None or not samplers:
        return {}
    return chain_metrics(sample_log_probs(samplers, x), y, chain.thinning)


def chain_samplers(model: MLP, chain: LangevinChain) -> list[Sampler]:
    """The network under each of the chain's kept posterior samples, oldest first (none during
    burn-in): x (R, N, D) -> outputs (R, N, out)."""
    names = [name for name, _ in model.named_parameters()]
    return [partial(functional_call, model, dict(zip(names, sample))) for sample in chain.posterior_samples()]
