"""Packing a learning-rate grid as the replicas of one run (bench.nn.optim.ReplicaScaled,
bench.engine.train.run_packed, bench.claims.tuning's `pack`): the scaled optimizer is the optimizer at
each replica's rate (float64, against separate optimizers), a packed tuning grid gives each point the
numbers it gets when trained alone (up to float rounding), a diverging point leaves the others alone,
and what cannot be packed is refused with the reason."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from bench.claims.catalog import expand, get_claim, plan_all
from bench.claims.tuning import CONFIGS, grid, select, trained_packed, tuning_spec
from bench.core.errors import ConfigError
from bench.core.layout import tuning_run_dir
from bench.engine import results, train
from bench.engine.methods import get_method
from bench.models import build_model
from bench.nn.optim import OPTIMIZERS, make_optimizer, replica_learning_rates


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_scaled_updates_are_the_optimizer_at_each_replicas_rate(name):
    """Replica r of one (R, ...) parameter under replica_learning_rates(scale) follows the same
    optimizer built alone at lr * scale[r], step for step (float64; a learning-rate change between
    steps, as a schedule makes, included)."""
    torch.manual_seed(0)
    r, lr, scale = 3, 0.05, torch.tensor([1.0, 0.3, 3.0], dtype=torch.float64)
    start = torch.randn(r, 4, 2, dtype=torch.float64)
    grads = [torch.randn(r, 4, 2, dtype=torch.float64) for _ in range(6)]
    packed = torch.nn.Parameter(start.clone())
    with replica_learning_rates(scale):
        opt = make_optimizer([packed], name, lr, momentum=0.9)
    alone = [torch.nn.Parameter(start[i].clone()) for i in range(r)]
    opts = [make_optimizer([p], name, lr * float(scale[i]), momentum=0.9) for i, p in enumerate(alone)]
    for t, g in enumerate(grads):
        if t == 3:  # a schedule sets every group's rate
            for o, factor in [(opt, 1.0)] + [(o, float(scale[i])) for i, o in enumerate(opts)]:
                for group in o.param_groups:
                    group["lr"] = 0.5 * lr * factor
        opt.zero_grad()
        packed.grad = g.clone()
        opt.step()
        for i, (p, o) in enumerate(zip(alone, opts)):
            o.zero_grad()
            p.grad = g[i].clone()
            o.step()
    for i in range(r):
        torch.testing.assert_close(packed.detach()[i], alone[i].detach(), rtol=1e-12, atol=1e-12)


def test_a_parameter_without_a_replica_axis_is_refused():
    with replica_learning_rates(torch.ones(3)), pytest.raises(ConfigError, match="replica first"):
        make_optimizer([torch.nn.Parameter(torch.zeros(5, 2))], "adam", 0.1)


def _grid_specs(claim: str, label: str) -> list:
    base = expand(get_claim(claim), "smoke").runs[label]
    return [tuning_spec(base, point) for point in grid(base, CONFIGS["smoke"])]


@pytest.mark.parametrize("claim, label", [("rws-beats-ws", "RWS K=5"), ("aevb-beats-ws-frey", "AEVB N_z=2")])
def test_a_packed_grid_gives_each_point_its_own_numbers(claim, label, tmp_path):
    """Each point of a smoke tuning grid, trained as one replica of a packed run, records the rows
    (every metric, split and step) and status it records trained alone, up to float rounding; its
    run.json is its own spec's and names the runs it was packed with."""
    specs = _grid_specs(claim, label)
    assert train.packable(specs) is None
    alone = [tmp_path / "alone" / s.run_id for s in specs]
    packed = [tmp_path / "packed" / s.run_id for s in specs]
    for spec, folder in zip(specs, alone):
        train.run(spec, folder, device="cpu", progress=False)
    metas = train.run_packed(specs, packed, device="cpu", progress=False)
    keys = ["seed", "split", "metric", "eval_k", "step", "epoch", "examples"]
    for spec, a, p, meta in zip(specs, alone, packed, metas):
        (ca, ma), (cp, mp) = results.read_run(a), results.read_run(p)
        assert mp["run_id"] == spec.run_id and mp["spec"] == ma["spec"] and mp["seeds"] == ma["seeds"]
        assert mp["packed"]["run_ids"] == [s.run_id for s in specs] and meta["packed"] == mp["packed"]
        assert set(cp.run_id) == {spec.run_id} and set(cp.seed) == set(spec.seeds)
        assert len(ca) == len(cp) > 0  # the same rows in the same order (rows are recorded in a fixed order)
        pd.testing.assert_frame_equal(ca[keys], cp[keys])
        pd.testing.assert_series_equal(ca.value, cp.value, rtol=1e-4, atol=1e-4)


