"""The schema of a claim file (``bench/claims/*.yaml``), as pydantic models.

`validate_claim(spec, where)` checks one claim dict: every key, every value's type and range, the
verdict rule (a union discriminated on ``rule``), the paper numbers, the figure, the profiles, and
the checks that need the registries (the dataset is known; the model family exists and takes the
claim's model keys, with values of its constructor's types; each label's method exists, trains that
family, and gets hyper-parameters of its defaults' types and, where it declares them, its choices).
A problem is a `ConfigError` of one line naming the file, the claim, the label (when there is one),
the key, the bad value and what is allowed::

    toy.yaml, claim 'toy', label 'A': methods.A.lr = 'fast': must be a valid number (method 'rws', default 0.1)

Fidelity to the paper (issue 12, "Claim fidelity"):

* **Substitutions.** Wherever a profile runs something other than the paper's stated setup (a
  smaller k, another dataset, another metric or estimator, a smaller network, fewer epochs or
  examples, ...), the claim says so in ``substitutions``, a list of short phrases a reader
  understands without the notes ("k = 10 for the paper's k = 50", "5000 training images (paper:
  60000)"). They are printed in the claim's verdict line (``bench.report.verdicts.evaluate_claim``)
  and in the report's summary row, not only in the notes. Two places, one meaning: the claim-level
  ``substitutions`` hold at every profile (another dataset, estimator or metric than the paper's);
  ``profiles.<p>.substitutions`` hold at that profile only (a smaller network, fewer examples,
  epochs or samples). A profile's verdict line shows the claim's list, then the profile's; the
  smoke profile shows the quick profile's (it is a tiny quick). Only setup-level differences
  belong there; implementation details (an optimizer's initial state, a clamp) stay in the notes.
  Each phrase is one non-blank line, and a list repeats no phrase.
* **No threshold against the paper's own number** (`ClaimSpec._check_paper_side`). A paper number
  that names a label (any provenance but NF: a recalled number the claim contradicts is still a
  contradiction; fix the number or the rule) must itself pass the claim's rule, strictly, in the
  direction of the metric: for ``threshold``, the label's paper value lies beyond ``value`` (paper
  1.34 passes "> 0.5", "> 2.0" contradicts it); for ``better``, each pair whose two labels both
  have paper numbers differs by more than ``margin`` in the claimed direction; for ``ordering``,
  each neighbouring pair likewise; for ``not_worse``, by more than -``margin``; for
  ``equivalent``, each such pair differs by less than ``margin`` either way. ``within_paper`` and ``faster_to_target`` set no threshold of
  their own against a paper number. A claim may still ask for less than the paper shows (margin
  1 nat where the paper reports 1.98), never for more.

The claim dict itself is not replaced: `Claim.spec` stays the YAML's plain dict.
"""

from __future__ import annotations

import functools
import re
import typing
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bench.core.errors import ClaimbenchError, ConfigError
from bench.core.spec import TRANSFORMS
from bench.engine import data
from bench.engine.methods import get_method
from bench.models import FAMILIES, model_keys
from bench.workloads.method import Method

PRIMARY_PROVENANCE = {"V", "src"}  # numbers read in a primary source: may be pass/fail thresholds
PROVENANCE = PRIMARY_PROVENANCE | {"R", "R?", "NF"}
RULES = {
    "better": {"pairs", "margin"},
    "ordering": {"order", "margin"},
    "equivalent": {"pairs", "margin"},
    "faster_to_target": {"pairs", "tolerance", "x", "split", "ratio_below"},
    "within_paper": {"method", "tolerance"},
    "threshold": {"method", "value"},
    "not_worse": {"pairs", "margin"},
}
X_AXES = ("epoch", "step", "examples", "train_seconds")
SPLITS = ("train", "valid", "test", "all")

Split = Literal[SPLITS]  # type: ignore[valid-type]
Label = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]


