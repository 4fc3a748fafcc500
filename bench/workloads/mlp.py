"""Workload of the networks trained by the optimizers: multilayer perceptrons (``mlp`` family:
classifiers and deep autoencoders) and convolutional classifiers (``convnet``, bench.models.convnet).

Protocol: per-replica means over the evaluated examples of 'loss' = -log p(t | x) in nats per case
(without the weight cost) and 'error' = the papers' error: for autoencoders the squared
reconstruction error per case sum_d (E[t_d] - x_d)^2 (Martens & Grosse's errtype 'L2'), for
classifiers the misclassification rate; classifiers also report 'ece', the expected calibration
error of the top label (`expected_calibration_error`: 15 equal-width bins, l1). Health: a training
objective that blows up beyond 10x its start, or a training loss pinned near 0 (under 0.1% of its
start: the training set is memorised, saturated).

Final analyses (`final_metrics`), once at the end of a run whose `final_eval_splits` name 'train':
Keskar et al.'s sharpness (ICLR 2017, eq. 4; bench.estimators.sharpness) of the training loss
f = mean -log p(t | x) (no weight cost) over the first SHARPNESS_EXAMPLES evaluated training
examples, in the full parameter space (A = I), for each eps of SHARPNESS_EPS ('sharpness_1e-3',
'sharpness_5e-4', percent), with L-BFGS-B limited to Keskar's 10 iterations, in float64, per replica.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call

from bench.estimators.sharpness import Loss, sharpness
from bench.models.mlp import Network
from bench.workloads import Workload, register_workload
from bench.workloads.health import Check, blow_up, pinned_at_zero
from bench.workloads.method import Method

EVAL_CHUNK = 2000
ECE_BINS = 15  # Guo et al. (2017) and torchmetrics' default
SHARPNESS_EPS = {"sharpness_1e-3": 1e-3, "sharpness_5e-4": 5e-4}  # Keskar et al.'s two box sizes
SHARPNESS_EXAMPLES = 1000  # the fixed subset of training examples the sharpness is measured on


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


def replica_loss(model: Network, r: int, x: Tensor, y: Tensor | None) -> tuple[Loss, Tensor]:
    """Replica r's training loss as a function of its flat float64 parameters: (f, theta_r) with
    f(theta) = mean_n -log p(t_n | x_n; theta) over x (N, D) (labels y (N,) or None), theta (P,)
    the replica's weights and biases in `model.named_parameters()` order."""
    names, shapes = zip(*((name, p.shape[1:]) for name, p in model.named_parameters()))
    theta = torch.cat([p[r].detach().double().flatten() for _, p in model.named_parameters()])
    x64 = x.double().unsqueeze(0)
    t = model.target(x64, None if y is None else y.unsqueeze(0))
    sizes = [s.numel() for s in shapes]

    def f(vector: Tensor) -> Tensor:
        params = {name: v.view(1, *shape) for name, v, shape in zip(names, vector.split(sizes), shapes)}
        return model.nll(functional_call(model, params, (x64,)), t).mean()

    return f, theta


@register_workload("mlp", "convnet")
class MLPWorkload(Workload):
    tuning_metric = ("loss", False)

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("batch_objective", higher_is_better=False), pinned_at_zero("batch_objective"),
                pinned_at_zero("loss")]

    @torch.no_grad()
    def metrics(self, model: Network, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        total = {"loss": 0.0, "error": 0.0}
        confidence, correct = [], []
        n = x.shape[1]
        for start in range(0, n, EVAL_CHUNK):
            xs = x[:, start:start + EVAL_CHUNK]
            t = model.target(xs, None if y is None else y[:, start:start + EVAL_CHUNK])
            z = model(xs)
            total["loss"] = total["loss"] + model.nll(z, t).sum(1)
            if model.loss == "categorical":
                top = torch.softmax(z.double(), -1).max(-1)
                confidence.append(top.values)
                correct.append(top.indices == t)
                err = (z.argmax(-1) != t).to(z.dtype).sum(1)
            else:
                mean = torch.sigmoid(z) if model.loss == "bernoulli" else z
                err = (mean - t).square().sum(-1).sum(1)
            total["error"] = total["error"] + err
        out = {name: value / n for name, value in total.items()}
        if model.loss == "categorical":
            out["ece"] = expected_calibration_error(torch.cat(confidence, 1), torch.cat(correct, 1))
        return out

    def final_metrics(self, model: Network, x: Tensor, y: Tensor | None, split: str) -> dict[str, Tensor]:
        """Keskar's sharpness (percent) of each replica's training loss on the first
        SHARPNESS_EXAMPLES examples of x (R, N, D), at each eps of SHARPNESS_EPS: name -> (R,);
        nothing on splits other than 'train'."""
        if split != "train":
            return {}
        n = SHARPNESS_EXAMPLES
        out = {name: torch.empty(model.replicas, dtype=torch.float64) for name in SHARPNESS_EPS}
        for r in range(model.replicas):
            f, theta = replica_loss(model, r, x[r, :n], None if y is None else y[r, :n])
            for name, eps in SHARPNESS_EPS.items():
                out[name][r] = sharpness(f, theta, eps).value
        return out
