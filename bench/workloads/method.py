"""The Method protocol: what a file in ``methods/`` implements.

A method is one class registered by name::

    @register("rws", family="helmholtz", defaults={"lr": 0.1, "k": 5})
    class RWS(Method):
        def step(self, x): ...   # x: (R, B, D); returns per-replica scalars (R,)

It owns its update and nothing else: the engine (``bench.engine.train``) owns the loop, the clock
and the data; the workload of its model family (``bench.workloads``) owns evaluation. A method may
*add* evaluation metrics (``extra_metrics``: its own bound, a diagnostic it needs) and, for a
latent-variable model that trains no recognition network, supply the importance-sampling proposal
(``proposal``); it never replaces a workload's metric (a clash is an error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.core.registry import Registry

METHODS: Registry[type["Method"]] = Registry("method", packages=("methods",))
LogWeightFn = Callable[[Tensor, int], Tensor]  # (x (R, B, D'), k) -> log-weights (R, k, B)


class Method:
    """Base class. Subclasses get `name`, `family`, `defaults` through @register."""

    name: ClassVar[str]
    family: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]

    def __init__(self, model: nn.Module, **hparams: Any):
        """hparams override the registered defaults (the engine has already checked their keys
        with `resolve_hparams`); each becomes an attribute, e.g. self.lr."""
        self.model = model
        self.hparams = {**self.defaults, **hparams}
        for key, value in self.hparams.items():
            setattr(self, key, value)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One update on the minibatch x (R, B, D) (and labels y (R, B) for runs with labels).
        Return per-replica training scalars, shape (R,)."""
        raise NotImplementedError

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """Metrics this method adds to its workload's on x (R, N, D) with k samples: name -> (R,).
        None by default; names must not clash with the workload's."""
        return {}

    def proposal(self, x: Tensor) -> list[tuple[Tensor, LogWeightFn]] | None:
        """The importance-sampling proposal of a latent-variable workload's 'll' on x (R, N, D):
        chunks (inputs, log-weight function), the inputs possibly carrying per-example proposal
        parameters. None (the default): the model's own recognition network, model.log_weights."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}


def register(name: str, family: str, defaults: dict[str, Any]):
    """Class decorator: register a Method under `name` for models of `family`."""

    def wrap(cls: type[Method]) -> type[Method]:
        cls.name, cls.family, cls.defaults = name, family, dict(defaults)
        return METHODS.add(name, cls)

    return wrap


def finite_mask(values: dict[str, Tensor]) -> Tensor:
    """Per-replica True where every returned scalar is finite."""
    masks = [torch.isfinite(v.detach()).reshape(v.shape[0], -1).all(-1) for v in values.values()]
    return torch.stack(masks).all(0)
