"""Workloads: a model family + its data transform + its evaluation protocol (as AlgoPerf's
workloads and benchopt's Objective own evaluation, not the submission).

One module per family (``helmholtz``, ``gaussian_latent``, ``mlp``) registers a ``Workload`` under
each family name it evaluates. The engine evaluates every run through its workload:
``Workload.evaluate`` returns the workload's standard metrics (the protocol a claim's verdict reads,
with its estimator and K) plus whatever the method adds (``Method.extra_metrics``); a method never
replaces a workload's metric, and a clash of names is an error.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from bench.core.errors import ConfigError
from bench.core.registry import Registry
from bench.workloads.health import Check
from bench.workloads.method import Method

WORKLOADS: Registry["Workload"] = Registry("workload", packages=("bench.workloads",))


class Workload:
    """Evaluation protocol of one model family. Subclasses implement `metrics`."""

    family: ClassVar[str]
    transforms: ClassVar[tuple[str, ...]] = ("none", "dynamic_binarize", "unit_interval")
    tuning_metric: ClassVar[tuple[str, bool]] = ("ll", True)  # (metric, higher is better) tuning scores on 'valid'

    def check_transform(self, model: dict, transform: str) -> None:
        """The data transforms this family's likelihood accepts (see bench.engine.train.prepare_data);
        `model` is the run's model config. A ConfigError names the model, the data and the fix."""
        if transform not in self.transforms:
            raise ConfigError(f"model family {self.family!r} cannot read data with transform {transform!r}; "
                              f"use one of {self.transforms}")

    def prepare(self, model: nn.Module, x_train: Tensor, y_train: Tensor | None = None) -> None:
        """Data-dependent initialisation before the first step, from the training split x_train
        (N, D) and its labels y_train (N,) or None (none by default)."""

    def tuning_score(self, model: dict) -> tuple[str, bool]:
        """(metric, higher is better) that scores a tuning run of the model config `model` on
        'valid': `tuning_metric` unless a family's config changes the problem's measure (a QHBM's
        beta sweep)."""
        return self.tuning_metric

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        """The standard metrics this family computes exactly (no sampling, so no K) for the run's
        model config `model`, e.g. a mixture's log-likelihood by logsumexp; none by default."""
        return ()

    def health_checks(self, model: dict) -> list[Check]:
        """The checks (bench.workloads.health) a run of this family must pass for a verdict to read
        it; `model` is the run's model config."""
        return []

    def metrics(self, model: nn.Module, method: Method, x: Tensor, k: int, y: Tensor | None) -> dict[str, Tensor]:
        """The standard metrics on x (R, N, D) (labels y (R, N) or None) with k samples: name -> (R,)."""
        raise NotImplementedError

    def final_metrics(self, model: nn.Module, x: Tensor, y: Tensor | None, split: str) -> dict[str, Tensor]:
        """Analyses of the trained model too costly for the learning curve (Keskar's sharpness),
        computed once, in the final evaluation of `split`, on x (R, N, D) (labels y (R, N) or None):
        name -> (R,). None by default."""
        return {}

    def evaluate(self, model: nn.Module, method: Method, x: Tensor, k: int, y: Tensor | None = None,
                 final_split: str | None = None) -> dict[str, Tensor]:
        """Standard metrics, then, in the final evaluation of split `final_split` (None on the
        learning curve), the final analyses, then the method's additions (which may not reuse a
        standard name)."""
        out = self.metrics(model, method, x, k, y)
        if final_split is not None:
            out |= self.final_metrics(model, x, y, final_split)
        extra = method.extra_metrics(x, k, y)
        clash = sorted(set(out) & set(extra))
        if clash:
            raise ConfigError(f"method {method.name!r} returns {clash} from extra_metrics, which the {self.family!r} "
                              f"workload already measures; a method may add metrics, never replace them: rename them")
        return {**out, **extra}


def with_sem(name: str, per_example: Tensor) -> dict[str, Tensor]:
    """A per-example metric (R, N) as its mean over the examples and the standard error of that
    mean (`<name>_sem`, std / sqrt(N)): the interval over test examples the report shows beside
    the interval over seeds. Both (R,); no standard error of a single example."""
    n = per_example.shape[1]
    out = {name: per_example.mean(1)}
    if n > 1:
        out[f"{name}_sem"] = per_example.std(1) / n**0.5
    return out


def register_workload(*families: str):
    """Class decorator: one instance evaluates every family named."""

    def wrap(cls: type[Workload]) -> type[Workload]:
        for family in families:
            instance = cls()
            instance.family = family
            WORKLOADS.add(family, instance)
        return cls

    return wrap


def workload_for(family: str) -> Workload:
    return WORKLOADS.get(family)
