"""Categorical hidden Markov models (bench/models/hmm.py) and Baum-Welch (methods/baum_welch.py), in
float64, against independent references: brute-force enumeration of every state path, hmmlearn's
CategoricalHMM from the same parameters (one iteration, and its monitor's history over many), EM's
monotone log-likelihood (Baum et al. 1970); the decoding of uci_dna's indicator bits
(bench/workloads/hmm.py); the monotonicity metric and its health check (bench/workloads/monotone.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from hmmlearn.hmm import CategoricalHMM as ReferenceHMM

from bench.engine import data
from bench.engine.methods import get_method
from bench.models import build_model
from bench.models.hmm import CategoricalHMM
from bench.workloads import workload_for
from bench.workloads.hmm import decode_indicators
from bench.workloads.monotone import LargestDecrease, not_full_batch


def hmm(length: int, symbols: int, states: int, seeds: list[int]) -> CategoricalHMM:
    return build_model({"family": "categorical_hmm", "layers": [length * (symbols - 1), symbols, states]}, seeds)


def encode(obs: np.ndarray, symbols: int) -> np.ndarray:
    """Indicator bits of symbols obs (..., T): symbol v < V - 1 sets bit v of its group, V - 1 none."""
    return np.eye(symbols)[obs][..., : symbols - 1].reshape(*obs.shape[:-1], -1)


def replicate(x: np.ndarray, r: int) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32).unsqueeze(0).expand(r, -1, -1).contiguous()


def set_random_parameters(model: CategoricalHMM, seed: int, scale: float = 2.0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model.log_start, model.log_trans, model.log_emit):
            p.copy_(torch.log_softmax(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64), -1))


def probabilities(model: CategoricalHMM, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replica r's (pi, A, B) as numpy arrays."""
    return tuple(torch.exp(p[r]).numpy().copy() for p in (model.log_start, model.log_trans, model.log_emit))


def sample(pi: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, t: int, seed: int) -> np.ndarray:
    """n sequences of length t from the HMM (pi, A, B): symbols (n, t)."""
    rng = np.random.default_rng(seed)
    obs = np.empty((n, t), dtype=np.int64)
    for i in range(n):
        z = rng.choice(len(pi), p=pi)
        for j in range(t):
            obs[i, j] = rng.choice(b.shape[1], p=b[z])
            z = rng.choice(len(pi), p=a[z])
    return obs


def reference(model: CategoricalHMM, r: int, n_iter: int) -> ReferenceHMM:
    """hmmlearn's CategoricalHMM starting from replica r's parameters, running exactly n_iter iterations."""
    ref = ReferenceHMM(n_components=model.states, n_features=model.symbols, init_params="", params="ste",
                       n_iter=n_iter, tol=-np.inf)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = probabilities(model, r)
    return ref


def dna_train(n: int) -> np.ndarray:
    return data.load("uci_dna").x["train"][:n].astype(np.float64)


# --------------------------------------------------------------------------- the forward algorithm
def test_forward_log_prob_equals_enumeration_over_state_paths():
    """log p(o) of all 3^4 sequences of a random 3-state, 3-symbol HMM, two replicas, against the sum
    over all 3^4 state paths of pi B A B A B A B written out; the 81 probabilities sum to 1. With
    symbol 2 made impossible, the sequences holding it get log p = -inf and the others stay exact."""
    model = hmm(4, 3, 3, seeds=[0, 1])
    set_random_parameters(model, seed=5)
    seqs = np.array(list(itertools.product(range(3), repeat=4)))
    obs = torch.as_tensor(seqs).unsqueeze(0).expand(2, -1, -1)

    def brute(r: int) -> np.ndarray:
        pi, a, b = probabilities(model, r)
        return np.array([sum(pi[z[0]] * b[z[0], o[0]] * np.prod([a[z[i - 1], z[i]] * b[z[i], o[i]] for i in range(1, 4)])
                             for z in itertools.product(range(3), repeat=4)) for o in seqs])

    ours = model.log_prob(obs).numpy()
    for r in range(2):
        p = brute(r)
        np.testing.assert_allclose(ours[r], np.log(p), rtol=0, atol=1e-12)
        assert abs(p.sum() - 1) < 1e-12
    with torch.no_grad():
        model.log_emit[..., 2] = -torch.inf
        model.log_emit.copy_(torch.log_softmax(model.log_emit, -1))
    ours = model.log_prob(obs).numpy()
    with np.errstate(divide="ignore"):
        for r in range(2):
            np.testing.assert_allclose(ours[r], np.log(brute(r)), rtol=0, atol=1e-12)
    assert np.isneginf(ours[:, (seqs == 2).any(1)]).all() and np.isfinite(ours[:, ~(seqs == 2).any(1)]).all()


