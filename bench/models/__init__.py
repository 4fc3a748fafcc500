"""Model families, built from a claim's `model:` config. Every model has a leading replica axis.

A family is a class in a module of this package decorated with ``@register_family("name")``;
every module here is imported on first use, so adding a family is adding a file. A family's
constructor takes ``seeds`` (one replica per seed) plus the config keys a claim may set.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from torch import nn

from bench.errors import ConfigError, check_keys, unknown

_FAMILIES: dict[str, type[nn.Module]] = {}


def register_family(name: str):
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        cls.family = name
        _FAMILIES[name] = cls
        return cls

    return wrap


def families() -> dict[str, type[nn.Module]]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(_FAMILIES)


def model_keys(family: str) -> set[str]:
    """Config keys a family accepts (its constructor arguments except the seeds)."""
    known = families()
    if family not in known:
        raise unknown("model family", str(family), known)
    return set(inspect.signature(known[family]).parameters) - {"seeds"}


def build_model(config: dict, seeds: list[int]) -> nn.Module:
    """Instantiate `config['family']` with the remaining keys, one replica per seed."""
    config = dict(config)
    family = config.pop("family", None)
    if family is None:
        raise ConfigError(f"model config {config} has no 'family'; known families: {', '.join(families())}")
    check_keys(f"model config of family {family!r}", config, model_keys(family))
    return families()[family](seeds=seeds, **config)
