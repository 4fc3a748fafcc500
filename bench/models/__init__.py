"""Model families, built from a claim's `model:` config. Every model has a leading replica axis."""

from __future__ import annotations

import inspect

from torch import nn

from bench.errors import ConfigError, check_keys, unknown
from bench.models.helmholtz import HelmholtzMachine

FAMILIES: dict[str, type[nn.Module]] = {
    "helmholtz": HelmholtzMachine,
}


def model_keys(family: str) -> set[str]:
    """Config keys a family accepts (its constructor arguments except the seeds)."""
    if family not in FAMILIES:
        raise unknown("model family", family, FAMILIES)
    return set(inspect.signature(FAMILIES[family]).parameters) - {"seeds"}


def build_model(config: dict, seeds: list[int]) -> nn.Module:
    """Instantiate `config['family']` with the remaining keys, one replica per seed."""
    config = dict(config)
    family = config.pop("family", None)
    if family is None:
        raise ConfigError(f"model config {config} has no 'family'; known families: {', '.join(FAMILIES)}")
    check_keys(f"model config of family {family!r}", config, model_keys(family))
    return FAMILIES[family](seeds=seeds, **config)
