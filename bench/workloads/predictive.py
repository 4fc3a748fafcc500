"""The posterior predictive of a Bayesian classifier, from S samples of its network's logits: the
metrics the Bayesian-neural-network methods (methods/bayes_by_backprop.py, mc_dropout.py,
deep_ensemble.py) add to the ``mlp`` workload's through ``Method.extra_metrics``.

Bayesian model averaging (Jospin et al. 2022, "Hands-on Bayesian Neural Networks", eq. 11; the NLL
of an ensemble is that of its averaged predictive, not the average NLL): with p_s(c | x) the softmax
of sample s's logits, the predictive is p(c | x) = 1/S sum_s p_s(c | x), and per replica, as means
over the evaluated examples:

* ``bma_nll``: -log p(y | x), nats per case; ``bma_error``: the misclassification rate of argmax p;
  ``bma_ece``: the top-label expected calibration error of p (bench.workloads.mlp, 15 bins);
* ``predictive_entropy``: H[p(. | x)], nats (total uncertainty);
* ``mutual_information``: H[p] - 1/S sum_s H[p_s] >= 0, nats: the across-sample spread
  (epistemic uncertainty, the information gain about the weights; Depeweg et al. 2018, eq. 5);
  0 for S identical samples.

``white_noise_inputs`` are the tutorial's out-of-distribution probe (BayesianMnist's 1000 U(0, 1)
images): a fixed set, the same for every replica and evaluation. The suffix ``_noise`` names the
same entropies on them, and ``mi_gap_noise`` = MI(white noise) - MI(evaluated inputs), > 0 when the
spread is higher off the data (the tutorial's claim C8.1b). Test examples of classes the training
split did not hold (a claim's ``held_out_classes``; BayesianMnist holds digit 5 out) are the other
probe, suffix ``_unseen`` (claim C8.1a).
Everything is accumulated in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from bench.workloads.calibration import expected_calibration_error
from bench.workloads.method import Sampler

NOISE_EXAMPLES = 1000  # BayesianMnist's white-noise probe: 1000 U(0, 1) images
NOISE_SEED = 20200714  # fixes the probe; not a replica's seed (the probe is data, the same for all)


def white_noise_inputs(like: Tensor, n: int = NOISE_EXAMPLES) -> Tensor:
    """n fixed U(0, 1) inputs shaped like the evaluated ones: like (R, N, D) -> (R, n, D), the same
    images for every replica."""
    g = torch.Generator().manual_seed(NOISE_SEED)
    x = torch.rand(n, like.shape[-1], generator=g, dtype=torch.float64)
    return x.to(like).unsqueeze(0).expand(like.shape[0], -1, -1)


def sample_log_probs(samplers: Sequence[Sampler], x: Tensor) -> Tensor:
    """log p_s(c | x), one call of each of the S samplers (the same stochastic network S times, or
    S ensemble members): x (R, N, D) -> (S, R, N, C), float64."""
    return torch.stack([torch.log_softmax(sampler(x).double(), -1) for sampler in samplers])


def entropies(log_p: Tensor) -> tuple[Tensor, Tensor]:
    """Predictive entropy H[p] and mutual information H[p] - mean_s H[p_s], per example, from
    log_p (S, R, N, C): two (R, N) tensors, nats (MI clamped at 0 against rounding)."""
    log_mean = torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])
    total = -(log_mean.exp() * log_mean).sum(-1)
    aleatoric = -(log_p.exp() * log_p).sum(-1).mean(0)
    return total, (total - aleatoric).clamp_min(0.0)


def predictive_metrics(log_p: Tensor, y: Tensor) -> dict[str, Tensor]:
    """The BMA metrics above from log_p (S, R, N, C) and labels y (R, N): name -> (R,)."""
    log_mean = torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])  # (R, N, C)
    top = log_mean.max(-1)
    correct = top.indices == y
    total, mi = entropies(log_p)
    return {"bma_nll": -log_mean.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1),
            "bma_error": (~correct).double().mean(1),
            "bma_ece": expected_calibration_error(top.values.exp(), correct),
            "predictive_entropy": total.mean(1), "mutual_information": mi.mean(1)}


def bma_metrics(samplers: Sequence[Sampler], x: Tensor, y: Tensor, seen: Tensor | None = None) -> dict[str, Tensor]:
    """Every metric of this module for the evaluated inputs x (R, N, D) with labels y (R, N) and
    for the white-noise probe, from one call of each sampler: name -> (R,). With `seen`, the classes
    (C',) of the training split (Method.classes_seen), evaluated examples of other classes (the same
    examples for every replica, as the loop evaluates) are an unseen-class probe: the metrics above
    are of the seen classes' examples, and ``mutual_information_unseen``,
    ``predictive_entropy_unseen`` and ``mi_gap_unseen`` = MI(unseen) - MI(seen) are added."""
    log_p = sample_log_probs(samplers, x)
    unseen = torch.zeros_like(y[0], dtype=torch.bool) if seen is None else ~torch.isin(y[0], seen)
    out = predictive_metrics(log_p[:, :, ~unseen], y[:, ~unseen])
    if unseen.any():
        total, mi = entropies(log_p[:, :, unseen])
        out |= {"predictive_entropy_unseen": total.mean(1), "mutual_information_unseen": mi.mean(1)}
        out["mi_gap_unseen"] = out["mutual_information_unseen"] - out["mutual_information"]
    total, mi = entropies(sample_log_probs(samplers, white_noise_inputs(x)))
    out |= {"predictive_entropy_noise": total.mean(1), "mutual_information_noise": mi.mean(1)}
    out["mi_gap_noise"] = out["mutual_information_noise"] - out["mutual_information"]
    return out


def reference_distances(log_p: Tensor, log_ref: Tensor) -> dict[str, Tensor]:
    """How far the predictive of S samples, log_p (S, R, N, C) (log p_s(c | x)), lies from a
    reference predictive log_ref (N, C) (a gold-standard posterior's, bench.estimators.nuts), per
    replica as means over the N inputs, float64: name -> (R,).

    * ``kl_to_reference``: KL(p_ref || p) = sum_c p_ref(c) (log p_ref(c) - log p(c)), nats (>= 0;
      large where the approximation is confident and the reference is not);
    * ``tv_to_reference``: the total variation 1/2 sum_c |p_ref(c) - p(c)|, in [0, 1].
    """
    log_mean = torch.logsumexp(log_p.double(), 0) - math.log(log_p.shape[0])  # (R, N, C)
    ref = log_ref.double().to(log_mean.device).unsqueeze(0)
    kl = (ref.exp() * (ref - log_mean)).sum(-1).clamp_min(0.0)
    tv = 0.5 * (ref.exp() - log_mean.exp()).abs().sum(-1)
    return {"kl_to_reference": kl.mean(1), "tv_to_reference": tv.mean(1)}
