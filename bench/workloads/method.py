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

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.core.registry import Registry

METHODS: Registry[type["Method"]] = Registry("method", packages=("methods",))
LogWeightFn = Callable[[Tensor, int], Tensor]  # (x (R, B, D'), k) -> log-weights (R, k, B)
Sampler = Callable[[Tensor], Tensor]  # inputs (R, N, D) -> one posterior sample's outputs (R, N, out)


class Method:
    """Base class. Subclasses get `name`, `family`, `defaults` and `choices` through @register."""

    name: ClassVar[str]
    family: ClassVar[str]  # the first of `families`: the family a run from command-line flags builds
    families: ClassVar[tuple[str, ...]] = ()  # every model family it trains (see `trained_families`)
    defaults: ClassVar[dict[str, Any]]
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}  # hyper-parameter -> its allowed values
    tunable: ClassVar[tuple[str, ...]] = ("lr",)  # the knobs the equal-budget tuning searches (log-spaced)
    # True when `lr` acts only through bench.nn.optim.make_optimizer on (R, ...) parameters: the tuning
    # may then train a learning-rate grid as the replicas of one run (bench.engine.train.run_packed)
    packs_lr: ClassVar[bool] = False
    train_size: int | None = None  # N and the training split's classes, from `prepare`
    classes_seen: Tensor | None = None

    def __init__(self, model: nn.Module, **hparams: Any):
        """hparams override the registered defaults (the engine has already checked their keys
        with `resolve_hparams`); each becomes an attribute, e.g. self.lr."""
        self.model = model
        self.hparams = {**self.defaults, **hparams}
        for key, value in self.hparams.items():
            setattr(self, key, value)

    def prepare(self, train_size: int, classes: Tensor | None = None) -> None:
        """Called once by the loop before the first step with N, the run's number of training
        examples (after train_subset, held-out classes and a tuning run's carved validation split),
        recorded for `training_examples`, and, for runs with labels, the classes (C',) the training
        split holds (`classes_seen`; a claim may hold some out to probe the predictive on them)."""
        self.train_size, self.classes_seen = train_size, classes

    def training_examples(self) -> int:
        """N from `prepare`: the data term's weight of a posterior (Bayes by backprop's KL over N,
        Langevin's N/B). Raises RuntimeError before `prepare` (the loop calls it; a test must)."""
        if self.train_size is None:
            raise RuntimeError(f"{self.name}: call prepare(train_size) before training (the loop does)")
        return self.train_size

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One update on the minibatch x (R, B, D) (and labels y (R, B) for runs with labels).
        Return per-replica training scalars, shape (R,)."""
        raise NotImplementedError

    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """Metrics this method adds to its workload's on x (R, N, D) with k samples: name -> (R,).
        None by default; names must not clash with the workload's."""
        return {}

    def predictive_samplers(self, k: int) -> Sequence[Sampler] | None:
        """The S samplers of this method's posterior predictive with k samples (bench.workloads.
        predictive: k weight draws or dropout passes, the M ensemble members, a chain's kept
        samples), for a workload that measures the predictive against a reference posterior. None
        (the default, or before a sampler has kept a sample): the point estimate, the model itself."""
        return None

    def proposal(self, x: Tensor) -> list[tuple[Tensor, LogWeightFn]] | None:
        """The importance-sampling proposal of a latent-variable workload's 'll' on x (R, N, D):
        chunks (inputs, log-weight function), the inputs possibly carrying per-example proposal
        parameters. None (the default): the model's own recognition network, model.log_weights."""
        return None

    def impute(self, x: Tensor) -> Tensor | None:
        """The method's imputation of the missing (NaN) entries of x (R, N, D): x with them filled in
        (R, N, D), the observed entries kept, for a workload's imputation error on a data set with
        missing values. None (the default): the method imputes nothing of its own."""
        return None

    @classmethod
    def trained_families(cls) -> tuple[str, ...]:
        """The model families this method trains: its registered `families`, or (family,) for a
        class given only a `family`."""
        return cls.families or (cls.family,)

    @classmethod
    def family_mismatch(cls, family: str, whose: str = "the claim's model") -> str | None:
        """None when this method trains models of `family`; else the message that says so and
        names the methods that do (the claim schema and a run from a spec raise it)."""
        if family in cls.trained_families():
            return None
        fit = sorted(n for n, c in METHODS.all().items() if family in c.trained_families())
        return (f"method {cls.name!r} trains {' and '.join(map(repr, cls.trained_families()))} models, {whose} is "
                f"{family!r}: use a method that trains {family!r} models ({', '.join(fit) or 'none'}) or a model "
                f"family {cls.name!r} trains")

    @classmethod
    def tuned_knobs(cls, hparams: dict[str, Any]) -> tuple[str, ...]:
        """The hyper-parameters the equal-budget tuning searches for this configuration (its step
        size first, then at most one or two knobs such as damping); `tunable` unless a method's
        knobs depend on its settings (K-FAC's adaptive mode has no learning rate)."""
        return cls.tunable

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}


def register(name: str, family: str | tuple[str, ...], defaults: dict[str, Any], choices: dict[str, tuple] | None = None,
             tunable: tuple[str, ...] | None = None):
    """Class decorator: register a Method under `name` for models of `family` (one name, or a tuple
    of the families it trains, e.g. ("mlp", "convnet") for an optimizer that only reads
    model.parameters() and model.objective).

    `choices` (optional) lists the allowed values of some hyper-parameters, e.g.
    ``{"optimizer": OPTIMIZERS}``; claims are checked against them when they load. A subclass keeps
    its base's choices for the hyper-parameters it still has, unless it declares its own.
    `tunable` names the positive hyper-parameters the equal-budget tuning searches on a log grid
    (bench.claims.tuning), the step size first; by default ("lr",) when the method has one."""

    def wrap(cls: type[Method]) -> type[Method]:
        declared = {key: tuple(values) for key, values in (choices or {}).items()}
        inherited = {key: values for key, values in getattr(cls, "choices", {}).items() if key in defaults}
        for key, values in declared.items():
            if key not in defaults:
                raise ValueError(f"method {name!r}: choices for {key!r}, which is not one of its defaults")
        merged = {**inherited, **declared}
        for key, values in merged.items():
            if defaults[key] not in values:
                raise ValueError(f"method {name!r}: default {key}={defaults[key]!r} is not one of its choices {values}")
        knobs = tuple(tunable) if tunable is not None else (("lr",) if "lr" in defaults else ())
        for key in knobs:
            if not isinstance(defaults.get(key), (int, float)) or isinstance(defaults.get(key), bool):
                raise ValueError(f"method {name!r}: tunable {key!r} must be a numeric default")
        families = (family,) if isinstance(family, str) else tuple(family)
        cls.name, cls.family, cls.families = name, families[0], families
        cls.defaults, cls.choices = dict(defaults), merged
        cls.tunable = knobs
        return METHODS.add(name, cls)

    return wrap


def finite_mask(values: dict[str, Tensor]) -> Tensor:
    """Per-replica True where every returned scalar is finite."""
    masks = [torch.isfinite(v.detach()).reshape(v.shape[0], -1).all(-1) for v in values.values()]
    return torch.stack(masks).all(0)
