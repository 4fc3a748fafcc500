"""The top-label expected calibration error of a classifier: the ``mlp`` workload's ``ece`` and the
Bayesian methods' ``bma_ece`` (bench.workloads.predictive, posterior)."""

from __future__ import annotations

import torch
from torch import Tensor

ECE_BINS = 15  # Guo et al. (2017) and torchmetrics' default


def expected_calibration_error(confidence: Tensor, correct: Tensor, bins: int = ECE_BINS) -> Tensor:
    """Top-label expected calibration error per replica (Naeini et al. 2015; Guo et al. 2017, "On
    Calibration of Modern Neural Networks", eq. 3): confidence (R, N), the predicted class's
    probability, and correct (R, N), 1 where that class is the label, -> (R,) in [0, 1]:

        ECE = sum_b |B_b| / N |acc(B_b) - conf(B_b)| = sum_b |sum_{i in B_b} (correct_i - confidence_i)| / N

    over `bins` equal-width bins of [0, 1], bin b = [b / bins, (b + 1) / bins) (a confidence of
    exactly 1 in a bin of its own), the binning of torchmetrics' multiclass_calibration_error with
    norm 'l1', which tests/test_classifier_metrics.py checks this against (torchmetrics itself
    cannot be imported beside the CPU torch here: it imports torchvision, whose CUDA build fails)."""
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype, device=confidence.device)
    index = torch.bucketize(confidence, edges, right=True) - 1
    gap = torch.zeros(confidence.shape[0], bins + 1, dtype=confidence.dtype, device=confidence.device)
    gap.scatter_add_(1, index, correct.to(confidence.dtype) - confidence)
    return gap.abs().sum(1) / confidence.shape[1]
