"""QHBMs preparing the Gibbs state of the transverse-field Ising ring (bench/models/qhbm.py), their
BKM metric (bench/curvature/bkm.py), methods (methods/vqt.py, qngd.py, qpmd.py) and workload
(bench/workloads/qhbm.py), in float64/complex128, against independent references: QuTiP's exact
diagonalisation, Gibbs state, von Neumann and relative entropies and fidelity; matrix logarithms
by numpy's eigendecomposition; autograd Hessians; the Gibbs variational principle; and one seed trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import qutip
import torch

from bench.core.errors import ConfigError
from bench.curvature.bkm import bkm_metric
from bench.engine.methods import get_method
from bench.models import build_model
from bench.models.qhbm import QHBM
from bench.workloads import workload_for

WORKLOAD = workload_for("qhbm")


def qhbm(qubits: int, layers: int, seeds: list[int], field: float = 1.0, beta: float = 1.0) -> QHBM:
    return build_model({"family": "qhbm", "qubits": qubits, "circuit_layers": layers, "field": field,
                        "beta": beta}, seeds)


def qutip_tfim(n: int, field: float) -> qutip.Qobj:
    """-sum_i Z_i Z_{i+1} - field sum_i X_i on the periodic ring, built from QuTiP's tensor products."""
    def site(op: qutip.Qobj, i: int) -> qutip.Qobj:
        return qutip.tensor([op if j == i else qutip.qeye(2) for j in range(n)])

    bonds = {tuple(sorted((i, (i + 1) % n))) for i in range(n)}
    return (-sum(site(qutip.sigmaz(), i) * site(qutip.sigmaz(), j) for i, j in bonds)
            - field * sum(site(qutip.sigmax(), i) for i in range(n)))


def dense(model: QHBM, psi: torch.Tensor) -> qutip.Qobj:
    n = model.qubits
    return qutip.Qobj(model.density(psi).detach().numpy(), dims=[[2] * n, [2] * n])


@pytest.mark.parametrize("n, field, beta", [(3, 1.0, 0.5), (4, 1.0, 1.0), (4, 0.7, 2.0)])
def test_gibbs_state_free_energy_and_metrics_equal_qutips_exact_diagonalisation(n, field, beta):
    model = qhbm(n, 2, [0, 1], field, beta)
    h = qutip_tfim(n, field)
    assert np.allclose(model.hamiltonian.numpy(), h.full(), atol=1e-14)
    expm = (-beta * h).expm()
    log_z = np.log(expm.tr().real)
    assert abs(float(model.log_partition) - log_z) < 1e-12  # free energy -log Z / beta
    sigma = expm / expm.tr()
    assert np.allclose(model.gibbs_state.numpy(), sigma.full(), atol=1e-12)
    out = WORKLOAD.metrics(model, None, torch.zeros(2, 1, 1), 1, None)
    for r in range(2):
        rho = dense(model, model.params[r])
        loss = beta * qutip.expect(h, rho) - qutip.entropy_vn(rho)
        assert abs(float(out["vqt_loss"][r]) - loss) < 1e-11
        assert abs(float(out["relative_entropy"][r]) - qutip.entropy_relative(rho, sigma)) < 1e-9
        assert abs(float(out["fidelity"][r]) - qutip.fidelity(rho, sigma) ** 2) < 1e-9


