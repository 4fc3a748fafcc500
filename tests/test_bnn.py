"""The Bayesian-neural-network methods (issue 13, research notes P8): Bayes by backprop,
MC dropout, deep ensembles (SWAG and the Laplace approximation: their own test files, and the
replica and checkpoint tests here), and their posterior predictive (bench.workloads.predictive).

References: the closed-form posterior of Bayesian linear regression (mean-field VI's optimum),
torch.distributions' Gaussian KL, scipy's entropy, the deterministic network, Adam on the same
objective; seeds alone vs beside others; a pickled method resumed vs an uninterrupted one."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import classification_data, float64_classifier
from scipy.stats import entropy

from bench.claims.catalog import expand, get_claim
from bench.claims.tuning import tuning_spec
from bench.core.errors import ConfigError
from bench.engine.data import load
from bench.engine.loop import Loop
from bench.engine.train import prepare_data
from bench.models.mlp import MLP
from bench.nn import noise
from bench.workloads import workload_for
from bench.workloads.predictive import bma_metrics, entropies, predictive_metrics, white_noise_inputs
from methods.adam import Adam
from methods.bayes_by_backprop import BayesByBackprop, gaussian_kl
from methods.deep_ensemble import DeepEnsemble
from methods.laplace import Laplace
from methods.mc_dropout import MCDropout, dropout_forward
from methods.swag import SWAG


def _classifier(seeds: list[int], layers=(6, 8, 3)) -> MLP:
    return float64_classifier(seeds, layers)


_data = classification_data


# ----------------------------------------------------------------------------- Bayes by backprop
def test_bayes_by_backprop_recovers_the_mean_field_optimum_of_bayesian_linear_regression():
    """y = X w + N(0, 1) noise, prior w ~ N(0, s^2 I): the posterior is N(A^-1 X^T y, A^-1) with
    A = X^T X + I / s^2, and the optimum of mean-field Gaussian VI has the exact posterior mean and
    variances 1 / A_ii (Bishop, PRML sec. 10.1.2). The model: an `mlp` [D, 1] without bias, its
    gaussian likelihood 0.5 (z - t)^2 (unit noise variance) pointed at y instead of x."""
    n, d, prior_sigma = 200, 3, 1.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    x[:, 1] += 0.6 * x[:, 0]  # correlated features: the mean-field variances differ from the marginals
    y = x @ torch.tensor([1.5, -2.0, 0.3], dtype=torch.float64) + torch.randn(n, generator=g, dtype=torch.float64)
    precision = x.T @ x + torch.eye(d, dtype=torch.float64) / prior_sigma**2
    mean = torch.linalg.solve(precision, x.T @ y)
    mf_sd = precision.diagonal().rsqrt()

    model = MLP([d, 1], [0], activations=[], loss="gaussian", bias=False, init="kaiming").double()
    model.target = lambda inputs, labels: labels  # regression: the likelihood reads y, not the input
    method = BayesByBackprop(model, lr=0.01, prior_sigma=prior_sigma, init_sigma=0.05, train_samples=4)
    method.prepare(n)
    with noise.replica_noise([0], "cpu"):
        for lr, steps in ((0.01, 1500), (0.001, 1500)):  # a smaller step size to settle the noisy gradient
            for group in method.opt.param_groups:
                group["lr"] = lr
            for _ in range(steps):
                method.step(x.unsqueeze(0), y.view(1, n, 1))
    got_mean, got_sd = model.weights[0][0, 0].detach(), method.sigmas()[0][0, 0].detach()
    np.testing.assert_array_less(((got_mean - mean) / mf_sd).abs(), 0.1)  # within 0.1 posterior sd (got 0.04)
    np.testing.assert_allclose(got_sd, mf_sd, rtol=0.05)  # sd within 5% (got 2%)


def test_the_kl_term_equals_torch_distributions_kl():
    torch.manual_seed(0)
    mu, sigma = torch.randn(2, 4, 3, dtype=torch.float64), torch.rand(2, 4, 3, dtype=torch.float64) + 0.1
    zero, scale = torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    prior = torch.distributions.Normal(zero, scale)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma), prior).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, sigma, 0.7), expected, rtol=1e-12, atol=1e-12)


def test_bayes_by_backprop_refuses_a_missing_training_size_and_a_second_weight_cost():
    with pytest.raises(RuntimeError, match="prepare"):
        BayesByBackprop(_classifier([0])).kl_per_example()
    with pytest.raises(ConfigError, match="l2"):
        BayesByBackprop(MLP([6, 3], [0], loss="categorical", l2=1e-4))


# ----------------------------------------------------------------------------- MC dropout
def test_mc_dropout_with_p_0_is_the_deterministic_network_and_adam():
    x, y = _data(2)
    model, reference = _classifier([0, 1]), _classifier([0, 1])
    assert torch.equal(dropout_forward(model, x, 0.0, drop_input=True), model(x))
    dropout, adam = MCDropout(model, p=0.0, drop_input=True, lr=0.01), Adam(reference, lr=0.01)
    for _ in range(3):
        torch.testing.assert_close(dropout.step(x, y)["batch_objective"], adam.step(x, y)["batch_objective"],
                                   rtol=0, atol=0)
    metrics = dropout.extra_metrics(x, 4, y)
    assert torch.all(metrics["mutual_information"] < 1e-12)  # four identical passes: no spread


def test_mc_dropout_passes_differ_and_p_1_is_refused():
    x, _ = _data(1, n=2000, d=50)
    model = MLP([50, 3], [0], loss="categorical").double()
    a = dropout_forward(model, x, 0.3, drop_input=True)
    assert not torch.equal(a, dropout_forward(model, x, 0.3, drop_input=True))
    with pytest.raises(ConfigError, match="p must lie"):
        MCDropout(model, p=1.0)


# ----------------------------------------------------------------------------- deep ensembles
def test_a_one_member_ensemble_is_adam_and_its_predictive_is_the_workloads_metrics():
    x, y = _data(2)
    ensemble, adam = DeepEnsemble(_classifier([0, 1]), members=1, lr=0.01), Adam(_classifier([0, 1]), lr=0.01)
    for _ in range(3):
        torch.testing.assert_close(ensemble.step(x, y)["batch_objective"], adam.step(x, y)["batch_objective"],
                                   rtol=0, atol=0)
    standard = workload_for("mlp").metrics(ensemble.model, ensemble, x, 1, y)
    extra = ensemble.extra_metrics(x, 1, y)
    for bma, name in (("bma_nll", "loss"), ("bma_error", "error"), ("bma_ece", "ece")):
        torch.testing.assert_close(extra[bma], standard[name].double())
    assert torch.all(extra["mutual_information"] == 0)


def test_ensemble_members_start_from_different_initialisations():
    with noise.replica_noise([0, 1], "cpu"):
        ensemble = DeepEnsemble(_classifier([0, 1]), members=3)
    first = [net.weights[0][0] for net in ensemble.networks]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])


# ----------------------------------------------------------------------------- the predictive
def test_predictive_entropies_match_scipy():
    """Two samples' class probabilities, per example: H[mean p] and H[mean p] - mean H[p_s]."""
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]], [[0.1, 0.8, 0.1], [0.3, 0.4, 0.3]]], dtype=torch.float64)
    total, mi = entropies(p.log().unsqueeze(1))  # (S=2, R=1, N=2, C=3)
    mean = p.mean(0).numpy()
    expected_total = entropy(mean, axis=-1)
    expected_mi = expected_total - entropy(p.numpy(), axis=-1).mean(0)
    np.testing.assert_allclose(total[0], expected_total, rtol=1e-12)
    np.testing.assert_allclose(mi[0], expected_mi, rtol=1e-12)


