"""Evaluation draws from its own per-replica generators (bench.nn.noise.evaluation_noise): training
does not depend on the evaluation settings (eval_every, eval_k), and an evaluation's numbers depend
on the model, the seed, the step, the split and K only, not on the evaluations made before it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bench.core.spec import RunSpec
from bench.engine import results, train
from bench.nn import noise

SBN = {"dataset": "uci_dna", "model": {"family": "helmholtz", "layers": [180, 10]}}
CASES = {  # the evaluation draws: IS from q (nrws), log Z^2 from dreams (bihm), a mean-field proposal, IS from
    # a Gaussian encoder and dynamic binarization (vae)
    "nrws": SBN,
    "bihm": SBN,
    "meanfield_sbn": SBN,
    "vae": {"dataset": "mnist", "transform": "dynamic_binarize", "eval_splits": ("test",),
            "model": {"family": "vae", "layers": [784, 5], "hidden": [[20]]}},
}
KEYS = ["seed", "step", "epoch", "examples", "split", "metric", "eval_k"]


def _curve(method: str, out, **evaluation) -> pd.DataFrame:
    spec = RunSpec(profile="adhoc", method=method, seeds=(0, 1), epochs=5, batch_size=25, train_subset=50,
                   eval_subset=20, final_eval_k=20, hparams={}, **CASES[method], **evaluation)
    train.run(spec, out, progress=False)
    curve = results.read_run(out)[0]
    return curve[[*KEYS, "value"]].sort_values(KEYS).reset_index(drop=True)


@pytest.mark.parametrize("method", sorted(CASES))
def test_training_does_not_depend_on_the_evaluation_settings(method, tmp_path):
    every = _curve(method, tmp_path / "every", eval_every=1, eval_k=5)
    sparse = _curve(method, tmp_path / "sparse", eval_every=5, eval_k=5)
    larger_k = _curve(method, tmp_path / "larger_k", eval_every=5, eval_k=9)
    train_rows = [c[c.split == "train"].reset_index(drop=True) for c in (every, sparse, larger_k)]
    assert len(train_rows[0]) == 2 * 5 * train_rows[0].metric.nunique()
    pd.testing.assert_frame_equal(train_rows[0], train_rows[1])  # bit for bit
    pd.testing.assert_frame_equal(train_rows[0], train_rows[2])
    # an evaluation depends on the step and K, not on how many evaluations came before: the sparse
    # run's evaluations (epoch 0, epoch 5, the final K / 10 and K) are rows of the dense run
    evaluated = sparse[sparse.split != "train"]
    shared = every.merge(evaluated, on=KEYS, suffixes=("", "_sparse"))
    assert len(shared) == len(evaluated) > 0
    pd.testing.assert_series_equal(shared.value, shared.value_sparse, check_names=False)


def test_evaluation_draws_leave_the_training_streams_where_they_were():
    like = torch.zeros(())
    with noise.replica_noise([3, 4], "cpu"):
        first = noise.rand((2, 5), like)
        with noise.evaluation_noise("test", 7, 100):
            evaluation = noise.rand((2, 5), like)
            noise.randn((2, 1000), like)
        second = noise.rand((2, 5), like)
    with noise.replica_noise([3, 4], "cpu"):
        assert torch.equal(noise.rand((2, 5), like), first)
        assert torch.equal(noise.rand((2, 5), like), second)  # the evaluation drew nothing from them
        with noise.evaluation_noise("test", 7, 100):
            assert torch.equal(noise.rand((2, 5), like), evaluation)  # the same key draws the same noise
        with noise.evaluation_noise("test", 7, 10):
            assert not torch.equal(noise.rand((2, 5), like), evaluation)  # another key, other noise
    assert not torch.equal(evaluation, first) and not torch.equal(evaluation[0], evaluation[1])


def test_a_replica_draws_its_evaluation_noise_from_its_own_seed():
    like = torch.zeros(())
    with noise.replica_noise([0, 3], "cpu"), noise.evaluation_noise("test", 7, 100):
        beside = noise.randn((2, 6), like)
    with noise.replica_noise([3], "cpu"), noise.evaluation_noise("test", 7, 100):
        alone = noise.randn((1, 6), like)
    assert torch.equal(beside[1], alone[0])


def test_outside_the_replica_context_evaluation_uses_the_global_generator():
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    with noise.evaluation_noise("test", 0, 1):
        assert torch.equal(noise.rand((4,), torch.zeros(())), expected)
