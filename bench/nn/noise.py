"""Sampling noise drawn per replica, so a seed's numbers do not depend on the seeds beside it.

R seeds train in lock-step as replicas of one model (the leading axis of every tensor). Inside
``replica_noise(seeds, device)`` every random draw of the models and estimators goes through
``rand``/``randn`` below, and replica r's slice comes from its own generator, seeded by seeds[r]:
seed 3 trained alone and seed 3 trained beside seeds 0-4 draw the same noise, step for step, so a
reader can rerun any one seed (tests/test_reproducibility.py). Outside the context (unit tests,
one-off analyses) the draws use torch's global generator.

Evaluation has generators of its own (``evaluation_noise``): inside it, replica r draws from a
generator seeded by a hash of (the evaluation's key, seeds[r]), made afresh for each evaluation and
leaving the training generators untouched. So training does not depend on the evaluation settings
(how often, at which K: tests/test_eval_noise.py), an evaluation's numbers depend on the model, the
seed and its key only (not on the evaluations before it), and a checkpoint saves no evaluation state.

Draws must have the replica axis first; a draw whose leading size is not R inside the context is a
programming error and raises.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

_generators: list[torch.Generator] | None = None  # the generators draws come from now
_replicas: tuple[tuple[int, ...], torch.device | str] | None = None  # the seeds and device of replica_noise


def replica_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per replica, seeded by its seed: replica r's initialisation, data order and
    noise depend on seeds[r] only."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


@contextmanager
def replica_noise(seeds: Sequence[int], device: torch.device | str) -> Iterator[None]:
    """Draw replica r's noise from its own generator seeded by `seeds[r]` (on `device`)."""
    global _generators, _replicas
    previous = _generators, _replicas
    _generators, _replicas = replica_generators(seeds, device), (tuple(int(s) for s in seeds), device)
    try:
        yield
    finally:
        _generators, _replicas = previous


def evaluation_seed(key: Sequence[object], seed: int) -> int:
    """The seed of replica `seed`'s evaluation generator for the evaluation named by `key`: a CRC-32
    of both (32 bits: a CPU generator keeps only the low 32 bits of its seed, so an offset of 2**32
    would repeat the training stream)."""
    return zlib.crc32("/".join(map(str, ("evaluation", *key, seed))).encode())


@contextmanager
def evaluation_noise(*key: object) -> Iterator[None]:
    """Inside `replica_noise`, draw from fresh per-replica evaluation generators seeded by
    `evaluation_seed(key, seeds[r])` (e.g. key = (split, step, K)); the training generators neither
    draw nor move. Outside it, draws keep using torch's global generator."""
    global _generators
    if _replicas is None:
        yield
        return
    previous = _generators
    seeds, device = _replicas
    _generators = replica_generators([evaluation_seed(key, s) for s in seeds], device)
    try:
        yield
    finally:
        _generators = previous


def states() -> list[Tensor]:
    """The active generators' states (a checkpoint's share of the noise: taken between evaluations,
    they are the training generators; evaluation ones are made afresh each time)."""
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
