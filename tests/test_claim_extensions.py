"""The two claim features the variational claims added: the `threshold` verdict rule and per-label
`model:` overrides (bench/stats.py, bench/claims.py)."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from bench.claims.catalog import expand, load_claims
from bench.claims.stats import verdict
from bench.core.errors import ConfigError

SHARE = {"split": "test", "name": "amortization_share", "higher_is_better": True}


def _finals(values: list[float], name: str = "amortization_share") -> pd.DataFrame:
    return pd.DataFrame([dict(label="VAE", seed=s, step=10, epoch=1, train_seconds=1.0, split="test", metric=name,
                              eval_k=100, value=v) for s, v in enumerate(values)])


@pytest.mark.parametrize("values, expected", [
    ([0.80, 0.82, 0.81], "reproduced"),
    ([0.30, 0.31, 0.29], "not reproduced"),
    ([0.20, 0.90, 0.55], "inconclusive"),
    ([0.9], "inconclusive"),  # one seed decides nothing
])
def test_threshold_rule(values, expected):
    rule = {"rule": "threshold", "method": "VAE", "value": 0.5}
    assert verdict(_finals(values), rule, SHARE, [], "quick")["verdict"] == expected


def test_threshold_rule_follows_the_metric_direction():
    """For a lower-is-better metric the value must lie below the threshold."""
    metric = {"split": "test", "name": "gap", "higher_is_better": False}
    rule = {"rule": "threshold", "method": "VAE", "value": 1.0}
    assert verdict(_finals([0.2, 0.3, 0.25], "gap"), rule, metric, [], "quick")["verdict"] == "reproduced"
    assert verdict(_finals([2.2, 2.3, 2.25], "gap"), rule, metric, [], "quick")["verdict"] == "not reproduced"


CLAIM = """
- id: toy
  statement: model variants in one claim
  dataset: uci_dna
  model: {{family: helmholtz, layers: [180, 10], bias: -1.0}}
  methods:
    small: {{method: rws, k: 2}}
    large: {{method: rws, k: 2, model: {label_model}}}
  verdict: {{rule: better, pairs: [[large, small]]}}
  profiles:
    quick: {{seeds: [0, 1], epochs: 1, batch_size: 50, model: {{bias: 0.0}}{extra}}}
"""


def _claims(tmp_path, label_model: str = "{layers: [180, 20]}", extra: str = ""):
    (tmp_path / "toy.yaml").write_text(textwrap.dedent(CLAIM.format(label_model=label_model, extra=extra)))
    return load_claims(tmp_path)


def test_label_models_override_the_claim_and_profile_models(tmp_path, data_dir):
    runs = expand(_claims(tmp_path)["toy"], "quick").runs
    assert runs["small"].model == {"family": "helmholtz", "layers": [180, 10], "bias": 0.0}
    assert runs["large"].model == {"family": "helmholtz", "layers": [180, 20], "bias": 0.0}
    assert runs["small"].hparams == runs["large"].hparams and runs["small"].run_id != runs["large"].run_id


def test_profile_label_model_wins(tmp_path, data_dir):
    claims = _claims(tmp_path, extra=", methods: {large: {model: {layers: [180, 5]}}}")
    assert expand(claims["toy"], "quick").runs["large"].model["layers"] == [180, 5]


@pytest.mark.parametrize("bad", ["{layerz: [180, 20]}", "{family: vae}"])
def test_label_model_keys_are_checked(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"toy.yaml, claim 'toy', label 'large': unknown key '(layerz|family)' for "
                                          r"family 'helmholtz' in methods.large.model"):
        _claims(tmp_path, label_model=bad)


def test_a_profile_sets_a_labels_own_batch_size(tmp_path, data_dir):
    """A claim comparing batch sizes (large-batch training): the label's batch wins over the
    profile's, is no hyper-parameter, and at the smoke profile is at most half its training set."""
    claims = _claims(tmp_path, extra=", methods: {large: {batch_size: 1000}}")
    quick = expand(claims["toy"], "quick").runs
    assert (quick["small"].batch_size, quick["large"].batch_size) == (50, 1000)
    assert quick["small"].hparams == quick["large"].hparams
    smoke = expand(claims["toy"], "smoke").runs
    assert (smoke["small"].batch_size, smoke["large"].batch_size) == (50, 150)


def test_a_labels_batch_size_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"toy.yaml, claim 'toy', label 'large': profiles.quick.methods.large.batch_size "
                                          r"= 0: must be greater than or equal to 1"):
        _claims(tmp_path, extra=", methods: {large: {batch_size: 0}}")
