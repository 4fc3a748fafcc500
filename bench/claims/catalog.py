"""Claim specs (``bench/claims/*.yaml``): loading, validation, expansion into runs per profile.

A claim is data a reader can check with the paper open::

    - id: rws-beats-ws
      paper: Bornschein & Bengio, ICLR 2015
      statement: RWS reaches a higher test log-likelihood than wake-sleep.
      dataset: binarized_mnist
      model: {family: helmholtz, layers: [784, 200, 200, 10]}
      methods:                       # label -> method name + hyper-parameter overrides
        WS: {method: ws}
        RWS K=5: {method: rws, k: 5}
      metric: {split: test, name: ll}
      verdict: {rule: better, pairs: [[RWS K=5, WS]], margin: 1.0}
      paper_numbers: [{method: RWS K=5, value: -85.48, provenance: R, source: ...}]
      profiles:
        quick: {seeds: [0, 1, 2], epochs: 20, batch_size: 100, train_subset: 5000, ...}
        paper: {seeds: [0, 1, 2], epochs: 200, batch_size: 100, final_eval_k: 5000, ...,
                model: {layers: [...]}, methods: {RWS K=5: {lr: ...}}}

Profiles may override the model config and per-label hyper-parameters, and give a label its own
``batch_size`` (a claim comparing batch sizes; at the smoke profile it is capped at half the smoke
training set). A method entry may carry its
own ``model:`` keys (not the family), e.g. ``VAE z=5: {method: vae, model: {layers: [784, 5]}}``, to
compare model variants in one claim; the most specific setting wins: claim model < profile model <
the label's model < the profile's model for that label. The `smoke` profile is
derived from `quick` with SMOKE overrides (tiny; used by the tests and CI to exercise the workflow).
What a profile runs instead of the paper's setup is listed under ``substitutions`` (the claim's,
for every profile, and each profile's own; `Claim.substitutions`), printed in the verdict line.

What a claim may contain, and each value's type and range, is bench/claims/schema.py (pydantic
models); a bad key or value is a one-line ConfigError when the claims load, never a traceback in a run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.claims.schema import validate_claim
from bench.core.errors import ConfigError, unknown
from bench.core.spec import RunSpec
from bench.engine import data
from bench.engine.methods import get_method, harness_sources, resolve_hparams, source_files
from bench.models import FAMILIES
from bench.workloads import workload_for

CLAIMS_DIR = Path(__file__).resolve().parent  # the YAML files live beside this module
PROFILES = ("quick", "paper", "smoke")
DATA_KEYS = {"transform", "labels", "holdout", "held_out_classes", "downsample", "missing_rate"}  # how the claim's dataset is read, next to `dataset`
SMOKE = {"seeds": [0, 1], "epochs": 2, "train_subset": 300, "batch_size": 50, "eval_every": 1,
         "eval_k": 5, "eval_subset": 50, "final_eval_k": 20}
SMOKE_WORDS = (f"smoke profile, a plumbing check: {len(SMOKE['seeds'])} seeds, {SMOKE['epochs']} epochs, at most "
               f"{SMOKE['train_subset']} training examples, batches of at most {SMOKE['batch_size']}, K = "
               f"{SMOKE['final_eval_k']}, in place of the quick profile's sizes")


@dataclass
class Claim:
    id: str
    spec: dict[str, Any]
    source: Path

    @property
    def labels(self) -> list[str]:
        return list(self.spec["methods"])

    @property
    def metric(self) -> dict[str, Any]:
        return {"split": "test", "name": "ll", "higher_is_better": True, **self.spec.get("metric", {})}

    @property
    def x_axes(self) -> list[str]:
        """The figure's x-axes, one panel each (default: epochs and train seconds)."""
        return self.spec.get("figure", {}).get("x", ["epoch", "train_seconds"])

    @property
    def yscale(self) -> str:
        return self.spec.get("figure", {}).get("yscale", "linear")

    @property
    def interpolation(self) -> list[str] | None:
        """The figure's two labels of Keskar's 1-D interpolation [at alpha 0, at alpha 1], or None."""
        return self.spec.get("figure", {}).get("interpolation")

    @property
    def paper_numbers(self) -> list[dict[str, Any]]:
        return self.spec.get("paper_numbers", [])

    def substitutions(self, profile: str) -> list[str]:
        """What `profile` runs instead of the paper's setup: the claim's substitutions (every
        profile), then the profile's own; the smoke profile's are the quick profile's after
        SMOKE_WORDS, its own reductions."""
        settings = self.spec.get("profiles", {}).get("quick" if profile == "smoke" else profile) or {}
        smoke = [SMOKE_WORDS] if profile == "smoke" else []
        return [*smoke, *self.spec.get("substitutions", []), *settings.get("substitutions", [])]

    def digest(self) -> str:
        """Hash of the claim's definition, so editing a claim re-computes its verdict."""
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class ClaimPlan:
    claim: Claim
    profile: str
    runs: dict[str, RunSpec] = field(default_factory=dict)  # label -> run
    unavailable: str | None = None  # why the claim cannot run here (missing data)


# --------------------------------------------------------------------------- loading and validation
def _validate(spec: Any, where: str) -> None:
    """Check one claim against the schema (bench/claims/schema.py): a ConfigError names `where`
    (file and claim), the label, the key, the bad value and what is allowed."""
    validate_claim(spec, where)


def _read(path: Path) -> list[Any]:
    """A claim file's list of claims (an empty file has none)."""
    try:
        specs = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML: {' '.join(str(exc).split())}") from None
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise ConfigError(f"{path.name}: expected a YAML list of claims ('- id: ...'), got a {type(specs).__name__}")
    return specs