# --------------------------------------------------------------------------- errors
def problem(at: tuple, reason: str, value: Any = ..., label: str | None = None) -> PydanticCustomError:
    """A validation error at `at` (relative to where pydantic raises it) with `reason`; the value
    and the label (when the label is the bad value, e.g. a verdict's) go into the message."""
    ctx: dict[str, Any] = {"at": tuple(at), "reason": reason}
    if value is not ...:
        ctx["value"] = value
    if label is not None:
        ctx["label"] = label
    return PydanticCustomError("claim", "{reason}", ctx)


def _unknown_key(key: Any, value: Any, allowed: Any, at: tuple = (), what: str | None = None) -> PydanticCustomError:
    """An unknown `key` (given `value`) in the mapping at `at`; `what` names it ("unknown key 'x'")."""
    return PydanticCustomError("unknown_key", "unknown key", {
        "key": key, "value": value, "allowed": ", ".join(sorted(map(str, allowed))), "at": tuple(at),
        "what": what or f"unknown key {key!r}"})


def _short(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _path(loc: tuple) -> str:
    """('profiles', 'paper', 'methods', 'RWS K=5', 'lr') -> "profiles.paper.methods['RWS K=5'].lr"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part!r}]"
    return out


def _label(loc: tuple) -> str | None:
    """The method label a location lies under, if any."""
    if len(loc) > 1 and loc[0] == "methods":
        return loc[1]
    if len(loc) > 3 and loc[0] == "profiles" and loc[2] == "methods":
        return loc[3]
    return None


def _clean(loc: tuple) -> tuple:
    """Drop pydantic's bookkeeping from a location: the verdict's tag, dict-key markers."""
    loc = tuple(part for part in loc if part != "[key]")
    if len(loc) > 1 and loc[0] == "verdict" and loc[1] in RULES:
        loc = loc[:1] + loc[2:]
    return loc


def describe(error: dict[str, Any], where: str) -> str:
    """One line for one of pydantic's errors (its loc, msg, input and ctx)."""
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx") or {}
    label = None
    if kind == "claim":
        loc, reason, value, label = loc + tuple(ctx["at"]), ctx["reason"], ctx.get("value", ...), ctx.get("label")
    elif kind == "unknown_key":
        parent = _clean(loc + tuple(ctx["at"]))
        return (f"{_head(where, _label(parent + (ctx['key'],)))}: {ctx['what']} in {_path(parent) or 'the claim'} "
                f"(value {_short(ctx['value'])}); allowed keys: {ctx['allowed']}")
    elif kind == "extra_forbidden":
        parent = _clean(loc[:-1])
        return (f"{_head(where, _label(loc))}: unknown key {loc[-1]!r} in {_path(parent) or 'the claim'} "
                f"(value {_short(error['input'])})")
    elif kind == "missing":
        parent = _clean(loc[:-1])
        return f"{_head(where, _label(parent))}: missing required key {loc[-1]!r} in {_path(parent) or 'the claim'}"
    elif kind == "union_tag_not_found":
        return f"{_head(where, None)}: missing required key 'rule' in {_path(_clean(loc))}; use one of {_rules()}"
    elif kind == "union_tag_invalid":
        loc, value, reason = loc + ("rule",), ctx["tag"], f"unknown rule; use one of {_rules()}"
    else:
        value, reason = error["input"], error["msg"].replace("Input should be", "must be")
        if kind in ("too_short", "too_long"):
            bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
            reason = f"must have {'at least' if kind == 'too_short' else 'at most'} {bound} item{'s' * (bound != 1)}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            reason = "must be a mapping (key: value)"
        elif kind == "string_pattern_mismatch" and loc == ("id",):
            reason = "must be letters, digits, '.', '_' and '-', starting with a letter or digit (it names files)"
    loc = _clean(loc)
    head = _head(where, label if label is not None else _label(loc))
    shown = f" = {_short(value)}" if value is not ... else ""
    return f"{head}: {_path(loc) or 'claim'}{shown}: {reason}"


def _rules() -> str:
    return ", ".join(map(repr, RULES))


def _head(where: str, label: str | None) -> str:
    return where if label is None else f"{where}, label {label!r}"


def config_error(err: ValidationError, where: str) -> ConfigError:
    """pydantic's ValidationError as one readable ConfigError (its first problem)."""
    return ConfigError(describe(err.errors()[0], where))


# --------------------------------------------------------------------------- models
class Strict(BaseModel):
    """No coercion ('3' is not an int, 1 is not True), no NaN/inf, and an unknown key is an error
    that lists the allowed ones."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, given: Any) -> Any:
        if isinstance(given, dict):
            for key, value in given.items():
                if key not in cls.model_fields:
                    raise _unknown_key(key, value, cls.model_fields)
        return given


def _distinct(values: list) -> list:
    repeated = sorted({repr(v) for v in values if values.count(v) > 1})
    if repeated:
        raise problem((), f"must not repeat {', '.join(repeated)}", values)
    return values


def _one_line(text: str) -> str:
    if not text.strip():
        raise problem((), "must not be blank: a short phrase, e.g. \"k = 10 for the paper's k = 50\"", text)
    if "\n" in text or "\r" in text:
        raise problem((), "must be one line (it is printed in the verdict line)", text)
    return text


Seeds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1), AfterValidator(_distinct)]
Phrase = Annotated[str, AfterValidator(_one_line)]
Substitutions = Annotated[list[Phrase], AfterValidator(_distinct)]
Splits = Annotated[list[Split], Field(min_length=1), AfterValidator(_distinct)]
ModelOverride = dict[str, Any]  # keys and values checked against the family by ClaimSpec._cross_checks


class ModelConfig(BaseModel):
    """The claim's model: a family plus its constructor's keys (checked against the family)."""

    model_config = ConfigDict(extra="allow", strict=True, protected_namespaces=())
    family: str


class MethodEntry(BaseModel):
    """A label's method (default: the label itself), its model keys, and its hyper-parameters
    (the extra keys, checked against the method's defaults)."""

    model_config = ConfigDict(extra="allow", strict=True, protected_namespaces=())
    method: str | None = None
    model: ModelOverride = {}


class LabelOverride(BaseModel):
    """A profile's settings for one label: model keys, its own minibatch size (a claim comparing
    batch sizes) and hyper-parameters (the extra keys)."""

    model_config = ConfigDict(extra="allow", strict=True, protected_namespaces=())
    model: ModelOverride = {}
    batch_size: Count | None = None


class Profile(Strict):
    """A profile's run settings: the fields of bench.core.spec.RunSpec but the data keys, plus
    model and per-label overrides, and what this profile runs instead of the paper's setup
    (`substitutions`, printed in its verdict line; see the module's docstring)."""

    seeds: Seeds
    epochs: Count
    batch_size: Count
    train_subset: Count | None = None
    eval_every: Count = 1
    eval_k: Count = 100
    eval_subset: Count | None = 1000
    eval_splits: Splits = ["valid", "test"]
    final_eval_k: Count = 1000
    final_eval_splits: Splits = ["test"]
    timing: Literal["lockstep", "per_seed"] = "lockstep"  # per_seed: each seed alone, its own clock (time claims)
    keep_params: bool = False  # the runs keep their final parameters (a figure's interpolation needs them)
    model: ModelOverride = {}
    methods: dict[Label, LabelOverride | None] = {}
    substitutions: Substitutions = []


class Profiles(Strict):
    quick: Profile  # the smoke profile is derived from it
    paper: Profile | None = None


class Metric(Strict):
    split: Split = "test"
    name: Label = "ll"
    higher_is_better: bool = True
    # The curve convergence is judged on (same split), when the claim's metric analyses a trained
    # model rather than measures its fit (the amortization share: a ratio of gaps that is not a
    # training objective and need not move monotonically); default: the metric itself.
    converged_on: Label | None = None


def _two_labels(pair: list[str]) -> list[str]:
    if pair[0] == pair[1]:
        raise problem((), "compares a label with itself", pair)
    return pair


Pair = Annotated[list[Label], Field(min_length=2, max_length=2), AfterValidator(_two_labels)]


class Figure(Strict):
    x: Annotated[list[Literal[X_AXES]], Field(min_length=1), AfterValidator(_distinct)] = ["epoch", "train_seconds"]  # type: ignore[valid-type]
    yscale: Literal["linear", "log"] = "linear"
    # Keskar et al.'s 1-D interpolation between two labels' final parameters, [at alpha 0, at alpha 1]
    # (bench.engine.interpolation); the runs of every profile must keep their parameters
    interpolation: Pair | None = None


Pairs = Annotated[list[Pair], Field(min_length=1)]


class Better(Strict):
    """Each pair's first label beats its second by more than `margin`."""

    rule: Literal["better"]
    pairs: Pairs
    margin: NonNegative = 0.0


class Ordering(Strict):
    """The labels rank in this order, each beating the next by more than `margin`."""

    rule: Literal["ordering"]
    order: Annotated[list[Label], Field(min_length=2), AfterValidator(_distinct)]
    margin: NonNegative = 0.0


class Equivalent(Strict):
    """Each pair's two labels reach the same value to within `margin` (> 0), either way: a claim
    that a method is "comparable" to another (Entropy-SGD's test error vs SGD's)."""

    rule: Literal["equivalent"]
    pairs: Pairs
    margin: Annotated[float, Field(gt=0)]


class NotWorse(Strict):
    """Each pair's first label is not worse than its second by `margin` (> 0) or more: a
    non-inferiority claim ("converges to an ELBO at least as high as"), which a better first
    label passes too."""

    rule: Literal["not_worse"]
    pairs: Pairs
    margin: Annotated[float, Field(gt=0)]


class FasterToTarget(Strict):
    """Each pair's first label reaches its second's best (minus `tolerance`) sooner, along x (or, with
    `ratio_below` r, in less than r times the second's x: "within 2x of b" is r = 2)."""

    rule: Literal["faster_to_target"]
    pairs: Pairs
    tolerance: NonNegative = 0.0
    ratio_below: Annotated[float, Field(gt=0)] = 1.0  # "within 2x of b": a's x over b's x below 2
    x: Literal[X_AXES] = "epoch"  # type: ignore[valid-type]
    split: Split | None = None


class WithinPaper(Strict):
    """|ours - paper| <= tolerance, against a number read in a primary source."""

    rule: Literal["within_paper"]
    method: Label
    tolerance: NonNegative


class Threshold(Strict):
    """The label's value lies beyond `value` (above it when higher is better)."""

    rule: Literal["threshold"]
    method: Label
    value: float


Verdict = Annotated[Better | Ordering | Equivalent | FasterToTarget | WithinPaper | Threshold | NotWorse,
                    Field(discriminator="rule")]
assert {m.model_fields["rule"].annotation.__args__[0]: set(m.model_fields) - {"rule"}  # type: ignore[union-attr]
        for m in (Better, Ordering, Equivalent, FasterToTarget, WithinPaper, Threshold, NotWorse)} == RULES


class PaperNumber(Strict):
    method: Label | None = None
    value: float
    provenance: Literal[tuple(sorted(PROVENANCE))]  # type: ignore[valid-type]
    source: str | None = None
    note: str | None = None


class ClaimSpec(Strict):
    """One claim. After the fields, `_cross_checks` checks what ties them together and what needs
    the registries (datasets, model families, methods)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    paper: str | None = None
    statement: Label
    dataset: str
    model: ModelConfig
    methods: Annotated[dict[Label, MethodEntry | None], Field(min_length=1)]
    metric: Metric = Metric()
    verdict: Verdict
    paper_numbers: list[PaperNumber] = []
    profiles: Profiles
    notes: str | None = None
    figure: Figure = Figure()
    transform: Literal[TRANSFORMS] = "none"  # type: ignore[valid-type]
    labels: bool = False
    holdout: Count | None = None
    # classes (labels) left out of training and validation and kept in the test split, where the
    # methods' predictive metrics tell seen from unseen classes (Jospin et al.'s held-out digit)
    held_out_classes: Annotated[list[Annotated[int, Field(ge=0)]], AfterValidator(_distinct)] = []
    downsample: Count | None = None  # average-pool the images by this factor (bench.engine.data.pool)
    missing_rate: Annotated[float, Field(gt=0, lt=1)] | None = None  # MCAR training entries (bench.core.missing.mcar)
    substitutions: Substitutions = []  # hold at every profile; a profile's own are under profiles.<p>

    @model_validator(mode="after")
    def _cross_checks(self) -> ClaimSpec:
        try:
            data.get_spec(self.dataset)
        except ClaimbenchError as exc:
            raise problem(("dataset",), str(exc), self.dataset) from None
        if self.held_out_classes and not self.labels:
            raise problem(("held_out_classes",), "holds classes out, which needs the labels: set labels: true",
                          self.held_out_classes)
        family = self.model.family
        try:
            FAMILIES.get(family)
        except ClaimbenchError as exc:
            raise problem(("model", "family"), str(exc), family) from None
        _check_model(family, ("model",), dict(self.model.model_extra or {}))
        self._check_input_shape(("model",), dict(self.model.model_extra or {}))
        methods = {}
        for label, entry in self.methods.items():
            entry = entry or MethodEntry()
            name = entry.method or label
            try:
                methods[label] = cls = get_method(name)
            except ClaimbenchError as exc:
                raise problem(("methods", label, "method"), str(exc), name) from None
            if mismatch := cls.family_mismatch(family):
                raise problem(("methods", label, "method"), mismatch, name)
            _check_model(family, ("methods", label, "model"), entry.model)
            _check_hparams(cls, ("methods", label), entry.model_extra or {})
        for profile in ("quick", "paper"):
            settings = getattr(self.profiles, profile)
            if settings is None:
                continue
            _check_model(family, ("profiles", profile, "model"), settings.model)
            self._check_input_shape(("profiles", profile, "model"), settings.model)
            for label, override in settings.methods.items():
                if label not in methods:
                    raise problem(("profiles", profile, "methods", label), "overrides an unknown label; the claim's "
                                  f"labels: {', '.join(map(repr, methods))}")
                override = override or LabelOverride()
                _check_model(family, ("profiles", profile, "methods", label, "model"), override.model)
                _check_hparams(methods[label], ("profiles", profile, "methods", label), override.model_extra or {})
        self._check_labels(list(methods))
        self._check_interpolation(list(methods))
        self._check_paper_side()
        return self

    def _check_input_shape(self, at: tuple, config: dict[str, Any]) -> None:
        """A model's `input_shape` (a convnet's [C, H, W]) is the dataset's image shape, after the
        claim's downsample (bench.engine.data.input_shape)."""
        if "input_shape" not in config:
            return
        try:
            expected = list(data.input_shape(self.dataset, self.downsample))
        except ClaimbenchError as exc:
            raise problem(at + ("input_shape",), str(exc), config["input_shape"]) from None
        if config["input_shape"] != expected:
            pooled = f" pooled by {self.downsample}" if self.downsample else ""
            raise problem(at + ("input_shape",), f"dataset {self.dataset!r}{pooled} has images of [channels, height, "
                          f"width] = {expected}: set input_shape: {expected}", config["input_shape"])

    def _check_labels(self, labels: list[str]) -> None:
        """Labels named by the verdict exist; within_paper has its number. (A paper number may name a
        method the claim does not run: the figure draws it as a grey reference line.)"""
        v = self.verdict
        named: list[tuple[tuple, str]] = []
        if isinstance(v, Better | Equivalent | FasterToTarget | NotWorse):
            named = [(("verdict", "pairs", i, j), x) for i, pair in enumerate(v.pairs) for j, x in enumerate(pair)]
        elif isinstance(v, Ordering):
            named = [(("verdict", "order", i), x) for i, x in enumerate(v.order)]
        else:
            named = [(("verdict", "method"), v.method)]
        for at, label in named:
            if label not in labels:
                raise problem(at, f"not one of the claim's labels: {', '.join(map(repr, labels))}", label, label=label)
        if isinstance(v, WithinPaper) and not any(n.method == v.method and n.provenance in PRIMARY_PROVENANCE
                                                  for n in self.paper_numbers):
            raise problem(("verdict", "method"), "within_paper needs a paper number for this label read in a primary "
                          f"source (provenance {' or '.join(sorted(PRIMARY_PROVENANCE))}) under paper_numbers",
                          v.method, label=v.method)


    def _check_interpolation(self, labels: list[str]) -> None:
        """The figure's interpolation names two of the claim's labels, of an mlp (whose workload's
        metrics read no method state), and every profile's runs keep their final parameters."""
        pair = self.figure.interpolation
        if pair is None:
            return
        for i, label in enumerate(pair):
            if label not in labels:
                raise problem(("figure", "interpolation", i), f"not one of the claim's labels: "
                              f"{', '.join(map(repr, labels))}", label, label=label)
        if self.model.family != "mlp":
            raise problem(("figure", "interpolation"), f"interpolates mlp classifiers only; the claim's model is "
                          f"{self.model.family!r}", pair)
        for profile in ("quick", "paper"):
            settings = getattr(self.profiles, profile)
            if settings is not None and not settings.keep_params:
                raise problem(("profiles", profile, "keep_params"), "the figure's interpolation needs the runs' final "
                              "parameters: set keep_params: true", settings.keep_params)

    def _check_paper_side(self) -> None:
        """The paper's own numbers pass the claim's rule (see the module's docstring): a threshold or
        a margin never asks for more than the paper reports."""
        v, sign = self.verdict, 1.0 if self.metric.higher_is_better else -1.0
        numbers: dict[str, list[PaperNumber]] = {}
        for n in self.paper_numbers:
            if n.method is not None and n.provenance != "NF":
                numbers.setdefault(n.method, []).append(n)
        if isinstance(v, Threshold):
            side = "above" if sign > 0 else "below"
            for n in numbers.get(v.method, []):
                if not sign * (n.value - v.value) > 0:
                    raise problem(("verdict", "value"), f"contradicts the paper's own number: {v.method!r} has "
                                  f"{n.value:g} ({n.provenance}) under paper_numbers, which does not lie {side} "
                                  f"{v.value:g}; a threshold must be one the paper's value passes", v.value,
                                  label=v.method)
            return
        if isinstance(v, Equivalent):
            for a, b in v.pairs:
                for na in numbers.get(a, []):
                    for nb in numbers.get(b, []):
                        if not abs(na.value - nb.value) < v.margin:
                            raise problem(("verdict", "margin"), f"contradicts the paper's own numbers: {a!r} "
                                          f"{na.value:g} ({na.provenance}) vs {b!r} {nb.value:g} ({nb.provenance}) "
                                          f"under paper_numbers differ by more than the margin {v.margin:g}", v.margin)
            return
        if isinstance(v, Better | NotWorse):
            pairs = [tuple(p) for p in v.pairs]
        elif isinstance(v, Ordering):
            pairs = list(zip(v.order, v.order[1:]))
        else:
            return
        least = -v.margin if isinstance(v, NotWorse) else v.margin  # the gap the paper's numbers must exceed
        for a, b in pairs:
            for na in numbers.get(a, []):
                for nb in numbers.get(b, []):
                    gap = sign * (na.value - nb.value)
                    if not gap > least:
                        raise problem(("verdict", "margin"), f"contradicts the paper's own numbers: {a!r} {na.value:g} "
                                      f"({na.provenance}) vs {b!r} {nb.value:g} ({nb.provenance}) under paper_numbers "
                                      f"is a gap of {gap:g} in the claimed direction, not more than {least:g}",
                                      v.margin)


# --------------------------------------------------------------------------- registry-driven checks
@functools.cache
def _family_types(family: str) -> dict[str, tuple[str, TypeAdapter] | None]:
    """key -> (type name, strict validator) of the family constructor's annotation (None: none)."""
    cls = FAMILIES.get(family)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError, AttributeError):  # an annotation that does not resolve: check the keys only
        hints = {}
    strict = ConfigDict(strict=True, allow_inf_nan=False)
    return {key: (_type_name(hints[key]), TypeAdapter(hints[key], config=strict)) if key in hints else None
            for key in model_keys(family)}


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _check_model(family: str, at: tuple, config: dict[str, Any]) -> None:
    """Model keys are the family's constructor arguments ('family' only in the claim's model),
    with values of their annotated types."""
    types = _family_types(family)
    for key, value in config.items():
        if key not in types:
            raise _unknown_key(key, value, types, at, f"unknown key {key!r} for family {family!r}")
        if types[key] is not None:
            name, adapter = types[key]
            try:
                adapter.validate_python(value)
            except ValidationError:
                raise problem(at + (key,), f"must be {name} (family {family!r})", value) from None