# --------------------------------------------------------------------------- Baum-Welch against hmmlearn
def test_one_iteration_equals_hmmlearn():
    """From the same parameters, one Baum-Welch step gives each replica hmmlearn's startprob_, transmat_
    and emissionprob_ after one iteration (n_iter=1, no initialisation), and hmmlearn's log-likelihood
    of the start equals the model's forward log-likelihood; 150 sequences of 20 symbols of a planted
    3-state HMM, fitted with 4 states."""
    planted = hmm(20, 4, 3, seeds=[9])
    obs = sample(*probabilities(planted, 0), n=150, t=20, seed=2)
    model = hmm(20, 4, 4, seeds=[3, 4])
    refs = [reference(model, r, n_iter=1) for r in range(2)]
    ll = model.log_prob(torch.as_tensor(obs).unsqueeze(0).expand(2, -1, -1)).sum(1)
    get_method("baum_welch")(model).step(replicate(encode(obs, 4), 2))
    for r, ref in enumerate(refs):
        ref.fit(obs.reshape(-1, 1), lengths=[20] * 150)
        assert ref.monitor_.history[0] == pytest.approx(ll[r].item(), rel=1e-12)
        for ours, theirs in zip(probabilities(model, r), (ref.startprob_, ref.transmat_, ref.emissionprob_)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)


def test_iterations_track_hmmlearns_monitor_on_dna(data_dir):
    """25 Baum-Welch steps on 300 UCI DNA sequences (5 states): the model's log-likelihood before each
    step equals hmmlearn's monitor history (the log-likelihood each of its iterations starts from) to
    1e-11 relative, and the final parameters agree to 1e-9."""
    x = dna_train(300)
    obs = decode_indicators(torch.as_tensor(x), 4)
    model = hmm(60, 4, 5, seeds=[0, 1])
    refs = [reference(model, r, n_iter=25) for r in range(2)]
    bw = get_method("baum_welch")(model)
    ours = []
    for _ in range(25):
        ours.append(model.log_prob(obs.unsqueeze(0).expand(2, -1, -1)).sum(1).numpy())
        bw.step(replicate(x, 2))
    for r, ref in enumerate(refs):
        ref.fit(obs.numpy().reshape(-1, 1), lengths=[60] * 300)
        np.testing.assert_allclose(np.array(ours)[:, r], ref.monitor_.history, rtol=1e-11)
        for mine, theirs in zip(probabilities(model, r), (ref.startprob_, ref.transmat_, ref.emissionprob_)):
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)


def test_log_likelihood_never_decreases_and_ll_decrease_measures_it(data_dir):
    """EM-1: 60 iterations of an 8-state HMM on 500 DNA sequences, three replicas: the training
    log-likelihood never falls by more than 1e-9 of its magnitude, and the step's 'll_decrease'
    equals the largest relative decrease computed here from the forward log-likelihoods."""
    x = dna_train(500)
    obs = decode_indicators(torch.as_tensor(x), 4).unsqueeze(0).expand(3, -1, -1)
    model = hmm(60, 4, 8, seeds=[0, 1, 2])
    bw = get_method("baum_welch")(model)
    lls, out = [], None
    for _ in range(60):
        lls.append(model.log_prob(obs).mean(1).numpy())
        out = bw.step(replicate(x, 3))
    lls = np.array(lls)
    drops = np.clip((lls[:-1] - lls[1:]) / np.abs(lls[:-1]), 0, None).max(0)
    assert (drops <= 1e-9).all(), f"log-likelihood fell by {drops.max():.3g} of its magnitude"
    np.testing.assert_allclose(out["ll_decrease"].numpy(), drops, rtol=0, atol=1e-15)
    assert (lls[-1] - lls[0] > 1).all(), "60 iterations should gain more than a nat per sequence"


