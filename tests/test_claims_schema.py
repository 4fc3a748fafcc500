"""The claim schema (bench/claims/schema.py): a bad key or value in a claim file is a one-line
ConfigError when the claims load, naming the file, the claim, the label, the key, the bad value and
what is allowed; the committed claims all load."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from conftest import TOY_CLAIM, load_toy, write_claims

from bench.claims import schema
from bench.claims.catalog import DATA_KEYS, load_claims
from bench.core.errors import ConfigError
from bench.core.registry import Registry
from bench.core.spec import RunSpec
from bench.engine.methods import all_methods, get_method
from bench.nn.optim import OPTIMIZERS
from bench.workloads import method as method_module
from bench.workloads.method import Method, register

BASE = {**TOY_CLAIM,
        "paper_numbers": [{"method": "A", "value": -90.0, "provenance": "V", "source": "Table 1"}],
        "profiles": {**TOY_CLAIM["profiles"],
                     "paper": {"seeds": [0, 1, 2], "epochs": 2, "batch_size": 50, "methods": {"A": {"k": 5}}}}}


def _load(tmp_path: Path, change=None, spec: dict | None = None) -> dict:
    return load_toy(tmp_path, BASE if spec is None else spec, change)


def _error(tmp_path: Path, change) -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, change)
    msg = str(err.value)
    assert "\n" not in msg, msg  # one readable line, not pydantic's dump
    assert msg.startswith("toy.yaml, claim 'toy'"), msg  # names the file and the claim
    return msg


def _set(*path_and_value):
    """A change that sets spec[path...] = value."""
    *path, key, value = path_and_value

    def change(spec):
        target = spec
        for part in path:
            target = target[part]
        target[key] = value

    return change


def test_valid_toy_claim_loads(tmp_path):
    assert list(_load(tmp_path)) == ["toy"]


def test_committed_claims_all_load():
    claims = load_claims()
    assert len(claims) >= 20
    for claim in claims.values():
        assert claim.spec["id"] == claim.id and claim.source.suffix == ".yaml"
        schema.validate_claim(claim.spec, claim.id)  # idempotent: the spec is the YAML's dict


def test_spec_stays_the_plain_yaml_dict(tmp_path):
    claim = _load(tmp_path)["toy"]
    assert type(claim.spec) is dict and claim.spec == BASE


# ------------------------------------------------------------------------ hyper-parameter values
@pytest.mark.parametrize("key, value, allowed", [
    ("lr", "fast", "must be a valid number (method 'rws', default 0.1)"),
    ("k", 2.5, "must be a valid integer"),
    ("k", -3, "must be greater than or equal to 1"),
    ("k", True, "must be a valid integer"),
    ("q_baseline", 1, "must be a valid boolean"),
    ("optimizer", 3, "must be a valid string"),
])
def test_bad_hyperparameter_value_names_label_key_value_and_type(tmp_path, key, value, allowed):
    msg = _error(tmp_path, _set("methods", "A", key, value))
    assert f"label 'A': methods.A.{key} = {value!r}: {allowed}" in msg, msg


def test_float_hyperparameter_accepts_an_int(tmp_path):
    assert "toy" in _load(tmp_path, _set("methods", "A", "lr", 1))


def test_bad_hyperparameter_in_a_profile_override(tmp_path):
    msg = _error(tmp_path, _set("profiles", "paper", "methods", "A", "k", "5"))
    assert "label 'A': profiles.paper.methods.A.k = '5': must be a valid integer" in msg, msg


def test_unknown_hyperparameter_lists_the_methods_keys(tmp_path):
    msg = _error(tmp_path, _set("methods", "A", "kk", 5))
    assert "label 'A': unknown hyper-parameter 'kk' of method 'rws' in methods.A (value 5); allowed keys: k, lr" in msg


class _WithChoices(Method):
    """A method declaring choices, checked without registering it."""

    name, family = "with_choices", "helmholtz"
    defaults = {"lr": 0.1, "optimizer": "sgd", "k": 5}
    choices = {"optimizer": OPTIMIZERS, "k": (1, 5, 10)}


@pytest.mark.parametrize("key, value, allowed", [
    ("optimizer", "adamw", "must be one of 'momentum_ema', 'sgd', 'adam', 'adagrad' (method 'with_choices', default 'sgd')"),
    ("k", 7, "must be one of 1, 5, 10"),
    ("optimizer", 1, "must be a valid string"),
])
def test_bad_choice_names_the_allowed_values(tmp_path, monkeypatch, key, value, allowed):
    monkeypatch.setattr(schema, "get_method", lambda name: _WithChoices if name == "with_choices" else get_method(name))
    msg = _error(tmp_path, _set("methods", "A", {"method": "with_choices", key: value}))
    assert f"label 'A': methods.A.{key} = {value!r}: {allowed}" in msg, msg
    ok = _load(tmp_path, _set("methods", "A", {"method": "with_choices", "optimizer": "adam", "k": 10}))
    assert ok["toy"].spec["methods"]["A"]["optimizer"] == "adam"


def test_register_checks_and_inherits_choices(monkeypatch):
    monkeypatch.setattr(method_module, "METHODS", Registry("method"))
    with pytest.raises(ValueError, match="choices for 'nope', which is not one of its defaults"):
        register("x", "helmholtz", {"lr": 0.1}, choices={"nope": (1,)})(type("X", (Method,), {}))
    with pytest.raises(ValueError, match="default optimizer='adamw' is not one of its choices"):
        register("y", "helmholtz", {"optimizer": "adamw"}, choices={"optimizer": OPTIMIZERS})(type("Y", (Method,), {}))
    base = register("base", "helmholtz", {"optimizer": "sgd", "kl": "a"}, choices={"optimizer": OPTIMIZERS, "kl": ("a", "b")})(
        type("Base", (Method,), {}))
    child = register("child", "helmholtz", {"optimizer": "adam"})(type("Child", (base,), {}))
    plain = register("plain", "helmholtz", {"lr": 0.1})(type("Plain", (Method,), {}))
    assert child.choices == {"optimizer": OPTIMIZERS} and base.choices["kl"] == ("a", "b") and plain.choices == {}


def test_every_methods_defaults_pass_its_own_schema():
    for cls in all_methods().values():
        schema.hparams_model(cls).model_validate(dict(cls.defaults))


# ------------------------------------------------------------------------ profiles
@pytest.mark.parametrize("key, value, allowed", [
    ("epochs", 0, "must be greater than or equal to 1"),
    ("batch_size", 0, "must be greater than or equal to 1"),
    ("eval_k", 0, "must be greater than or equal to 1"),
    ("seeds", [], "must have at least 1 item"),
    ("seeds", [0, 1, 1], "must not repeat 1"),
    ("epochs", "3", "must be a valid integer"),
])
def test_bad_profile_value(tmp_path, key, value, allowed):
    msg = _error(tmp_path, _set("profiles", "quick", key, value))
    assert f"claim 'toy': profiles.quick.{key} = {value!r}: {allowed}" in msg, msg


def test_seeds_of_strings(tmp_path):
    msg = _error(tmp_path, _set("profiles", "quick", "seeds", ["a", "b"]))
    assert "profiles.quick.seeds[0] = 'a': must be a valid integer" in msg, msg


def test_profile_fields_are_the_runspec_fields_but_the_data_keys():
    """carve_valid is set by the tuning stage only (bench.claims.tuning), never by a claim;
    `substitutions` are words for the verdict line, not a run setting."""
    run_keys = ({f.name for f in fields(RunSpec)} - {"profile", "dataset", "model", "method", "hparams", "carve_valid"}
                - DATA_KEYS)
    assert set(schema.Profile.model_fields) == run_keys | {"model", "methods", "substitutions"}


def test_profile_override_of_an_unknown_label(tmp_path):
    msg = _error(tmp_path, _set("profiles", "paper", "methods", {"C": {"k": 5}}))
    assert "label 'C': profiles.paper.methods.C: overrides an unknown label; the claim's labels: 'A', 'B'" in msg


def test_a_claim_needs_the_quick_profile(tmp_path):
    msg = _error(tmp_path, lambda spec: spec["profiles"].pop("quick"))
    assert "missing required key 'quick' in profiles" in msg, msg


# ------------------------------------------------------------------------ unknown keys at each level
@pytest.mark.parametrize("path, where, allowed", [
    ((), "the claim", "dataset, downsample, figure, held_out_classes, holdout, id"),
    (("profiles", "quick"), "profiles.quick", "batch_size, epochs, eval_every"),
    (("profiles",), "profiles", "paper, quick"),
    (("verdict",), "verdict", "margin, pairs, rule"),
    (("paper_numbers", 0), "paper_numbers[0]", "method, note, provenance, source, value"),
])
def test_unknown_key_at_each_level(tmp_path, path, where, allowed):
    msg = _error(tmp_path, _set(*path, "colour", "red"))
    assert f"unknown key 'colour' in {where} (value 'red'); allowed keys: {allowed}" in msg, msg


def test_unknown_key_in_figure_and_metric(tmp_path):
    assert "unknown key 'colour' in figure (value 'red'); allowed keys: interpolation, x, yscale" in _error(
        tmp_path, _set("figure", {"x": ["epoch"], "colour": "red"}))
    assert "unknown key 'colour' in metric (value 'red'); allowed keys: converged_on, higher_is_better, name, split" in _error(
        tmp_path, _set("metric", {"colour": "red"}))


# ------------------------------------------------------------------------ verdicts and paper numbers
def test_unknown_rule(tmp_path):
    msg = _error(tmp_path, _set("verdict", "rule", "best"))
    assert "verdict.rule = 'best': unknown rule; use one of 'better', 'ordering', 'equivalent', 'faster_to_target'" in msg, msg


def test_verdict_key_of_another_rule(tmp_path):
    msg = _error(tmp_path, _set("verdict", "tolerance", 1.0))
    assert "unknown key 'tolerance' in verdict (value 1.0); allowed keys: margin, pairs, rule" in msg, msg


def test_verdict_naming_an_unknown_label(tmp_path):
    msg = _error(tmp_path, _set("verdict", "pairs", [["A", "C"]]))
    assert "label 'C': verdict.pairs[0][1] = 'C': not one of the claim's labels: 'A', 'B'" in msg, msg


def test_bad_verdict_value(tmp_path):
    assert "verdict.margin = -1.0: must be greater than or equal to 0" in _error(tmp_path, _set("verdict", "margin", -1.0))
    assert "verdict.pairs[0] = ['A', 'A']: compares a label with itself" in _error(
        tmp_path, _set("verdict", "pairs", [["A", "A"]]))
    msg = _error(tmp_path, _set("verdict", {"rule": "faster_to_target", "pairs": [["A", "B"]], "x": "epochs"}))
    assert "verdict.x = 'epochs': must be 'epoch', 'step', 'examples' or 'train_seconds'" in msg, msg


def test_bad_provenance(tmp_path):
    msg = _error(tmp_path, _set("paper_numbers", 0, "provenance", "recalled"))
    assert "paper_numbers[0].provenance = 'recalled': must be 'NF', 'R', 'R?', 'V' or 'src'" in msg, msg


def test_within_paper_needs_a_primary_source_number(tmp_path):
    def change(spec):
        spec["verdict"] = {"rule": "within_paper", "method": "A", "tolerance": 1.0}
        spec["paper_numbers"][0]["provenance"] = "R"

    msg = _error(tmp_path, change)
    assert "label 'A': verdict.method = 'A': within_paper needs a paper number for this label read in a primary " \
           "source (provenance V or src)" in msg, msg
    assert "toy" in _load(tmp_path, _set("verdict", {"rule": "within_paper", "method": "A", "tolerance": 1.0}))


# ------------------------------------------------------------------------ dataset, model, methods
def test_unknown_dataset(tmp_path):
    msg = _error(tmp_path, _set("dataset", "mnist2"))
    assert "dataset = 'mnist2': unknown dataset 'mnist2'; known datasets: " in msg and "uci_dna" in msg, msg


def test_held_out_classes_need_labels(tmp_path):
    msg = _error(tmp_path, _set("held_out_classes", [5]))
    assert "held_out_classes = [5]: holds classes out, which needs the labels: set labels: true" in msg, msg
    with pytest.raises(ConfigError, match="needs labels: true"):
        RunSpec(profile="quick", dataset="mnist", model={}, method="adam", hparams={}, seeds=(0,), epochs=1,
                batch_size=10, held_out_classes=(5,))


def test_unknown_family(tmp_path):
    msg = _error(tmp_path, _set("model", "family", "helmholz"))
    assert "model.family = 'helmholz': unknown model family 'helmholz'" in msg and "helmholtz" in msg, msg


@pytest.mark.parametrize("path, where, label", [
    (("model",), "model", None),
    (("methods", "A", "model"), "methods.A.model", "A"),
    (("profiles", "quick", "model"), "profiles.quick.model", None),
])
def test_unknown_model_key(tmp_path, path, where, label):
    msg = _error(tmp_path, _set(*path, "layerz", [180, 20]) if path == ("model",) else _set(*path, {"layerz": [180, 20]}))
    assert f"unknown key 'layerz' for family 'helmholtz' in {where} (value [180, 20]); allowed keys: bias, init, layers" in msg
    assert (f"label {label!r}" in msg) == (label is not None), msg


def test_bad_model_value(tmp_path):
    msg = _error(tmp_path, _set("model", "layers", [180, "10"]))
    assert "model.layers = [180, '10']: must be list[int] (family 'helmholtz')" in msg, msg


def test_method_of_another_family(tmp_path):
    msg = _error(tmp_path, _set("methods", "A", {"method": "vae"}))
    assert "label 'A': methods.A.method = 'vae': method 'vae' trains 'vae' models, the claim's model is 'helmholtz'" in msg


def test_method_of_several_families_names_them_all(tmp_path):
    msg = _error(tmp_path, _set("methods", "A", {"method": "vgi"}))
    assert ("method 'vgi' trains 'factor_analysis' and 'flow' and 'vae' models, the claim's model is 'helmholtz'") in msg


def test_unknown_method(tmp_path):
    msg = _error(tmp_path, _set("methods", "A", {"method": "nope"}))
    assert "label 'A': methods.A.method = 'nope': unknown method 'nope'; known methods: " in msg and "rws" in msg, msg


@pytest.mark.parametrize("key, value, allowed", [
    ("transform", "binarize", "must be 'none', 'dynamic_binarize' or 'unit_interval'"),
    ("holdout", 0, "must be greater than or equal to 1"),
    ("labels", "yes", "must be a valid boolean"),
    ("statement", "", "String should have at least 1 character"),
])
def test_bad_data_and_text_values(tmp_path, key, value, allowed):
    assert f"{key} = {value!r}: {allowed}" in _error(tmp_path, _set(key, value))


def test_missing_required_key(tmp_path):
    assert "claim 'toy': missing required key 'verdict' in the claim" in _error(tmp_path, lambda s: s.pop("verdict"))


# ------------------------------------------------------------------------ files and folders
def test_empty_claims_folder_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=rf"no claims in {tmp_path}: expected \*.yaml files .* it has no \*.yaml files"):
        load_claims(tmp_path)
    (tmp_path / "draft.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"no claims in .*: expected \*.yaml files .* its files draft.yaml hold no claims"):
        load_claims(tmp_path)
    with pytest.raises(ConfigError, match="it does not exist"):
        load_claims(tmp_path / "missing")


def test_a_claim_file_must_be_a_list_of_mappings(tmp_path):
    (tmp_path / "toy.yaml").write_text("id: toy\n")
    with pytest.raises(ConfigError, match=r"toy.yaml: expected a YAML list of claims"):
        load_claims(tmp_path)
    (tmp_path / "toy.yaml").write_text("- toy\n")
    with pytest.raises(ConfigError, match=r"toy.yaml, claim #1: a claim must be a mapping"):
        load_claims(tmp_path)
    (tmp_path / "toy.yaml").write_text("- id: toy\n  statement: [\n")
    with pytest.raises(ConfigError, match=r"toy.yaml: not valid YAML"):
        load_claims(tmp_path)


def test_duplicate_claim_id(tmp_path):
    write_claims(tmp_path, BASE, BASE)
    with pytest.raises(ConfigError, match=r"toy.yaml, claim 'toy': duplicate claim id \(also in toy.yaml\)"):
        load_claims(tmp_path)
