"""The last-layer Laplace approximation (methods/laplace.py) on Bayesian multinomial logistic
regression (a linear model: the last layer is the whole model), against torch.autograd's exact
Hessian of the negative log posterior in float64, its marginal likelihood against a direct
log-determinant, and both against the laplace-torch library (Daxberger et al. 2021)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import HIDE_TORCHVISION, classification_data

from bench.core.errors import ConfigError
from bench.models.mlp import MLP
from bench.nn import noise
from methods.laplace import Laplace

N, D, C = 40, 6, 3


def _fitted(hessian: str, n: int = N, steps: int = 200) -> tuple[Laplace, torch.Tensor, torch.Tensor]:
    """Logistic regression [D, C] with biases, trained by full-batch Adam on n examples."""
    x, y = classification_data(1, n=N, d=D, classes=C)
    x, y = x[:, :n], y[:, :n]
    model = MLP([D, C], [0], activations=[], loss="categorical", init="kaiming").double()
    method = Laplace(model, lr=0.05, hessian=hessian)
    method.prepare(n)
    for _ in range(steps):
        method.step(x, y)
    return method, x, y


def _neg_log_posterior(x: torch.Tensor, y: torch.Tensor, delta: float):
    def f(theta: torch.Tensor) -> torch.Tensor:  # theta: [W | b] row-major, (C * (D + 1),)
        w = theta.reshape(C, D + 1)
        z = x[0] @ w[:, :D].T + w[:, D]
        return F.cross_entropy(z, y[0], reduction="sum") + delta / 2 * theta.square().sum()
    return f


def _theta(method: Laplace) -> torch.Tensor:
    return torch.cat([method.model.weights[0][0], method.model.biases[0][0].unsqueeze(-1)], -1).flatten().detach()


def test_full_laplace_covariance_is_the_inverse_autograd_hessian():
    method, x, y = _fitted("full")
    posterior = method.posterior()
    delta = float(posterior.prior_precision[0])
    hessian = torch.autograd.functional.hessian(_neg_log_posterior(x, y, delta), _theta(method))
    torch.testing.assert_close(posterior.covariance()[0], torch.linalg.inv(hessian), rtol=1e-8, atol=1e-10)


def test_prior_precision_maximises_the_marginal_likelihood():
    """-delta/2 ||theta||^2 + P/2 log delta - 1/2 log det(H_nll + delta I), H_nll by autograd: its
    maximum over delta (on a fine log grid) is at the method's delta, and the method's log_evidence
    differs from it by a constant."""
    method, x, y = _fitted("full")
    posterior, theta = method.posterior(), _theta(method)
    h_nll = torch.autograd.functional.hessian(_neg_log_posterior(x, y, 0.0), theta)

    def evidence(delta: float) -> float:
        eye = torch.eye(len(theta), dtype=torch.float64)
        return float(-delta / 2 * theta.square().sum() + len(theta) / 2 * np.log(delta)
                     - 0.5 * torch.logdet(h_nll + delta * eye))

    grid = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 2001))
    values = np.array([evidence(d) for d in grid])
    best = float(posterior.prior_precision[0])
    assert abs(np.log(grid[values.argmax()]) - np.log(best)) < 0.01
    diffs = [float(posterior.log_evidence(torch.tensor([d], dtype=torch.float64))[0]) - evidence(d)
             for d in grid[::400]]
    np.testing.assert_allclose(diffs, diffs[0], atol=1e-8)


def test_kron_equals_full_on_one_example():
    """With one training example sum_n Lambda_n (x) phi_n phi_n^T is a Kronecker product itself."""
    full = _fitted("full", n=1, steps=5)[0].posterior()
    kron = _fitted("kron", n=1, steps=5)[0].posterior()
    torch.testing.assert_close(kron.prior_precision, full.prior_precision, rtol=1e-9, atol=0)
    torch.testing.assert_close(kron.covariance(), full.covariance(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("hessian", ["kron", "full"])
def test_samples_have_the_posterior_covariance(hessian):
    """200000 draws, one call of `sample` on a copy of the posterior repeated over 200000 replicas."""
    posterior, n = _fitted(hessian)[0].posterior(), 200_000
    copies = copy.copy(posterior)
    for name, value in vars(posterior).items():
        if isinstance(value, torch.Tensor):
            setattr(copies, name, value.expand(n, *value.shape[1:]))
    torch.manual_seed(0)
    draws = copies.sample().flatten(1).numpy()
    cov = posterior.covariance()[0].numpy()
    scale = cov.diagonal().max()
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.02 * scale)
    np.testing.assert_allclose(draws.mean(0), posterior.theta[0].flatten().numpy(), atol=5 * np.sqrt(scale / n))


def test_predictive_before_and_after_the_first_epoch():
    x, y = classification_data(1, n=N, d=D, classes=C)
    model = MLP([D, 8, C], [0], activations="relu", loss="categorical", init="kaiming").double()
    method = Laplace(model, lr=0.01)
    method.prepare(N)
    with noise.replica_noise([0], "cpu"):
        before = method.extra_metrics(x, 4, y)
        assert float(before["mutual_information"][0]) == 0 and "prior_precision" not in before
        method.step(x[:, :20], y[:, :20])
        assert method.train_x is None
        method.step(x[:, 20:], y[:, 20:])
        assert method.train_x.shape == (1, N, D)
        after = method.extra_metrics(x, 4, y)
    assert float(after["mutual_information"][0]) > 0 and float(after["prior_precision"][0]) > 0


def test_needs_a_classifier():
    with pytest.raises(ConfigError, match="categorical"):
        Laplace(MLP([D, C], [0], activations=[], loss="gaussian"))


# laplace-torch imports torchmetrics: the reference runs in a subprocess without torchvision (conftest)
LAPLACE_TORCH = HIDE_TORCHVISION + """
from laplace import Laplace
from torch.utils.data import DataLoader, TensorDataset

