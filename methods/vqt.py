"""Plain (Euclidean) gradient descent on the VQT loss of a QHBM: the `vanilla` baseline of Sbahi et
al. 2022 (arXiv 2206.04663; google/qhbm-library baselines/geometry/train.py, method 'vanilla').

One step: the exact gradient of L(psi) = beta tr(rho H) - S(rho) (bench/models/qhbm.py) by autograd,
then one step of the optimizer named by ``optimizer`` (bench.nn.optim.make_optimizer: 'adam' with
torch's defaults, or plain 'sgd', psi <- psi - lr grad L); the library's configs use lr 0.1 (qhbm)
and 0.01 (geometry). Each replica's loss depends on its own parameters only and both optimizers
act element-wise, so the replicas stay independent. Returns the loss before the step, 'vqt_loss'.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from bench.models.qhbm import QHBM
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register


@register("vqt", family="qhbm", defaults={"lr": 0.1, "optimizer": "adam"}, choices={"optimizer": ("adam", "sgd")})
class VQT(Method):
    model: QHBM

    def __init__(self, model: QHBM, **hparams: Any):
        super().__init__(model, **hparams)
        self.opt = make_optimizer([model.params], self.optimizer, self.lr)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        if self.model.advance():  # a new target: Adam's moments start afresh
            self.opt = make_optimizer([self.model.params], self.optimizer, self.lr)
        loss = self.model.vqt_loss(self.model.params)  # (R,)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.opt.step()
        return {"vqt_loss": loss.detach()}
