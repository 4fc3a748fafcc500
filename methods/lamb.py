"""LAMB, layer-wise adaptive moments (You et al. 2020, "Large Batch Optimization for Deep Learning:
Training BERT in 76 minutes", ICLR 2020, arXiv 1904.00962, Algorithm 2) on an MLP or convnet objective.

Per layer l of each replica, with g = grad h on the minibatch at update t (h: the model's objective,
as for Adam), learning rate eta (``lr``), decays beta1, beta2, eps and weight decay lambda:

    m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
    m^ = m / (1 - beta1^t),         v^ = v / (1 - beta2^t)
    r_l = m^ / (sqrt(v^) + eps) + lambda W_l
    W_l <- W_l - eta phi(||W_l||) / ||r_l|| r_l,   phi = identity

The norms are taken per replica and per layer (weights (R, out, in), convolution kernels
(R, out, in, k, k): one trust ratio ||W_l|| / ||r_l|| per (r, l)), so replicas never mix. Biases are excluded from the trust ratio and
the weight decay, as in the reference implementation (its exclude_from_layer_adaptation follows
exclude_from_weight_decay): b <- b - eta r with r = m^ / (sqrt(v^) + eps). Where ||W_l|| or
||r_l|| is 0 the trust ratio is 1. Constant eta (the paper's warm-up and polynomial decay need the
run's length, which a method is not given). Defaults: beta1 0.9, beta2 0.999, eps 1e-6 (the research
notes recall them as the paper's; unverified), no weight decay (a claim sets lambda).
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


class LAMBOptimizer(torch.optim.Optimizer):
    """Algorithm 2 on parameters with a leading replica axis: group 'layerwise' True (weights) gets
    the trust ratio and the weight decay, False (biases) the bias-corrected Adam step alone."""

    def __init__(self, weights: Iterable[nn.Parameter], biases: Iterable[nn.Parameter], lr: float,
                 beta1: float, beta2: float, eps: float, weight_decay: float):
        groups = [{"params": list(weights), "layerwise": True, "weight_decay": weight_decay}]
        biases = list(biases)
        if biases:
            groups.append({"params": biases, "layerwise": False, "weight_decay": 0.0})
        super().__init__(groups, {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["beta1"], group["beta2"]
            for w in group["params"]:
                g, state = w.grad, self.state[w]
                if not state:
                    state.update(t=0, m=torch.zeros_like(w), v=torch.zeros_like(w))
                state["t"] += 1
                state["m"].mul_(beta1).add_((1 - beta1) * g)
                state["v"].mul_(beta2).add_((1 - beta2) * g.square())
                m_hat = state["m"] / (1 - beta1 ** state["t"])
                v_hat = state["v"] / (1 - beta2 ** state["t"])
                r = m_hat / (v_hat.sqrt() + group["eps"]) + group["weight_decay"] * w
                ratio: Tensor | float = 1.0
                if group["layerwise"]:
                    dims = tuple(range(1, w.dim()))  # per replica: all but the leading axis
                    w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                    r_norm = torch.linalg.vector_norm(r, dim=dims, keepdim=True)
                    ratio = torch.where((w_norm > 0) & (r_norm > 0), w_norm / r_norm, torch.ones_like(w_norm))
                w.sub_(group["lr"] * ratio * r)


@register("lamb", family=("mlp", "convnet"),
          defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-6, "weight_decay": 0.0})
class LAMB(Method):
    model: MLP | ConvNet

    def __init__(self, model: MLP | ConvNet, **hparams: Any):
        super().__init__(model, **hparams)
        self.opt = LAMBOptimizer(model.weights, model.biases or [], lr=self.lr, beta1=self.beta1,
                                 beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        return {"batch_objective": first_order_step(self.model, self.opt, x, y)}
