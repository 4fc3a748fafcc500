"""Sampling noise drawn per replica, so a seed's numbers do not depend on the seeds beside it.

R seeds train in lock-step as replicas of one model (the leading axis of every tensor). Inside
``replica_noise(seeds, device)`` every random draw of the models and estimators goes through
``rand``/``randn`` below, and replica r's slice comes from its own generator, seeded by seeds[r]:
seed 3 trained alone and seed 3 trained beside seeds 0-4 draw the same noise, step for step, so a
reader can rerun any one seed (tests/test_reproducibility.py). Outside the context (unit tests,
one-off analyses) the draws use torch's global generator.

Draws must have the replica axis first; a draw whose leading size is not R inside the context is a
programming error and raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

_generators: list[torch.Generator] | None = None


def replica_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per replica, seeded by its seed: replica r's initialisation, data order and
    noise depend on seeds[r] only."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


@contextmanager
def replica_noise(seeds: Sequence[int], device: torch.device | str) -> Iterator[None]:
    """Draw replica r's noise from its own generator seeded by `seeds[r]` (on `device`)."""
    global _generators
    previous = _generators
    _generators = replica_generators(seeds, device)
    try:
        yield
    finally:
        _generators = previous


def states() -> list[Tensor]:
    """The active generators' states (a checkpoint's share of the noise)."""
    return [g.get_state() for g in _generators or []]


def set_states(saved: list[Tensor]) -> None:
    """Restore the active generators from `states()` (a resumed run draws what it would have)."""
    for g, state in zip(_generators or [], saved):
        g.set_state(state)


def _draw(sampler, shape: Sequence[int], like: Tensor) -> Tensor:
    shape = tuple(shape)
    if _generators is None:
        return sampler(shape, dtype=like.dtype, device=like.device)
    if shape[0] != len(_generators):
        raise RuntimeError(f"a per-replica draw of shape {shape} must lead with the {len(_generators)} replicas")
    return torch.stack([sampler(shape[1:], generator=g, dtype=like.dtype, device=like.device)
                        for g in _generators])


def rand(shape: Sequence[int], like: Tensor) -> Tensor:
    """Uniform(0, 1) noise of `shape` (replicas first), with `like`'s dtype and device."""
    return _draw(torch.rand, shape, like)


def randn(shape: Sequence[int], like: Tensor) -> Tensor:
    """Standard normal noise of `shape` (replicas first), with `like`'s dtype and device."""
    return _draw(torch.randn, shape, like)