class Hparams(Strict):
    """Base of each method's hyper-parameter model (`hparams_model`)."""

    method_name: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, given: Any) -> Any:
        if isinstance(given, dict):
            for key, value in given.items():
                if key not in cls.model_fields:
                    raise _unknown_key(key, value, cls.model_fields, (),
                                       f"unknown hyper-parameter {key!r} of method {cls.method_name!r}")
        return given


_TYPES = {bool: bool, int: int, float: float, str: str}
# Ranges of the hyper-parameters that mean the same in every method that has them (checked where a
# method's default is a number): sample counts, rates, decays, intervals.
HPARAM_BOUNDS: dict[str, dict[str, float]] = {
    "k": {"ge": 1}, "z_samples": {"ge": 1}, "iterations": {"ge": 1}, "inverse_every": {"ge": 1},
    "lr": {"gt": 0}, "eps": {"gt": 0}, "stats_fraction": {"gt": 0, "le": 1},
    "damping": {"gt": 0}, "weight_decay": {"ge": 0}, "clip": {"ge": 0}, "epoch_size": {"ge": 0},
    "gap_examples": {"ge": 0}, "gap_steps": {"ge": 0}, "fisher_every": {"ge": 0}, "sleep_every": {"ge": 0},
    "pseudo_count": {"gt": 0},
    "beta1": {"ge": 0, "lt": 1}, "momentum": {"ge": 0, "lt": 1}, "decay": {"ge": 0, "lt": 1},
}


