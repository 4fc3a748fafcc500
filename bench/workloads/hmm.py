"""Workload of hidden Markov models with categorical emissions (``categorical_hmm`` family).

Data: binary rows of D = T (V - 1) bits, read as T consecutive groups of V - 1 indicator bits, one
group per position; a group with bit i set is symbol i, the all-zero group is symbol V - 1
(`decode_indicators`). That is how ``uci_dna`` stores its 60 nucleotides: 180 bits = 60 groups of 3,
every group with at most one bit set (checked on all 3186 rows; the four patterns 100, 010, 001 and
000 each cover 23-27% of the training positions), so V = 4 symbols and T = 60. The symbols are
numbered by bit pattern (100 -> 0, 010 -> 1, 001 -> 2, 000 -> 3); which nucleotide each pattern
stands for is not used (two public descriptions of the StatLog encoding disagree on it), and no
log-likelihood depends on it. A row that is not such an encoding is a ValueError.

Protocol: 'll' is the exact log p(o) of each sequence by the forward algorithm (float64; nats per
sequence; no estimator, so the evaluation K plays no part), with its standard error over the
evaluated sequences ('ll_sem'). Static binary data only (transform 'none').

Health (bench.workloads.health): a test log-likelihood that blows up or never moves; and, for
claims judged on Baum-Welch's 'll_decrease' (methods/baum_welch.py), a run that is not full-batch
(bench.workloads.monotone.not_full_batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.hmm import CategoricalHMM
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check
from bench.workloads.method import Method
from bench.workloads.monotone import em_checks


def decode_indicators(x: Tensor, symbols: int) -> Tensor:
    """Symbols o (..., T) long from indicator bits x (..., T (V - 1)) in {0, 1}, V = `symbols`: per
    group of V - 1 bits, the index of its set bit, or V - 1 when none is set. A ValueError when the
    width is not a multiple of V - 1, a value is not 0 or 1, or a group has more than one bit set."""
    width = symbols - 1
    if x.shape[-1] % width:
        raise ValueError(f"{x.shape[-1]} bits are not groups of {width} indicators of {symbols} symbols")
    if ((x != 0) & (x != 1)).any():
        raise ValueError("indicator bits must be 0 or 1")
    groups = x.reshape(*x.shape[:-1], x.shape[-1] // width, width)
    ones = groups.sum(-1)
    if (ones > 1).any():
        raise ValueError(f"a group of {width} indicator bits has more than one bit set: not one of {symbols} symbols")
    return torch.where(ones == 0, width, groups.argmax(-1))


@register_workload("categorical_hmm")
class CategoricalHMMWorkload(Workload):
    transforms = ("none",)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return ("ll",)

    def health_checks(self, model: dict) -> list[Check]:
        return em_checks("test")

    @torch.no_grad()
    def metrics(self, model: CategoricalHMM, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        return with_sem("ll", model.log_prob(decode_indicators(x, model.symbols)))
