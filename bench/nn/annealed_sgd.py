"""SGD with momentum whose learning rate decays linearly to 0 (Tieleman, ICML 2008, trains RBMs
by CD and PCD with such a schedule), the optimiser of methods/cd.py and methods/pcd.py. Acts
element-wise (torch.optim.SGD), so replicas stay independent."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from bench.core.errors import ConfigError


class AnnealedSGD:
    """lr_t = lr * max(0, 1 - t / anneal_updates) for update t = 0, 1, ... (anneal_updates = 0: a
    constant lr). Raises ConfigError for a negative anneal_updates."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float, anneal_updates: int):
        if anneal_updates < 0:
            raise ConfigError(f"anneal_updates={anneal_updates!r}: use 0 (a constant rate) or the number of updates "
                              f"over which the rate decays linearly to 0")
        self.opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
        self.schedule = torch.optim.lr_scheduler.LinearLR(self.opt, 1.0, 0.0, anneal_updates) if anneal_updates else None

    def descend(self, objective: Tensor) -> None:
        """One step down the gradient of objective.sum() (objective (R,): one term per replica)."""
        self.opt.zero_grad(set_to_none=True)
        objective.sum().backward()
        self.opt.step()
        if self.schedule is not None:
            self.schedule.step()
