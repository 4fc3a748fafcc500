"""Model families, built from a claim's `model:` config. Every model has a leading replica axis.

A family is a class in a module of this package decorated with ``@register_family("name")``;
every module here is imported on first use, so adding a family is adding a file. A family's
constructor takes ``seeds`` (one replica per seed) plus the config keys a claim may set. How a
family is evaluated is its workload's business (``bench/workloads/``), not the model's.
"""

from __future__ import annotations

import inspect

from torch import nn

from bench.core.errors import ConfigError, check_keys
from bench.core.registry import Registry

FAMILIES: Registry[type[nn.Module]] = Registry("model family", packages=("bench.models",))


def register_family(name: str):
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        cls.family = name
        return FAMILIES.add(name, cls)

    return wrap


def model_keys(family: str) -> set[str]:
    """Config keys a family accepts (its constructor arguments except the seeds)."""
    return set(inspect.signature(FAMILIES.get(str(family))).parameters) - {"seeds"}


def build_model(config: dict, seeds: list[int]) -> nn.Module:
    """Instantiate `config['family']` with the remaining keys, one replica per seed."""
    config = dict(config)
    family = config.pop("family", None)
    if family is None:
        raise ConfigError(f"model config {config} has no 'family'; known families: {', '.join(FAMILIES)}")
    check_keys(f"model config of family {family!r}", config, model_keys(family))
    params = inspect.signature(FAMILIES.get(family)).parameters
    missing = [name for name, p in params.items() if p.default is inspect.Parameter.empty and name != "seeds"
               and name not in config]
    if missing:
        raise ConfigError(f"model family {family!r} needs {', '.join(map(repr, missing))} (got {sorted(config)}); "
                          f"in a claim set them under `model:`, on the command line with --model KEY=VALUE")
    return FAMILIES.get(family)(seeds=seeds, **config)