def test_bma_nll_is_the_nll_of_the_averaged_predictive():
    x, y = _data(1, n=5)
    logits = [torch.randn(1, 5, 3, dtype=torch.float64) for _ in range(3)]

    def fixed(z: torch.Tensor):  # these logits on the 5 examples, zeros on the white-noise probe
        return lambda inputs: z if inputs.shape[1] == 5 else torch.zeros(1, inputs.shape[1], 3, dtype=z.dtype)

    out = bma_metrics([fixed(z) for z in logits], x, y)
    mean = torch.stack([torch.softmax(z, -1) for z in logits]).mean(0)
    expected = -mean[0, torch.arange(5), y[0]].log().mean()
    torch.testing.assert_close(out["bma_nll"][0], expected)
    assert out["mutual_information_noise"][0] == 0  # identical (zero) logits on the noise probe
    assert white_noise_inputs(x).shape == (1, 1000, 6)


# ----------------------------------------------------------------------------- replicas and checkpoints
METHODS = {"bayes_by_backprop": (BayesByBackprop, {"init_sigma": 0.1}),
           "mc_dropout": (MCDropout, {"p": 0.3}),
           "deep_ensemble": (DeepEnsemble, {"members": 3}),
           "swag": (SWAG, {"swa_start": 1, "rank": 3}),
           "laplace": (Laplace, {})}