x, y, w, b = torch.load(sys.argv[1])
torch.set_default_dtype(torch.float64)
net = torch.nn.Linear(w.shape[1], w.shape[0])
with torch.no_grad():
    net.weight.copy_(w)
    net.bias.copy_(b)
la = Laplace(net, "classification", subset_of_weights="all", hessian_structure="full")
la.fit(DataLoader(TensorDataset(x, y), batch_size=len(x)))
la.optimize_prior_precision(method="marglik", n_steps=2000, lr=0.05)
print(json.dumps({"delta": float(la.prior_precision), "cov": la.posterior_covariance.tolist()}))
"""


def test_prior_precision_and_covariance_equal_laplace_torchs(tmp_path):
    """laplace-torch 0.3's full Laplace of the same linear classifier (all weights = the last layer),
    its prior precision by its own marginal-likelihood optimiser (Adam on log delta, run to
    convergence): the same delta and covariance (its parameter order: W row-major, then b)."""
    method, x, y = _fitted("full")
    data = tmp_path / "data.pt"
    torch.save((x[0], y[0], method.model.weights[0][0].detach(), method.model.biases[0][0].detach()), data)
    done = subprocess.run([sys.executable, "-c", LAPLACE_TORCH, str(data)], capture_output=True, text=True, check=True)
    reference = json.loads(done.stdout.strip().splitlines()[-1])
    posterior = method.posterior()
    np.testing.assert_allclose(float(posterior.prior_precision[0]), reference["delta"], rtol=1e-6)
    order = [c * D + d for c in range(C) for d in range(D)] + [C * D + c for c in range(C)]
    ours = [c * (D + 1) + d for c in range(C) for d in range(D)] + [c * (D + 1) + D for c in range(C)]
    cov = posterior.covariance()[0].numpy()[np.ix_(ours, ours)]
    np.testing.assert_allclose(cov, np.asarray(reference["cov"])[np.ix_(order, order)], rtol=1e-5, atol=1e-9)
