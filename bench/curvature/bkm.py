"""The Bogoliubov-Kubo-Mori (BKM) metric of a QHBM (bench/models/qhbm.py), exact in dense simulation.

For a family of full-rank states rho(psi) the BKM metric is the Hessian of the quantum relative
entropy at coinciding arguments (Sbahi et al. 2022, arXiv 2206.04663, Sec. 3; Petz 1994),

    G_ij(psi) = d^2/dpsi'_i dpsi'_j D(rho_psi || rho_psi') at psi' = psi = tr(d_i rho  d_j log rho)

(D vanishes to second order at psi' = psi, so its Hessian is minus its mixed derivative, which is
-tr(d_i rho d_j log rho)). For a QHBM, rho = U diag(p) U^+ and log rho = U diag(log p) U^+, so in
U's frame d_theta rho is diagonal and d_phi rho = U [A, diag(p)] U^+ with A_k = U^+ d_k U
(anti-Hermitian), and the metric is block-diagonal (the cross block is the trace of a diagonal
matrix times a commutator with a diagonal one, 0):

* energy block: Cov_p(f), the covariance of the KOBE features f(x) = d_theta E_theta(x) under p_theta
  (the Fisher information of the classical energy-based model);
* circuit block: G_kl = Re sum_xy (A_k)_xy conj((A_l)_xy) (p_x - p_y)(log p_x - log p_y), positive
  semi-definite since every weight is >= 0.

d_k U by a two-point shift rule, exact for every gate of the ansatz: a gate exp(-i pi c G) has
U(c + 1/2) - U(c - 1/2) = -2i sin(pi G / 2) U(c), and sin(pi G / 2) is linear in G when G has two
eigenvalues: for the rotations (G = X/2 or Z/2, eigenvalues +-1/2) it is sqrt(2) G, so d_k U =
pi / (2 sqrt 2) [U(c + 1/2) - U(c - 1/2)]; for CZ^c = exp(i pi c |11><11|) (G = -|11><11|,
eigenvalues 0 and -1) it is G, so d_k U = pi / 2 [U(c + 1/2) - U(c - 1/2)] (the qhbm-library
computes its circuit block by parameter shifts too). tests/test_qhbm.py checks G against the
Hessian of D (autograd) and against finite differences of D computed with matrix logarithms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bench.models.qhbm import QHBM

SHIFTS_PER_CHUNK = 32  # circuit parameters shifted per batched evaluation of U (n = 8: 7 layers x 64 x 1 MB per replica)


def bkm_metric(model: QHBM, psi: Tensor) -> Tensor:
    """G(psi) per replica: psi (R, P) float64 -> (R, P, P) float64, symmetric positive
    semi-definite (singular along directions that do not move rho, e.g. a rotation of a qubit whose
    populations are equal)."""
    psi = psi.detach()
    r, size = psi.shape
    m = model.n_energy
    log_p = model.log_probs(psi)  # (R, 2^n)
    p = log_p.exp()
    f = model.features  # (2^n, M)
    mean = p @ f
    out = torch.zeros(r, size, size, dtype=psi.dtype, device=psi.device)
    out[:, :m, :m] = torch.einsum("rx,xi,xj->rij", p, f, f) - mean[:, :, None] * mean[:, None, :]
    u = model.unitary(psi)  # (R, 2^n, 2^n)
    generators = torch.cat([u.mH[:, None] @ _shift_derivative(model, psi, ks)
                            for ks in torch.arange(m, size, device=psi.device).split(SHIFTS_PER_CHUNK)], 1)
    weights = (p[:, :, None] - p[:, None, :]) * (log_p[:, :, None] - log_p[:, None, :])  # (R, 2^n, 2^n)
    a = generators.flatten(2)  # (R, K, 4^n): A_k, row-major
    g = ((a * weights.flatten(1)[:, None, :]) @ a.mH).real
    out[:, m:, m:] = (g + g.mT) / 2
    return out


def _shift_derivative(model: QHBM, psi: Tensor, ks: Tensor) -> Tensor:
    """d_k U for the circuit parameters ks (indices into psi) by the shift rule: psi (R, P) ->
    (R, len(ks), 2^n, 2^n)."""
    shift = torch.zeros(len(ks), psi.shape[1], dtype=psi.dtype, device=psi.device)
    shift[torch.arange(len(ks)), ks] = 0.5
    u = model.unitary(torch.cat([psi[:, None] + shift, psi[:, None] - shift], 1))  # (R, 2c, 2^n, 2^n)
    rotation = (ks - model.n_energy) % model.n_layer < 2 * model.qubits  # else a CZ exponent
    factor = torch.where(rotation, math.pi / (2 * math.sqrt(2)), math.pi / 2).to(u.dtype)
    return factor[None, :, None, None] * (u[:, : len(ks)] - u[:, len(ks):])
