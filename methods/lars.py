"""LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, "Large Batch Training of
Convolutional Networks", arXiv 1708.03888, Algorithm 1 and eq. 6) on an MLP or convnet objective.

Per layer l of each replica, with g = grad h on the minibatch (h: the model's objective, as for SGD),
global learning rate gamma (``lr``), momentum m, weight decay beta and trust coefficient eta:

    lambda_l = eta ||W_l|| / (||g_l|| + beta ||W_l||)          (local LR, eq. 6; norms: Frobenius)
    v_l     <- m v_l + gamma lambda_l (g_l + beta W_l),   W_l <- W_l - v_l

The norms are taken per replica and per layer (weights (R, out, in), convolution kernels
(R, out, in, k, k): one lambda per (r, l), a kernel's norm over all its out x in x k x k entries), so
replicas never mix. Biases are excluded from the scaling and the weight decay (the paper skips them
with the batch-norm parameters): v <- m v + gamma g, b <- b - v. Where ||W_l|| or ||g_l|| is 0 the
local LR is 1 (as the reference implementations guard it). Constant gamma: the paper's warm-up and
polynomial decay gamma_t = gamma_0 (1 - t/T)^2 need the run's length, which a method is not given;
the claims say so in their substitutions. Defaults: eta = 0.001 (the research notes recall it as
the paper's; unverified), momentum 0.9, no weight decay (a claim sets beta).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from bench.curvature.mlp import first_order_step
from bench.models.convnet import ConvNet
from bench.models.mlp import MLP
from bench.workloads.method import Method, register


class LARSOptimizer(torch.optim.Optimizer):
    """Algorithm 1 on parameters with a leading replica axis: group 'layerwise' True (weights)
    gets the local LR and the weight decay, False (biases) plain momentum SGD."""

    def __init__(self, weights: Iterable[nn.Parameter], biases: Iterable[nn.Parameter], lr: float,
                 momentum: float, weight_decay: float, trust_coefficient: float):
        groups = [{"params": list(weights), "layerwise": True, "weight_decay": weight_decay}]
        biases = list(biases)
        if biases:
            groups.append({"params": biases, "layerwise": False, "weight_decay": 0.0})
        super().__init__(groups, {"lr": lr, "momentum": momentum, "trust_coefficient": trust_coefficient})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            beta = group["weight_decay"]
            for w in group["params"]:
                g = w.grad
                local: Tensor | float = 1.0
                if group["layerwise"]:
                    dims = tuple(range(1, w.dim()))  # per replica: all but the leading axis
                    w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                    g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
                    ratio = group["trust_coefficient"] * w_norm / (g_norm + beta * w_norm)
                    local = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
                velocity = self.state[w].setdefault("velocity", torch.zeros_like(w))
                velocity.mul_(group["momentum"]).add_(group["lr"] * local * (g + beta * w))
                w.sub_(velocity)


@register("lars", family=("mlp", "convnet"),
          defaults={"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "trust_coefficient": 0.001})
class LARS(Method):
    model: MLP | ConvNet

    def __init__(self, model: MLP | ConvNet, **hparams: Any):
        super().__init__(model, **hparams)
        self.opt = LARSOptimizer(model.weights, model.biases or [], lr=self.lr, momentum=self.momentum,
                                 weight_decay=self.weight_decay, trust_coefficient=self.trust_coefficient)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return {"batch_objective": first_order_step(self.model, self.opt, x, y)}
