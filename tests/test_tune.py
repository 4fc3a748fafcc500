"""bench.claims.tune: grid points are the label's run with one seed, a short horizon and the grid's values."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.claims.catalog import expand, get_claim
from bench.claims.tune import grid_specs, parse_grid, tune
from bench.core.errors import ConfigError


def test_grid_specs_change_only_seeds_horizon_and_grid_values():
    base = expand(get_claim("foof-beats-kfac"), "smoke").runs["FOOF"]
    specs = grid_specs("foof-beats-kfac", "FOOF", "smoke", 3, parse_grid(["lr=0.1,1", "damping=1e-2,1"]))
    assert [(s.hparams["lr"], s.hparams["damping"]) for s in specs] == [(0.1, 0.01), (0.1, 1), (1, 0.01), (1, 1)]
    for s in specs:
        assert s.seeds == (0,) and s.epochs == 1 and s.train_subset == 3 * base.batch_size
        assert s.model == base.model and s.dataset == base.dataset and s.profile == "smoke-tuning"
        assert {k: v for k, v in s.hparams.items() if k not in ("lr", "damping")} == \
            {k: v for k, v in base.hparams.items() if k not in ("lr", "damping")}
    assert len({s.run_id for s in specs}) == 4


@pytest.mark.parametrize("label, grid, match", [("FOO", ["lr=1"], "no label 'FOO'"),
                                                 ("FOOF", ["lrr=1"], "not hyper-parameters of foof")])
def test_bad_label_or_grid_key_is_a_config_error(label, grid, match):
    with pytest.raises(ConfigError, match=match):
        grid_specs("foof-beats-kfac", label, "smoke", 3, parse_grid(grid))


def test_tune_ranks_points_and_marks_divergence(tmp_path, data_dir):
    table = tune("foof-beats-kfac", "SGD", "smoke", 3, {"lr": [0.01, 1e6]}, jobs=1, root=tmp_path)
    assert list(table.status) == ["ok", "diverged"] and table.loss.iloc[0] > 0 and pd.isna(table.loss.iloc[1])
    assert (tmp_path / "smoke" / "tuning" / "foof-beats-kfac--SGD.csv").exists()