def test_a_seed_alone_equals_the_seed_beside_another():
    """Replica 1 of a [0, 1] model starts, and after 10 steps ends, where seed 1 alone does: the flat
    Dirichlet draw and the updates depend on its own seed only. Each start row is on the simplex."""
    obs = sample(*probabilities(hmm(15, 4, 3, seeds=[9]), 0), n=80, t=15, seed=3)
    pair, alone = hmm(15, 4, 3, [0, 1]), hmm(15, 4, 3, [1])
    for p in (pair.log_start, pair.log_trans, pair.log_emit):
        torch.testing.assert_close(torch.exp(p).sum(-1), torch.ones(p.shape[:-1], dtype=torch.float64))
        assert not torch.equal(p[0], p[1]), "seeds 0 and 1 should start apart"
    for name in ("log_start", "log_trans", "log_emit"):
        assert torch.equal(getattr(pair, name)[1], getattr(alone, name)[0])
    for model, r in ((pair, 2), (alone, 1)):
        bw = get_method("baum_welch")(model)
        for _ in range(10):
            bw.step(replicate(encode(obs, 4), r))
    for name in ("log_start", "log_trans", "log_emit"):
        torch.testing.assert_close(getattr(pair, name)[1], getattr(alone, name)[0], rtol=1e-12, atol=1e-12)


def test_the_model_rejects_layers_that_do_not_describe_indicator_groups():
    with pytest.raises(ValueError, match=r"layers \[D, V, S\]"):
        build_model({"family": "categorical_hmm", "layers": [181, 4, 8]}, [0])
    with pytest.raises(ValueError, match=r"layers \[D, V, S\]"):
        build_model({"family": "categorical_hmm", "layers": [4, 8]}, [0])


# --------------------------------------------------------------------------- the DNA decoding
def test_dna_decoding_is_a_bijection_on_the_data(data_dir):
    """Every row of every uci_dna split decodes to 60 symbols of 4 and re-encodes (written out here,
    independently) to the same 180 bits; the symbol counts are the 3-bit pattern counts."""
    ds = data.load("uci_dna")
    for split, x in ds.x.items():
        obs = decode_indicators(torch.as_tensor(x.astype(np.float32)), 4).numpy()
        assert obs.shape == (len(x), 60) and obs.min() >= 0 and obs.max() <= 3
        np.testing.assert_array_equal(encode(obs, 4), x, err_msg=split)
        groups = x.reshape(len(x), 60, 3)
        for v, pattern in enumerate(([1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0])):
            assert (obs == v).sum() == (groups == pattern).all(-1).sum()


@pytest.mark.parametrize("bits, match", [([1.0, 0.0, 0.0, 1.0], "not groups of 3"),
                                         ([1.0, 0.0, 0.5, 0.0, 0.0, 0.0], "must be 0 or 1"),
                                         ([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], "more than one bit set")])
def test_decoding_rejects_what_is_not_an_indicator_encoding(bits, match):
    with pytest.raises(ValueError, match=match):
        decode_indicators(torch.tensor([bits]), 4)


# --------------------------------------------------------------------------- workload and monotonicity metric
def test_workload_ll_is_the_forward_log_likelihood_per_sequence():
    model = hmm(10, 4, 3, seeds=[0, 1])
    obs = sample(*probabilities(model, 0), n=30, t=10, seed=4)
    x = replicate(encode(obs, 4), 2)
    out = workload_for("categorical_hmm").metrics(model, None, x, 1, None)
    per_seq = model.log_prob(torch.as_tensor(obs).unsqueeze(0).expand(2, -1, -1))
    torch.testing.assert_close(out["ll"], per_seq.mean(1), rtol=0, atol=0)
    torch.testing.assert_close(out["ll_sem"], per_seq.std(1) / 30**0.5, rtol=0, atol=0)
    assert workload_for("categorical_hmm").exact_metrics({}) == ("ll",)


def test_largest_decrease_is_the_running_max_of_relative_drops():
    track = LargestDecrease()
    values = [[-10.0, -5.0], [-9.0, -5.5], [-9.5, -5.0], [-9.4, -5.4], [-9.6, -5.2]]
    got = [track.update(torch.tensor(v, dtype=torch.float64)).tolist() for v in values]
    assert got[0] == [0.0, 0.0] and got[1] == [0.0, pytest.approx(0.1)]
    assert got[-1] == [pytest.approx(0.5 / 9.0), pytest.approx(0.1)]


def _rows(values: list[float], steps_per_epoch: int) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"split": "train", "metric": "ll_decrease", "seed": 0, "step": np.arange(1, n + 1) * steps_per_epoch,
                         "epoch": np.arange(1, n + 1), "eval_k": 0, "value": values})


def test_health_flags_minibatch_iterations_as_not_testing_monotonicity():
    check = not_full_batch()
    assert check(_rows([0.0, 0.0, 0.0], steps_per_epoch=1)) == []
    found = check(_rows([0.0, 0.01, 0.01], steps_per_epoch=6))
    assert [(f.kind, f.seed) for f in found] == [("saturated", 0)] and "18 steps in 3 epochs" in found[0].detail
