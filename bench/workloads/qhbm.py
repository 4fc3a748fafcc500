"""Workload of QHBMs preparing a Gibbs state (``qhbm`` family): variational quantum thermalization of
the transverse-field Ising ring (Sbahi et al. 2022, arXiv 2206.04663; bench/models/qhbm.py).

There is no data: the problem (qubits, field, beta) is stated in the model config, and a run reads
the placeholder dataset ``dataset_free`` (bench/engine/data.py), whose batch every method ignores,
one full-batch step (one outer iteration) per epoch.

Protocol, per replica, exact in dense complex128 simulation (no sampling, so the evaluation K plays
no part), the same on every split the run evaluates:

* 'vqt_loss': L = beta tr(rho H) - S(rho) (nats), whose minimum is -log Z_beta;
* 'relative_entropy': D(rho || sigma_beta) = L + log Z_beta (nats), the distance to the target
  (the claims' metric and, without a sweep, the tuning score, lower is better);
* 'fidelity': the Uhlmann fidelity F(rho, sigma_beta) in [0, 1];
* in a beta sweep (model config ``betas``, ``steps_per_beta``, ``warm_start``; QHBM.advance), the
  three above refer to the current stage's beta, and 'sweep_steps_to_target' is the sum over the
  stages after the first of the outer steps each took before D <= ``target_tolerance`` (a stage
  that never reached it counts its whole budget): Sbahi et al. 2022's warm start across the
  imaginary-time (beta) sweep against a random re-initialisation at each beta.

Health (bench.workloads.health): a relative entropy that blows up or never moves.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.qhbm import QHBM
from bench.workloads import Workload, register_workload
from bench.workloads.health import Check, blow_up, flat_curve
from bench.workloads.method import Method

METRICS = ("vqt_loss", "relative_entropy", "fidelity")
SWEEP_METRIC = "sweep_steps_to_target"


@register_workload("qhbm")
class QHBMWorkload(Workload):
    transforms = ("none",)
    tuning_metric = ("relative_entropy", False)

    def tuning_score(self, model: dict) -> tuple[str, bool]:
        """A sweep is tuned on what its claims read, the steps to the targets (lower is better)."""
        return (SWEEP_METRIC, False) if "betas" in model else self.tuning_metric

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return METRICS + (SWEEP_METRIC,) if "betas" in model else METRICS

    def health_checks(self, model: dict) -> list[Check]:
        return [blow_up("relative_entropy", higher_is_better=False, split="test"), flat_curve("relative_entropy", "test")]

    @torch.no_grad()
    def metrics(self, model: QHBM, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        loss = model.vqt_loss(model.params)
        out = {"vqt_loss": loss, "relative_entropy": loss + model.log_partition,
               "fidelity": model.fidelity_to_target(model.params)}
        if len(model.betas) > 1:
            out[SWEEP_METRIC] = model.steps_to_target[1:].sum(0)
        return out
