"""Exact (subsampled) natural gradient, Benzing's (2022) `natural` optimizer and the exact
second-order baseline of his claim that K-FAC beats it:

    theta <- theta - lr * (F + lambda I)^-1 grad h,

F the Fisher of the whole network (no block or Kronecker structure) estimated with one target
per case drawn from the model (his default MC Fisher), solved exactly through the Woodbury
identity in the sample space (bench.curvature.natural_gradient). The Fisher minibatch must be
independent of the gradient's: as in his code, it is the previous step's minibatch (at the
current parameters); the first step uses the current one. In full-batch training both are the
whole training set. Constant lr and damping, tuned per experiment (the claims' notes give the
grid); no momentum (the script's default).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bench.curvature import mlp as C
from bench.models.mlp import MLP
from bench.workloads.method import Method, register


@register("ngd", family="mlp", defaults={"lr": 1.0, "damping": 1.0}, tunable=("lr", "damping"))
class NGD(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        self.previous: Tensor | None = None

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        stats = C.sampled_statistics(self.model, x if self.previous is None else self.previous)
        h, grad, _ = C.objective_gradient(self.model, x, y)
        C.apply_update(self.model, [-self.lr * d for d in C.natural_gradient(stats, grad, self.damping)])
        self.previous = x
        return {"batch_objective": h}
