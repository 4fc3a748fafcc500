"""Method registry and the Method protocol.

A method is one module in ``methods/`` that registers a class::

    @register("rws", family="helmholtz", defaults={"lr": 0.1, "k": 5})
    class RWS(Method):
        def step(self, x): ...   # x: (R, B, D); returns per-replica scalars (R,)

The harness (``bench.train``) owns the loop, the clock and evaluation; the method owns its update.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.errors import check_keys, unknown

_REGISTRY: dict[str, type["Method"]] = {}


class Method:
    """Base class. Subclasses set `name`, `family`, `defaults` through @register."""

    name: ClassVar[str]
    family: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]

    def __init__(self, model: nn.Module, **hparams: Any):
        """hparams override the registered defaults (the harness has already checked their keys
        with `resolve_hparams`); each becomes an attribute, e.g. self.lr."""
        self.model = model
        self.hparams = {**self.defaults, **hparams}
        for key, value in self.hparams.items():
            setattr(self, key, value)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One update on the minibatch x (R, B, D) (and labels y (R, B) for runs with labels).
        Return per-replica scalars, shape (R,)."""
        raise NotImplementedError

    def evaluate(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """Evaluation metrics on x (R, N, D) with k importance samples: name -> (R,) means.

        The default is the family's standard protocol (``bench.evaluation``); override to add
        method-specific estimates (e.g. BiHM's log p*(x)), keeping the standard ones."""
        from bench.evaluation import standard_metrics

        return standard_metrics(self.model, x, k, y)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}


def register(name: str, family: str, defaults: dict[str, Any]):
    """Class decorator: register a Method under `name` for models of `family`."""

    def wrap(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name].__module__ != cls.__module__:
            raise ValueError(f"method {name!r} registered twice ({_REGISTRY[name].__module__}, {cls.__module__})")
        cls.name, cls.family, cls.defaults = name, family, dict(defaults)
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import every module of the `methods` package so that their @register calls run."""
    import methods

    for info in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"methods.{info.name}")


def all_methods() -> dict[str, type[Method]]:
    _discover()
    return dict(_REGISTRY)


def get_method(name: str) -> type[Method]:
    registry = all_methods()
    if name not in registry:
        raise unknown("method", name, registry)
    return registry[name]


def resolve_hparams(cls: type[Method], overrides: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults updated by `overrides`; unknown keys are a ConfigError."""
    check_keys(f"hyper-parameters of method {cls.name!r}", overrides, cls.defaults)
    return {**cls.defaults, **overrides}


def source_files(cls: type[Method]) -> list[Path]:
    """The method-package files a method's code comes from (its class and its bases), so that
    editing any of them reruns exactly the runs that use the method."""
    files = []
    for klass in inspect.getmro(cls):
        module = inspect.getmodule(klass)
        if module is not None and module.__name__.startswith("methods."):
            path = Path(inspect.getfile(module)).resolve()
            if path not in files:
                files.append(path)
    return files


def finite_mask(values: dict[str, Tensor]) -> Tensor:
    """Per-replica True where every returned scalar is finite."""
    masks = [torch.isfinite(v.detach()).reshape(v.shape[0], -1).all(-1) for v in values.values()]
    return torch.stack(masks).all(0)
