"""The classifier metrics of the mlp workload (bench/workloads/mlp.py): the expected calibration
error of a constructed miscalibrated predictor, computed by hand, and of random predictors against
torchmetrics' multiclass_calibration_error (15 bins, l1)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from conftest import HIDE_TORCHVISION

from bench.models.mlp import MLP
from bench.workloads.mlp import MLPWorkload, expected_calibration_error

# Replica 0: 5 cases at p = (0.9, 0.05, 0.05), 3 of them labelled 0 (accuracy 0.6 at confidence
# 0.9), and 5 at p = (0.2, 0.5, 0.3), all labelled 1 (accuracy 1 at confidence 0.5): the bins
# [13/15, 14/15) and [7/15, 8/15) give ECE = 5/10 |0.6 - 0.9| + 5/10 |1 - 0.5| = 0.15 + 0.25 = 0.4.
# Replica 1: 10 cases at p = (0.5, 0.3, 0.2), 5 labelled 0: calibrated, ECE = 0.
PROBS = torch.tensor([[[0.9, 0.05, 0.05]] * 5 + [[0.2, 0.5, 0.3]] * 5, [[0.5, 0.3, 0.2]] * 10], dtype=torch.float64)
LABELS = torch.tensor([[0, 0, 0, 1, 2] + [1] * 5, [0] * 5 + [1, 2, 1, 2, 1]])
BY_HAND = [0.4, 0.0]


def _classifier_emitting(log_probs: torch.Tensor) -> MLP:
    """A linear 3-3 classifier per replica with identity weights: its logits are its inputs."""
    model = MLP([3, 3], seeds=[0, 1], loss="categorical").double()
    with torch.no_grad():
        model.weights[0].copy_(torch.eye(3).expand(2, 3, 3))
        model.biases[0].zero_()
    return model


def test_ece_of_a_constructed_miscalibrated_predictor():
    top = PROBS.max(-1)
    ece = expected_calibration_error(top.values, top.indices == LABELS)
    torch.testing.assert_close(ece, torch.tensor(BY_HAND, dtype=torch.float64), rtol=0, atol=1e-12)


def test_the_workload_reports_ece_for_classifiers_only(monkeypatch):
    monkeypatch.setattr("bench.workloads.mlp.EVAL_CHUNK", 3)  # several chunks, one ECE over all of them
    x = PROBS.log()
    out = MLPWorkload().metrics(_classifier_emitting(x), None, x, 1, LABELS)
    torch.testing.assert_close(out["ece"], torch.tensor(BY_HAND, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out["error"], torch.tensor([0.2, 0.5], dtype=torch.float64), rtol=0, atol=1e-12)
    autoencoder = MLP([3, 2, 3], seeds=[0, 1], loss="bernoulli").double()
    assert "ece" not in MLPWorkload().metrics(autoencoder, None, PROBS, 1, None)


# the torchmetrics reference runs in a subprocess without torchvision (conftest.HIDE_TORCHVISION)
TORCHMETRICS = HIDE_TORCHVISION + """
from torchmetrics.functional.classification import multiclass_calibration_error

probs, labels = torch.load(sys.argv[1])
print(json.dumps([float(multiclass_calibration_error(p, t, num_classes=p.shape[-1], n_bins=15, norm="l1"))
                  for p, t in zip(probs, labels)]))
"""


def _random_predictors(n: int = 3000, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Three replicas of predictions (3, n, classes), float32, and labels (3, n): random logits at
    temperature 2 (overconfident throughout), and two predictors whose top-class confidence u is
    uniform on [0.15, 1) while their accuracy is 1.1 - u (under-confident below 0.55, over-confident
    above), so that the bins' gaps change sign and the binning matters."""
    g = torch.Generator().manual_seed(0)
    probs, labels = [torch.softmax(2 * torch.randn(n, classes, generator=g, dtype=torch.float64), -1)], []
    labels.append(torch.multinomial(torch.full((classes,), 1.0 / classes), n, replacement=True, generator=g))
    for _ in range(2):
        u = 0.15 + 0.85 * torch.rand(n, generator=g, dtype=torch.float64)
        p = ((1 - u) / (classes - 1)).unsqueeze(1).repeat(1, classes)
        top = torch.randint(0, classes, (n,), generator=g)
        p[torch.arange(n), top] = u
        wrong = (top + torch.randint(1, classes, (n,), generator=g)) % classes
        labels.append(torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 1.1 - u, top, wrong))
        probs.append(p)
    return torch.stack(probs).float(), torch.stack(labels)  # torchmetrics bins float32 confidences


@pytest.mark.skipif(importlib.util.find_spec("torchmetrics") is None, reason="torchmetrics is not installed")
def test_ece_matches_torchmetrics_on_random_predictors(tmp_path):
    probs, labels = _random_predictors()
    torch.save((probs, labels), tmp_path / "preds.pt")
    done = subprocess.run([sys.executable, "-c", TORCHMETRICS, str(tmp_path / "preds.pt")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reference = torch.tensor(json.loads(done.stdout), dtype=torch.float64)
    top = probs.max(-1)
    correct = top.indices == labels
    ours = expected_calibration_error(top.values, correct).double()
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
    mean_gap = (top.values.double() - correct.double()).mean(1).abs()
    assert (ours[1:] > mean_gap[1:] + 0.05).all(), "the bins' gaps change sign: the binning is exercised"