def _train(method_name: str, seeds: list[int], steps: int, state: bytes | None = None):
    """(metrics after `steps` steps of replica-wise training on the same data, the state pickled
    before those metrics' draws), from a fresh method or from a pickled `state`."""
    cls, hparams = METHODS[method_name]
    x, y = _data(len(seeds))
    with noise.replica_noise(seeds, "cpu"):
        if state is None:
            method = cls(_classifier(seeds), lr=0.01, **hparams)
            method.prepare(x.shape[1])
        else:
            saved = torch.load(io.BytesIO(state), weights_only=False)
            method = saved["method"]
            noise.set_states(saved["noise"])
        for _ in range(steps):
            method.step(x, y)
        buffer = io.BytesIO()
        torch.save({"method": method, "noise": noise.states()}, buffer)  # before evaluation, as the loop
        return method.extra_metrics(x, 5, y), buffer.getvalue()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_seed_alone_trains_as_beside_other_seeds(name):
    together, _ = _train(name, [0, 1, 2], 4)
    alone, _ = _train(name, [1], 4)
    for metric, values in together.items():
        torch.testing.assert_close(values[1:2], alone[metric], rtol=1e-7, atol=1e-9)
    assert not torch.equal(together["bma_nll"][0], together["bma_nll"][1])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_pickled_method_resumes_to_the_same_numbers(name):
    """The loop's checkpoint pickles the method whole (with its model, rho or members, optimiser)."""
    whole, _ = _train(name, [0, 1], 6)
    _, state = _train(name, [0, 1], 3)
    resumed, _ = _train(name, [0, 1], 3, state)
    for metric, values in whole.items():
        assert torch.equal(values, resumed[metric]), metric


def test_the_loop_tells_bayes_by_backprop_its_training_set_and_classes():
    """N of the KL weight is the run's training examples: the first 5000 less the held-out digit
    5's at quick, fewer in a tuning run, which carves its validation images off the 5000 first;
    test keeps the 5s, train and valid hold none."""
    base = expand(get_claim("bnn-bbb-spread-higher-on-unseen-digit"), "quick").runs["Bayes by backprop"]
    tuning = tuning_spec(base, {"lr": 1e-3})
    labels = torch.as_tensor(load("mnist").y["train"][:5000].astype(np.int64))
    fives = int((labels == 5).sum())
    carved_fives = int((labels[5000 - tuning.carve_valid:] == 5).sum())
    assert base.held_out_classes == (5,) and 300 < fives < 600
    for spec, n in ((base, 5000 - fives), (tuning, 5000 - tuning.carve_valid - (fives - carved_fives))):
        data = prepare_data(spec, torch.device("cpu"))
        assert all(5 not in data[split][1] for split in ("train", "valid") if split in data)
        assert (data["test"][1] == 5).any()
        loop = Loop(spec, "test", data, torch.device("cpu"))
        assert loop.method.training_examples() == n
        assert loop.method.classes_seen.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]


def test_unseen_classes_are_a_probe_beside_the_seen_classes_metrics():
    """With the training classes given, the BMA metrics are those of the seen classes' examples and
    the unseen class's mutual information is added (and its gap to the seen one's)."""
    x, y = _data(2, n=30)
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(2, 30, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    samplers = [lambda inputs, z=z: z if inputs.shape[1] == 30 else torch.zeros(2, inputs.shape[1], 3) for z in logits]
    seen = y[0] != 2
    out = bma_metrics(samplers, x, y, torch.tensor([0, 1]))
    expected = predictive_metrics(torch.stack([torch.log_softmax(z[:, seen], -1) for z in logits]), y[:, seen])
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value, rtol=1e-12, atol=0)
    _, mi = entropies(torch.stack([torch.log_softmax(z[:, ~seen], -1) for z in logits]))
    torch.testing.assert_close(out["mutual_information_unseen"], mi.mean(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(out["mi_gap_unseen"], mi.mean(1) - expected["mutual_information"])
    everything = bma_metrics(samplers, x, y, torch.tensor([0, 1, 2]))
    assert "mi_gap_unseen" not in everything and everything["bma_nll"].ne(out["bma_nll"]).all()