def load_claims(claims_dir: Path = CLAIMS_DIR) -> dict[str, Claim]:
    """Every claim of every YAML file, validated; ids must be unique, and there must be some."""
    claims: dict[str, Claim] = {}
    paths = sorted(Path(claims_dir).glob("*.yaml"))
    for path in paths:
        for i, spec in enumerate(_read(path)):
            named = isinstance(spec, dict) and isinstance(spec.get("id"), str)
            where = f"{path.name}, claim {spec['id']!r}" if named else f"{path.name}, claim #{i + 1}"
            _validate(spec, where)
            if spec["id"] in claims:
                raise ConfigError(f"{where}: duplicate claim id (also in {claims[spec['id']].source.name})")
            claims[spec["id"]] = Claim(spec["id"], spec, path)
    if not claims:
        found = (f"its files {', '.join(p.name for p in paths)} hold no claims" if paths else
                 "it has no *.yaml files" if Path(claims_dir).is_dir() else "it does not exist")
        raise ConfigError(f"no claims in {claims_dir}: expected *.yaml files there, each a YAML list of claims "
                          f"('- id: ...', see bench/claims/rws.yaml), but {found}")
    return claims


def get_claim(claim_id: str, claims: dict[str, Claim] | None = None) -> Claim:
    claims = load_claims() if claims is None else claims
    if claim_id not in claims:
        raise unknown("claim", claim_id, claims)
    return claims[claim_id]


# --------------------------------------------------------------------------- expansion into runs
def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise unknown("profile", profile, PROFILES)


def _profile_settings(claim: Claim, profile: str) -> dict[str, Any]:
    if profile == "smoke":
        quick = copy.deepcopy(claim.spec["profiles"]["quick"])
        quick.update(SMOKE)
        quick["batch_size"] = min(claim.spec["profiles"]["quick"].get("batch_size", 50), SMOKE["batch_size"])
        for override in (quick.get("methods") or {}).values():  # a label's own batch: at most half the smoke data
            if override and "batch_size" in override:
                override["batch_size"] = min(override["batch_size"], SMOKE["train_subset"] // 2)
        return quick
    if profile not in claim.spec["profiles"]:
        raise ConfigError(f"claim {claim.id!r} defines no {profile!r} profile")
    return copy.deepcopy(claim.spec["profiles"][profile])


def expand(claim: Claim, profile: str) -> ClaimPlan:
    """The runs a claim needs at a profile (label -> RunSpec), or why it cannot run here."""
    check_profile(profile)
    plan = ClaimPlan(claim, profile)
    if not data.is_available(claim.spec["dataset"]):
        plan.unavailable = (f"data unavailable: dataset {claim.spec['dataset']!r} is not on the data search path "
                            f"({', '.join(map(str, data.search_path()))}); `python -m bench fetch {claim.spec['dataset']}` "
                            f"downloads and verifies it where the network allows, from "
                            f"{'; '.join(data.sources(claim.spec['dataset']))}")
        return plan
    settings = _profile_settings(claim, profile)
    settings.pop("substitutions", None)  # words for the verdict line (Claim.substitutions), not a run setting
    rule = claim.spec["verdict"]
    if rule["rule"] == "faster_to_target" and rule.get("x") == "train_seconds" and settings.get("timing") != "per_seed":
        raise ConfigError(f"{claim.source.name}, claim {claim.id!r}: a claim about training time needs `timing: per_seed` "
                          f"in its {profile!r} profile, so that every seed trains alone with its own clock (lock-step "
                          f"replicas share one); claims that share its runs should set it too")
    model = {**claim.spec["model"], **settings.pop("model", {})}
    overrides = settings.pop("methods", {})
    for label, entry in claim.spec["methods"].items():
        entry = dict(entry or {})
        override = dict(overrides.get(label) or {})
        cls = get_method(entry.pop("method", label))
        label_model = {**model, **entry.pop("model", {}), **override.pop("model", {})}
        batch = {"batch_size": override.pop("batch_size")} if "batch_size" in override else {}
        hparams = resolve_hparams(cls, {**entry, **override})
        data_keys = {k: claim.spec[k] for k in DATA_KEYS if k in claim.spec}
        plan.runs[label] = RunSpec(profile=profile, dataset=claim.spec["dataset"], model=label_model, method=cls.name,
                                   hparams=hparams, **data_keys, **{**settings, **batch})
        try:
            workload_for(label_model["family"]).check_transform(label_model, plan.runs[label].transform)
            data.check_width(claim.spec["dataset"], label_model.get("layers"), claim.spec.get("downsample"))
        except ConfigError as exc:
            raise ConfigError(f"{claim.source.name}, claim {claim.id!r}, label {label!r}: {exc}") from None
    return plan


def plan_all(profile: str, claims: dict[str, Claim] | None = None) -> list[ClaimPlan]:
    claims = load_claims() if claims is None else claims
    return [expand(c, profile) for c in claims.values()]


def run_sources(spec: RunSpec) -> list[Path]:
    """Files whose edits must rerun this run: its method's module and everything it and the training
    loop import (model family, layers, estimators, curvature, workload, data and engine code),
    found from their imports; not the claims, report or command-line code. The family's model and
    workload modules are registered plug-ins, so they are added by name."""
    cls = get_method(spec.method)
    family = spec.model["family"]
    plugins = [FAMILIES.get(family).__module__, type(workload_for(family)).__module__]
    return sorted(set(source_files(cls)) | set(harness_sources([cls.__module__, "bench.engine.train", *plugins])))
