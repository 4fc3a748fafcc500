"""FOOF, "fast first-order optimizer" (Benzing, ICML 2022, arXiv 2201.12250): gradient descent
on the neurons' pre-activations, which amounts to preconditioning each layer's gradient by the
damped second moment of its inputs only:

    W_l <- W_l - lr * V_l (A_l + lambda I)^-1,   A_l = E[a~ a~^T],

with no output-gradient factor, no sampled targets and no extra backward pass (A comes from the
forward pass of the gradient itself). As in the reference code (the research notes P2): A is a running
average with decay ``decay`` (kf_m = 0.95; weight min(1 - 1/t, decay) on the old value at update t,
as K-FAC's statistics here, so both start from the first batch's moments), inverted at update 1
and every ``inverse_every`` updates after it (the script's default 1), constant lr and damping,
tuned per experiment (the claims' notes give the grid), no momentum (the script's default).
Without biases a~ = a (Benzing's nets have none).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.curvature import mlp as C
from bench.models.mlp import MLP
from bench.workloads.method import Method, register


@register("foof", family="mlp", defaults={"lr": 0.1, "damping": 1.0, "decay": 0.95, "inverse_every": 1}, tunable=("lr", "damping"))
class FOOF(Method):
    model: MLP

    def __init__(self, model: MLP, **hparams: Any):
        super().__init__(model, **hparams)
        self.moments = C.RunningAverage(self.decay)
        w = model.weights[0]
        self.damping_per_replica = torch.full((model.replicas,), float(self.damping), dtype=w.dtype, device=w.device)
        self.inverses: list[Tensor] = []
        self.updates = 0  # updates made so far

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        self.updates += 1
        h, grad, stats = C.objective_gradient(self.model, x, y)
        moments = self.moments.update([C.second_moment(a) for a in stats.inputs])
        if (self.updates - 1) % self.inverse_every == 0:
            self.inverses = [C.damped_inverse(a, self.damping_per_replica) for a in moments]
        C.apply_update(self.model, [-self.lr * C.precondition(v, ai) for v, ai in zip(grad, self.inverses)])
        return {"batch_objective": h}