def test_vqt_loss_is_minus_log_z_at_the_gibbs_state_and_above_it_elsewhere():
    """With no field the Gibbs state is classical: theta_ij = -beta on the ring's bonds and the
    identity circuit (phi = 0) make rho = sigma_beta exactly; by the Gibbs variational principle
    every other state has a higher loss, with or without a field."""
    beta = 0.8
    model = qhbm(4, 2, [0], field=0.0, beta=beta)
    psi = torch.zeros(1, model.params.shape[1], dtype=torch.float64)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    for i, j in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        psi[0, 4 + pairs.index((i, j))] = -beta
    assert abs(float(model.vqt_loss(psi)) + float(model.log_partition)) < 1e-12
    assert float(model.relative_entropy_to_target(psi)) == pytest.approx(0.0, abs=1e-12)
    assert float(model.fidelity_to_target(psi)) == pytest.approx(1.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    for field in (0.0, 1.0):
        other = qhbm(4, 2, [0], field=field, beta=beta)
        shifted = psi + 0.3 * torch.randn(20, psi.shape[1], generator=g, dtype=torch.float64)
        assert (other.vqt_loss(shifted) > -other.log_partition).all()


def test_relative_entropy_between_qhbms_equals_qutips():
    model = qhbm(3, 2, [0, 1, 2])
    psi, other = model.params[:1].detach(), model.params[1:].detach()
    d = model.relative_entropy(psi.expand(2, -1), other)
    for r in range(2):
        assert abs(float(d[r]) - qutip.entropy_relative(dense(model, psi[0]), dense(model, other[r]))) < 1e-10
    assert float(model.relative_entropy(psi, psi)) == pytest.approx(0.0, abs=1e-12)


def _logm(a: np.ndarray) -> np.ndarray:
    """The logarithm of a Hermitian positive-definite matrix, from its eigendecomposition (numpy)."""
    w, v = np.linalg.eigh(a)
    return (v * np.log(w)) @ v.conj().T


def _logm_relative_entropy(model: QHBM, psi: np.ndarray, prime: np.ndarray) -> float:
    """D(rho_psi || rho_psi') = tr rho (log rho - log rho') from dense matrices and their
    logarithms (no modular Hamiltonian)."""
    rho = model.density(torch.as_tensor(psi)).numpy()
    rho_prime = model.density(torch.as_tensor(prime)).numpy()
    return float(np.trace(rho @ (_logm(rho) - _logm(rho_prime))).real)


def test_bkm_metric_is_the_hessian_of_the_relative_entropy():
    """G(psi) = Hessian of psi' -> D(rho_psi || rho_psi') at psi' = psi: by autograd on the modular
    formula, and by central differences of the matrix-logarithm formula; its energy block is the
    covariance of the KOBE features under p_theta (the qhbm-library's energy block)."""
    model = qhbm(2, 1, [0, 1])
    g = bkm_metric(model, model.params)
    for r in range(2):
        psi = model.params[r].detach()
        hessian = torch.autograd.functional.hessian(lambda q, psi=psi: model.relative_entropy(psi, q), psi)
        assert torch.allclose(g[r], hessian, atol=1e-10), (g[r] - hessian).abs().max()
        x, h = psi.numpy(), 2e-4
        basis = np.eye(len(x))
        fd = np.array([[(_logm_relative_entropy(model, x, x + h * (a + b)) - _logm_relative_entropy(model, x, x + h * (a - b))
                         - _logm_relative_entropy(model, x, x - h * (a - b)) + _logm_relative_entropy(model, x, x - h * (a + b)))
                        / (4 * h * h) for b in basis] for a in basis])
        assert np.allclose(g[r].numpy(), fd, atol=1e-6), np.abs(g[r].numpy() - fd).max()
        p = model.log_probs(psi).exp()
        f = model.features
        cov = (f * p[:, None]).T @ f - torch.outer(p @ f, p @ f)
        assert torch.allclose(g[r, : model.n_energy, : model.n_energy], cov, atol=1e-12)
    assert (torch.linalg.eigvalsh(g) > -1e-12).all()


@pytest.mark.parametrize("method, hparams", [("vqt", {"optimizer": "adam"}), ("vqt", {"optimizer": "sgd"}),
                                             ("qngd", {}), ("qpmd", {"inner_steps": 3})])
def test_replicas_are_independent_and_each_method_lowers_the_loss(method, hparams):
    """Seed 1 trained beside seeds 0 and 2 gives what it gives alone (to rounding), and a few steps
    at the default step size lower every replica's VQT loss."""
    together, alone = qhbm(3, 2, [0, 1, 2]), qhbm(3, 2, [1])
    assert torch.equal(together.params[1], alone.params[0])
    start = together.vqt_loss(together.params).detach()
    steps = [get_method(method)(m, **hparams) for m in (together, alone)]
    for _ in range(5):
        for s in steps:
            out = s.step(torch.zeros(len(s.model.seeds), 1, 1))
            assert out["vqt_loss"].shape == (len(s.model.seeds),)
    assert torch.allclose(together.params[1], alone.params[0], atol=1e-12, rtol=0)
    assert (together.vqt_loss(together.params) < start).all()


def test_qngd_step_is_the_regularised_natural_gradient():
    model = qhbm(3, 1, [0, 4])
    psi = model.params.detach().clone()
    method = get_method("qngd")(model, lr=0.5, damping=1e-2)
    method.step(torch.zeros(2, 1, 1))
    q = psi.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.vqt_loss(q).sum(), q)
    g = bkm_metric(model, psi)
    expected = psi - 0.5 * torch.linalg.solve(g + 1e-2 * torch.eye(g.shape[-1], dtype=g.dtype), grad)
    assert torch.allclose(model.params, expected, atol=1e-10)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least 2 qubits"):
        qhbm(1, 1, [0])
    with pytest.raises(ValueError, match="beta > 0"):
        qhbm(3, 1, [0], beta=0.0)
    with pytest.raises(ConfigError, match="euclidean_weight"):
        get_method("qpmd")(qhbm(3, 1, [0]), euclidean_weight=1.5)
