"""Faults found by trying it (issue 12): each whole kind fixed, each case a test."""

from __future__ import annotations

import textwrap

import pytest
import torch

from bench.claims.catalog import load_claims
from bench.core.errors import ConfigError
from bench.core.spec import RunSpec
from bench.curvature.mlp import damped_inverse
from bench.engine import loop, results, train
from bench.workloads import workload_for

SPEC = RunSpec(profile="adhoc", dataset="uci_dna", model={"family": "helmholtz", "layers": [180, 10]}, method="rws",
               hparams={"k": 5, "lr": 0.1, "optimizer": "momentum_ema", "q_updates": "wake+sleep", "sleep_every": 2,
                        "q_baseline": False},
               seeds=(0, 1), epochs=2, batch_size=50, train_subset=200, eval_subset=50, eval_k=5, final_eval_k=5)


def test_a_non_finite_final_evaluation_marks_that_seed_diverged(tmp_path, monkeypatch):
    """Fault 1: seed 1's last evaluation is NaN. It is marked diverged at that step (its last good
    step the evaluation before), not silently scored by an earlier value; seed 0 is untouched."""
    workload = workload_for("helmholtz")
    original, calls = workload.metrics, []

    def metrics(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 7:  # valid and test at epochs 0, 1, 2 (six calls), then the final test evaluation
            out["ll"] = out["ll"].clone()
            out["ll"][1] = float("nan")
        return out

    monkeypatch.setattr(workload, "metrics", metrics)
    meta = train.run(SPEC, tmp_path, progress=False)
    assert meta["seeds"]["0"] == {"status": "ok"}
    steps = 2 * (200 // 50)
    assert meta["seeds"]["1"] == {"status": "diverged", "diverged_at_step": steps, "last_good_step": steps}
    curve, _ = results.read_run(tmp_path)
    final = curve[(curve.metric == "ll") & (curve.split == "test") & (curve.eval_k == 5) & (curve.step == steps)]
    # seed 0: the epoch-2 and the final evaluation; seed 1: the epoch-2 one only (the verdicts leave
    # a diverged seed out, so it is never read as a final value)
    assert sorted(final.seed) == [0, 0, 1]


def test_a_blow_up_far_beyond_the_start_marks_the_seed_diverged(tmp_path):
    """Fault 7: RWS at lr 1e6 on UCI DNA finished 'ok' with -1.7e7 nats; now that seed is diverged."""
    spec = RunSpec(**{**SPEC.to_dict(), "hparams": {**SPEC.hparams, "lr": 1e6}, "seeds": (0,), "epochs": 3,
                      "train_subset": 300})
    meta = train.run(spec, tmp_path, progress=False)
    assert meta["status"] == "diverged" and meta["seeds"]["0"]["status"] == "diverged"


def test_a_failed_cholesky_gives_nan_for_that_replica_only():
    """Fault 3: a factorisation that fails is never a finite but wrong inverse."""
    good = torch.eye(3, dtype=torch.float64)
    bad = -torch.eye(3, dtype=torch.float64)  # not positive definite, even with damping 1e-12
    inv = damped_inverse(torch.stack([good, bad]), torch.tensor([1e-12, 1e-12], dtype=torch.float64))
    torch.testing.assert_close(inv[0], good / (1 + 1e-12))
    assert inv[1].isnan().all()


def test_zero_damping_is_refused_when_claims_load(tmp_path):
    """Fault 3: damping must be > 0, said before any job starts."""
    (tmp_path / "toy.yaml").write_text(textwrap.dedent("""
        - id: toy
          statement: a toy claim
          dataset: uci_dna
          model: {family: helmholtz, layers: [180, 10]}
          methods:
            A: {method: nrws, damping: 0}
            B: {method: rws}
          verdict: {rule: better, pairs: [[A, B]]}
          profiles:
            quick: {seeds: [0, 1], epochs: 1, batch_size: 50}
        """))
    with pytest.raises(ConfigError, match="damping") as err:
        load_claims(tmp_path)
    assert "'A'" in str(err.value) and "0" in str(err.value)


def test_an_evaluation_split_gets_one_binarization_whatever_the_claim(tmp_path, monkeypatch):
    """Fault 4: the fixed binarization of a split no longer depends on the order of the claim's
    evaluation splits: two claims scoring 'test' score the same binarized images."""
    seen = {}
    original = loop._binarize_eval

    def spy(x, spec, seed):
        out = original(x, spec, seed)
        seen.setdefault(spec.eval_splits, {})[x.shape[0], seed] = out
        return out

    monkeypatch.setattr(loop, "_binarize_eval", spy)
    base = dict(profile="adhoc", dataset="mnist", model={"family": "helmholtz", "layers": [784, 5]},
                method="rws", hparams=SPEC.hparams, seeds=(0,), epochs=1, batch_size=50, train_subset=50,
                eval_subset=20, eval_k=2, final_eval_k=2, transform="dynamic_binarize", holdout=100)
    for splits in (("valid", "test"), ("test",)):
        train.run(RunSpec(**base, eval_splits=splits, final_eval_splits=("test",)), tmp_path / "-".join(splits),
                  progress=False)
    test_a = [v for (n, s), v in seen[("valid", "test")].items()]
    test_b = list(seen[("test",)].values())
    assert any(torch.equal(a, test_b[0]) for a in test_a)