def test_a_diverging_point_leaves_the_others_alone(tmp_path):
    specs = _grid_specs("rws-beats-ws", "RWS K=5")[:2]
    specs.append(replace(specs[0], hparams={**specs[0].hparams, "lr": 1e7}))
    metas = train.run_packed(specs, [tmp_path / s.run_id for s in specs], device="cpu", progress=False)
    assert [m["status"] for m in metas] == ["ok", "ok", "diverged"]
    alone = train.run(specs[1], tmp_path / "alone", device="cpu", progress=False)
    assert alone["seeds"] == metas[1]["seeds"]


def test_what_cannot_be_packed_is_refused_with_the_reason(tmp_path):
    specs = _grid_specs("rws-beats-ws", "RWS K=5")
    other_seed = [specs[0], replace(specs[1], seeds=(7,))]
    other_k = [specs[0], replace(specs[1], hparams={**specs[1].hparams, "k": 9})]
    assert "same single seed" in train.packable(other_seed)
    assert "learning rate alone" in train.packable(other_k)
    kfac = _grid_specs("kfac-fewer-updates-than-sgd", "K-FAC")
    assert "packs_lr" in train.packable(kfac)
    with pytest.raises(ConfigError, match="cannot train 2 runs as replicas of one run: .*learning rate alone"):
        train.run_packed(other_k, [tmp_path / "a", tmp_path / "b"], device="cpu")


def test_every_packing_method_builds_with_per_replica_rates():
    """Each method that declares packs_lr builds its optimizer on (R, ...) parameters for every
    model a claim gives it (else a packed grid would stop at its first run)."""
    seen = set()
    for plan in plan_all("smoke"):
        for spec in plan.runs.values():
            cls = get_method(spec.method)
            if not cls.packs_lr or (spec.method, spec.model_name) in seen:
                continue
            seen.add((spec.method, spec.model_name))
            model = build_model(spec.model, [1000, 1000])
            with replica_learning_rates(torch.tensor([1.0, 2.0])):
                cls(model, **spec.hparams)
    assert len({m for m, _ in seen}) >= 8


def test_select_packs_on_request_and_chooses_as_one_at_a_time(tmp_path):
    """The same selection (point, score up to rounding) from a packed and an unpacked tuning."""
    base = expand(get_claim("rws-beats-ws"), "smoke").runs["RWS K=5"]
    one = select(base, tmp_path / "one", pack=False)
    packed = select(base, tmp_path / "packed", pack=True)
    assert packed["chosen"] == one["chosen"]
    assert [p["score"] for p in packed["points"]] == pytest.approx([p["score"] for p in one["points"]], rel=1e-4)
    folder = tuning_run_dir(tmp_path / "packed", base.profile, packed["points"][0]["run_id"])
    assert "packed" in json.loads((folder / "run.json").read_text())
    # what `bench select` prints: how many points trained packed
    assert trained_packed(packed, tmp_path / "packed", base.profile) == len(packed["points"])
    assert trained_packed(one, tmp_path / "one", base.profile) == 0