def _one_of(allowed: tuple) -> AfterValidator:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise problem((), f"must be one of {', '.join(map(repr, allowed))}", value)
        return value

    return AfterValidator(check)


@functools.cache
def hparams_model(cls: type[Method]) -> type[Hparams]:
    """A strict model of the method's hyper-parameters: each key of its defaults, of the default's
    type (an int default wants an int, a float one a number, a bool one true/false, a str one a
    string) and, where the method declares `choices`, one of them."""
    fields: dict[str, Any] = {}
    for key, default in cls.defaults.items():
        tp: Any = _TYPES.get(type(default), Any)
        if key in HPARAM_BOUNDS and tp in (int, float):
            tp = Annotated[tp, Field(**HPARAM_BOUNDS[key])]
        choices = getattr(cls, "choices", {})
        if key in choices:
            tp = Annotated[tp, _one_of(tuple(choices[key]))]
        fields[key] = (tp, default)
    model = create_model(f"Hparams_{cls.name}", __base__=Hparams, **fields)
    model.method_name = cls.name
    return model


def _check_hparams(cls: type[Method], at: tuple, hparams: dict[str, Any]) -> None:
    try:
        hparams_model(cls).model_validate(hparams)
    except ValidationError as err:
        first = err.errors()[0]
        ctx = first.get("ctx") or {}
        if first["type"] == "unknown_key":
            raise _unknown_key(ctx["key"], ctx["value"], cls.defaults, at, ctx["what"]) from None
        key = first["loc"][0]
        reason = ctx["reason"] if first["type"] == "claim" else first["msg"].replace("Input should be", "must be")
        raise problem(at + (key,), f"{reason} (method {cls.name!r}, default {cls.defaults[key]!r})",
                      first["input"]) from None


def validate_claim(spec: Any, where: str) -> ClaimSpec:
    """The claim dict as a ClaimSpec, or a ConfigError naming `where` (file and claim), the label,
    the key, the bad value and what is allowed."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a claim must be a mapping (id: ..., statement: ..., ...), got {_short(spec)}")
    try:
        return ClaimSpec.model_validate(spec)
    except ValidationError as err:
        raise config_error(err, where) from None
