"""Workload of the networks trained by the optimizers: multilayer perceptrons (``mlp`` family:
classifiers and deep autoencoders) and convolutional classifiers (``convnet``, bench.models.convnet).

Protocol: per-replica means over the evaluated examples of 'loss' = -log p(t | x) in nats per case
(without the weight cost) and 'error' = the papers' error: for autoencoders the squared
reconstruction error per case sum_d (E[t_d] - x_d)^2 (Martens & Grosse's errtype 'L2'), for
classifiers the misclassification rate; classifiers also report 'ece', the expected calibration
error of the top label (`expected_calibration_error`: 15 equal-width bins, l1). Health: a training
objective that blows up beyond 10x its start, or a training loss pinned near 0 (under 0.1% of its
start: the training set is memorised, saturated).

Reference posterior (a model config with ``reference: nuts``, softmax regression): `prepare` draws
(or reads, cached under bench.core.layout.REFERENCES, once per training set) the NUTS posterior of
the model under the prior N(0, REFERENCE_PRIOR_SIGMA^2) on every weight and bias
(bench.estimators.nuts: its settings, R-hat and ESS; kept on the model as `reference_posterior`, so
it travels in the loop's checkpoint), and every evaluation adds how far the method's
predictive (its `predictive_samplers`, or the network itself for a point estimate) lies from the
NUTS predictive on the evaluated inputs (bench.workloads.predictive.reference_distances:
``kl_to_reference``, ``tv_to_reference``) and the reference's health, ``reference_rhat`` (worst
split R-hat) and ``reference_ess`` (worst bulk ESS); a reference whose R-hat reaches RHAT_LIMIT
makes the run degenerate.

Final analyses (`final_metrics`), once at the end of a run whose `final_eval_splits` name 'train':
Keskar et al.'s sharpness (ICLR 2017, eq. 4; bench.estimators.sharpness) of the training loss
f = mean -log p(t | x) (no weight cost) over the first SHARPNESS_EXAMPLES evaluated training
examples, in the full parameter space (A = I), for each eps of SHARPNESS_EPS ('sharpness_1e-3',
'sharpness_5e-4', percent), with L-BFGS-B limited to Keskar's 10 iterations, in float64, per replica.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.func import functional_call

from bench.core.layout import REFERENCES
from bench.estimators.nuts import RHAT_LIMIT, Posterior, Settings, cached_posterior, softmax_regression_logits
from bench.estimators.sharpness import Loss, sharpness
from bench.models.mlp import Network
from bench.workloads import Workload, register_workload
from bench.workloads.calibration import expected_calibration_error
from bench.workloads.health import Check, blow_up, exceeds, pinned_at_zero
from bench.workloads.method import Method
from bench.workloads.predictive import reference_distances, sample_log_probs

EVAL_CHUNK = 2000
SHARPNESS_EPS = {"sharpness_1e-3": 1e-3, "sharpness_5e-4": 5e-4}  # Keskar et al.'s two box sizes
SHARPNESS_EXAMPLES = 1000  # the fixed subset of training examples the sharpness is measured on
REFERENCE_PRIOR_SIGMA = 1.0  # the NUTS reference's prior N(0, 1): Bayes by backprop's default prior
REFERENCE_SETTINGS = Settings()  # 2 chains of 300 warm-up and 300 kept iterations, tree depth <= 6


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
        checks = [blow_up("batch_objective", higher_is_better=False), pinned_at_zero("batch_objective"),
                  pinned_at_zero("loss")]
        if model.get("reference"):
            checks.append(exceeds("reference_rhat", RHAT_LIMIT, "NUTS reference not converged"))
        return checks

    def prepare(self, model: Network, x_train: Tensor, y_train: Tensor | None = None) -> None:
        """The model's NUTS reference posterior (module docstring) when its config asks for one.
        Raises ValueError without labels."""
        if model.reference is None:
            return
        if y_train is None:
            raise ValueError("reference 'nuts' is a classifier's posterior: the run needs labels (labels: true)")
        model.reference_posterior = cached_posterior(x_train, y_train, model.layers[-1], REFERENCE_PRIOR_SIGMA, REFERENCES,
                                                  REFERENCE_SETTINGS)

    def reference_metrics(self, model: Network, method: Method, x: Tensor, k: int) -> dict[str, Tensor]:
        """The distances of the method's predictive on x (R, N, D) to the NUTS reference's, and
        the reference's R-hat and ESS: name -> (R,) float64."""
        posterior: Posterior = model.reference_posterior
        samplers = method.predictive_samplers(k) or [model]
        log_p = sample_log_probs(samplers, x)
        logits = softmax_regression_logits(posterior.flat.to(x.device), x[0], model.layers[-1])
        log_ref = torch.logsumexp(torch.log_softmax(logits, -1), 0) - math.log(logits.shape[0])
        health = {"reference_rhat": posterior.rhat, "reference_ess": posterior.ess}
        return reference_distances(log_p, log_ref) | {
            name: torch.full((model.replicas,), value, dtype=torch.float64, device=x.device)
            for name, value in health.items()}

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
        if model.reference_posterior is not None:
            out |= self.reference_metrics(model, method, x, k)
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
