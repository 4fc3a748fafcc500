"""RunSpec: everything that determines a run's numbers. Its id is a short hash of the spec,
so a run is shared by every claim that needs the same thing and never recomputed needlessly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import yaml

from bench.core.errors import ConfigError, check_keys

TRANSFORMS = ("none", "dynamic_binarize", "unit_interval")
TIMINGS = ("lockstep", "per_seed")
LATER_FIELDS = {"carve_valid": None, "timing": "lockstep", "held_out_classes": (), "downsample": None,
                "missing_rate": None, "keep_params": False}  # fields added after the first runs, and their defaults


def parse_scalar(text: str) -> Any:
    """A command-line value as YAML reads it (5 -> int, true -> bool, adam -> str), except that
    numbers YAML 1.1 leaves as strings (1e-2, 1E5) are floats."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


@dataclass(frozen=True)
class RunSpec:
    profile: str
    dataset: str
    model: dict[str, Any]
    method: str
    hparams: dict[str, Any]
    seeds: tuple[int, ...]
    epochs: int
    batch_size: int
    train_subset: int | None = None  # first N training examples (None = all)
    transform: str = "none"  # how pixels become model inputs, see bench.engine.train.prepare_data
    labels: bool = False  # pass labels to step/evaluate (classifiers)
    holdout: int | None = None  # carve a missing valid (or, for 'all'-only data, test) split of this size
    eval_every: int = 1  # epochs between evaluations (epoch 0 and the last epoch always)
    eval_k: int = 100  # importance samples for the learning curve
    eval_subset: int | None = 1000  # first N examples of each evaluated split (None = all)
    eval_splits: tuple[str, ...] = ("valid", "test")  # splits on the learning curve
    final_eval_k: int = 1000  # importance samples for the final numbers
    final_eval_splits: tuple[str, ...] = ("test",)
    carve_valid: int | None = None  # tuning runs: the last N training examples become 'valid' (see bench.claims.tuning)
    timing: str = "lockstep"  # 'per_seed': each seed trains alone with its own clock (claims about time)
    held_out_classes: tuple[int, ...] = ()  # labels left out of train and valid, kept in test (unseen-class probes)
    downsample: int | None = None  # average-pool images by this factor (a reduced resolution)
    missing_rate: float | None = None  # MCAR: NaN at this fraction of the training entries (one fixed mask)
    keep_params: bool = False  # write the final parameters beside run.json (bench.engine.results.PARAMS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "eval_splits", tuple(self.eval_splits))
        object.__setattr__(self, "final_eval_splits", tuple(self.final_eval_splits))
        object.__setattr__(self, "held_out_classes", tuple(int(c) for c in self.held_out_classes))
        if self.held_out_classes and not self.labels:
            raise ConfigError(f"held_out_classes {list(self.held_out_classes)} needs labels: true (classes are labels)")
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"transform {self.transform!r}; use one of {TRANSFORMS}")
        if self.timing not in TIMINGS:
            raise ConfigError(f"timing {self.timing!r}; use one of {TIMINGS}")

    def to_dict(self) -> dict[str, Any]:
        """Every field, except those added after the first runs (LATER_FIELDS) while they hold
        their default: a run id never changes because the spec gained a field it does not use."""
        d = asdict(self)
        for name, default in LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        check_keys("run spec", d, {f.name for f in fields(cls)})
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        return cls.from_dict(json.loads(text))

    @property
    def model_name(self) -> str:
        """Readable model label, e.g. 'helmholtz 784-200-200-10'."""
        m = self.model
        sizes = m.get("layers") or m.get("sizes")
        return f"{m.get('family')} {'-'.join(map(str, sizes))}" if sizes else str(m.get("family"))
