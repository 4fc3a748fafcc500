"""Quantum Hamiltonian-based models (QHBMs) of n qubits for variational quantum thermalization of
the transverse-field Ising ring, simulated densely in complex128, with a leading replica axis
(``qhbm`` family). Sbahi, Martinez, Patel, Saxena, Verdon et al. 2022, "Provably efficient
variational generative modeling of quantum many-body systems via quantum-probabilistic information
geometry" (arXiv 2206.04663); the model and the problem as in google/qhbm-library.

The problem (there is no data; the target is stated in the model config, ``qubits``, ``field`` h
and ``beta``): the Gibbs state sigma_beta = exp(-beta H) / Z_beta of

    H = - sum_i Z_i Z_{i+1} - h sum_i X_i        (periodic ring: the n bonds (i, i+1 mod n); one for n = 2)

(the library's 1-D TFIM, h its ``bias``, 1.0 the critical point). Basis state x in {0, 1}^n,
qubit 0 the most significant bit; z_i = 1 - 2 x_i is Z_i's eigenvalue.

The model: rho(psi) = U(phi) [sum_x p_theta(x) |x><x|] U(phi)^dagger, psi = (theta, phi), with

* p_theta(x) = exp(-E_theta(x)) / Z_theta, E_theta(x) = sum_i theta_i z_i + sum_{i<j} theta_ij z_i z_j,
  the library's KOBE energy of order 2 (parities of up to 2 bits, every pair);
* U(phi) = `circuit_layers` layers of the hardware-efficient ansatz, each: X^a then Z^b on every
  qubit (Cirq's exponent units: rotations by pi a and pi b, Rx(pi a) = exp(-i pi a X / 2), Rz(pi b)
  = exp(-i pi b Z / 2), whose global phases do not change rho), then CZ^c = diag(1, 1, 1, e^{i pi c})
  on the bonds (0, 1), (2, 3), ... and (1, 2), (3, 4), ... of the open chain (diagonal, so their
  order does not matter).

Parameters: one float64 vector psi per replica, ``params`` (R, P), laid out [theta: n single-bit
then n(n-1)/2 pair weights (i < j, row-major) | phi: per layer, a and b per qubit (n x 2) then
c per bond (n - 1)]. Every function of the model takes psi of shape (..., P), so that a method or a
test can differentiate it (torch.func) or evaluate a shifted copy. Initialisation per replica from
its own seed (``bench.nn.noise.replica_generators``, seeded by 1000 * seed + 1, as the other
families): theta ~ N(0, 0.1^2) (the library's energy initialiser), phi ~ U(-0.25, 0.25) (its
geometry experiments' circuit initialiser).

Quantities (all exact: no sampling):

* VQT loss (Verdon et al. 2019): L(psi) = beta tr(rho H) - S(rho) = beta sum_x p(x) <x|U^+ H U|x>
  - H(p_theta), the von Neumann entropy being the Shannon entropy of p_theta (U preserves it);
  L = D(rho || sigma_beta) - log Z_beta, so min L = -log Z_beta, reached at rho = sigma_beta;
* relative entropy D(rho || sigma_beta) = L + log Z_beta (nats);
* Uhlmann fidelity F(rho, sigma_beta) = (tr sqrt(sqrt(sigma) rho sqrt(sigma)))^2;
* relative entropy between two QHBMs, D(rho_psi || rho_psi') = -H(p_theta) + tr(rho_psi K_psi')
  + log Z_theta', K_psi' = U(phi') E_theta'(Z) U(phi')^+ the modular Hamiltonian (log rho_psi' =
  -K_psi' - log Z_theta'): the proximity term of quantum-probabilistic mirror descent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.models import register_family
from bench.nn import noise

ENERGY_INIT_STD = 0.1
CIRCUIT_INIT_HALF_WIDTH = 0.25


def basis_bits(n: int) -> Tensor:
    """(2^n, n) float64: bit q of basis state x (qubit 0 the most significant)."""
    x = torch.arange(2**n)
    return ((x[:, None] >> (n - 1 - torch.arange(n))[None, :]) & 1).to(torch.float64)


def kobe_features(n: int) -> Tensor:
    """(2^n, n + n(n-1)/2) float64: the parities z_i, then z_i z_j for i < j, of every basis state."""
    z = 1.0 - 2.0 * basis_bits(n)
    pairs = [z[:, i] * z[:, j] for i in range(n) for j in range(i + 1, n)]
    return torch.cat([z, torch.stack(pairs, 1) if pairs else z[:, :0]], 1)


def ring_bonds(n: int) -> list[tuple[int, int]]:
    """The bonds (i, i + 1 mod n) of a periodic ring of n qubits, each once."""
    return sorted({(min(i, (i + 1) % n), max(i, (i + 1) % n)) for i in range(n)})


def tfim_hamiltonian(n: int, field: float) -> Tensor:
    """H = -sum_bonds Z_i Z_j - field sum_i X_i on the ring of n >= 2 qubits, (2^n, 2^n) float64."""
    if n < 2:
        raise ValueError(f"a transverse-field Ising ring needs at least 2 qubits; got {n}")
    z = 1.0 - 2.0 * basis_bits(n)
    h = torch.diag(-sum(z[:, i] * z[:, j] for i, j in ring_bonds(n)))
    states = torch.arange(2**n)
    for q in range(n):  # X_q flips bit q
        h[states ^ (1 << (n - 1 - q)), states] -= field
    return h


def _kron(gates: Tensor) -> Tensor:
    """Kronecker product over the qubit axis: (..., n, 2, 2) -> (..., 2^n, 2^n), qubit 0 leftmost."""
    out = gates[..., 0, :, :]
    for q in range(1, gates.shape[-3]):
        g = gates[..., q, :, :]
        out = (out[..., :, None, :, None] * g[..., None, :, None, :]).reshape(
            *out.shape[:-2], out.shape[-2] * 2, out.shape[-1] * 2)
    return out


def _rotations(a: Tensor, b: Tensor) -> Tensor:
    """Rz(pi b) Rx(pi a) per qubit: (..., n) each -> (..., n, 2, 2) complex128."""
    c, s = torch.cos(math.pi * a / 2), torch.sin(math.pi * a / 2)
    cb, sb = torch.cos(math.pi * b / 2), torch.sin(math.pi * b / 2)
    em, ep = cb - 1j * sb, cb + 1j * sb  # e^{-i pi b / 2}, e^{+i pi b / 2}
    row0 = torch.stack([em * c, -1j * em * s], -1)
    row1 = torch.stack([-1j * ep * s, ep * c], -1)
    return torch.stack([row0, row1], -2)


@register_family("qhbm")
class QHBM(nn.Module):
    """A QHBM of `qubits` qubits with a KOBE-2 energy and `circuit_layers` ansatz layers, one
    parameter vector per seed, and the target Gibbs state of the TFIM ring with transverse `field`
    at inverse temperature `beta` (the problem the VQT loss, the relative entropy and the fidelity
    refer to). Raises ValueError for fewer than 2 qubits, no layer or a non-positive beta."""

    def __init__(self, qubits: int, circuit_layers: int, field: float, beta: float, seeds: list[int]):
        super().__init__()
        if circuit_layers < 1 or beta <= 0:
            raise ValueError(f"a QHBM needs circuit_layers >= 1 and beta > 0; got {circuit_layers} and {beta}")
        self.qubits, self.circuit_layers, self.field, self.beta, self.seeds = qubits, circuit_layers, field, beta, list(seeds)
        n = qubits
        hamiltonian = tfim_hamiltonian(n, field)
        energies, vectors = torch.linalg.eigh(hamiltonian)
        gibbs = torch.softmax(-beta * energies, 0)
        self.register_buffer("hamiltonian", hamiltonian.to(torch.complex128))
        self.register_buffer("log_partition", torch.logsumexp(-beta * energies, 0))  # log Z_beta
        self.register_buffer("gibbs_state", ((vectors * gibbs) @ vectors.T).to(torch.complex128))
        self.register_buffer("sqrt_gibbs", ((vectors * gibbs.sqrt()) @ vectors.T).to(torch.complex128))
        self.register_buffer("features", kobe_features(n))
        bits = basis_bits(n)
        self.register_buffer("bond_bits", bits[:, :-1] * bits[:, 1:])  # (2^n, n - 1): both ends of bond (q, q+1) are 1
        self.n_energy = self.features.shape[1]
        self.n_layer = 3 * n - 1
        gens = noise.replica_generators([1000 * s + 1 for s in self.seeds])
        init = [torch.cat([ENERGY_INIT_STD * torch.randn(self.n_energy, generator=g, dtype=torch.float64),
                           CIRCUIT_INIT_HALF_WIDTH * (2 * torch.rand(circuit_layers * self.n_layer, generator=g,
                                                                     dtype=torch.float64) - 1)]) for g in gens]
        self.params = nn.Parameter(torch.stack(init))

    # ------------------------------------------------------------------ the model's parts
    def energies(self, psi: Tensor) -> Tensor:
        """E_theta(x) of every basis state: psi (..., P) -> (..., 2^n) float64."""
        return psi[..., : self.n_energy] @ self.features.T

    def log_probs(self, psi: Tensor) -> Tensor:
        """log p_theta(x): psi (..., P) -> (..., 2^n)."""
        return torch.log_softmax(-self.energies(psi), -1)

    def layers(self, psi: Tensor) -> Tensor:
        """Every layer's unitary at once: psi (..., P) -> (..., layers, 2^n, 2^n) complex128."""
        n = self.qubits
        phi = psi[..., self.n_energy:].reshape(*psi.shape[:-1], self.circuit_layers, self.n_layer)
        angles = phi[..., : 2 * n].reshape(*phi.shape[:-1], n, 2)
        phases = math.pi * (phi[..., 2 * n:] @ self.bond_bits.T)  # (..., layers, 2^n): the CZ^c's diagonal
        return (torch.cos(phases) + 1j * torch.sin(phases))[..., :, None] * _kron(_rotations(angles[..., 0], angles[..., 1]))

    def unitary(self, psi: Tensor) -> Tensor:
        """U(phi): psi (..., P) -> (..., 2^n, 2^n) complex128, the first layer applied first."""
        steps = self.layers(psi)
        u = steps[..., 0, :, :]
        for layer in range(1, self.circuit_layers):
            u = steps[..., layer, :, :] @ u
        return u

    def density(self, psi: Tensor) -> Tensor:
        """rho(psi) = U diag(p) U^+: (..., P) -> (..., 2^n, 2^n) complex128."""
        u = self.unitary(psi)
        return (u * self.log_probs(psi).exp()[..., None, :]) @ u.mH

    def modular_hamiltonian(self, psi: Tensor) -> tuple[Tensor, Tensor]:
        """K_psi = U diag(E_theta) U^+ and log Z_theta, so that rho(psi) = exp(-K_psi) / Z_theta:
        psi (..., P) -> ((..., 2^n, 2^n) complex128, (...))."""
        u, energies = self.unitary(psi), self.energies(psi)
        return (u * energies[..., None, :].to(u.dtype)) @ u.mH, torch.logsumexp(-energies, -1)

    def free_energy(self, psi: Tensor, hamiltonian: Tensor, beta: float) -> Tensor:
        """beta tr(rho H) - S(rho) (nats) for any Hermitian `hamiltonian` (2^n, 2^n) or (..., 2^n,
        2^n): psi (..., P) -> (...). With the target's H and beta it is the VQT loss."""
        u, log_p = self.unitary(psi), self.log_probs(psi)
        p = log_p.exp()
        energy = ((u.conj() * (hamiltonian @ u)).sum(-2)).real  # <x|U^+ H U|x>, (..., 2^n)
        return beta * (p * energy).sum(-1) + (p * log_p).sum(-1)

    # ------------------------------------------------------------------ the VQT problem
    def vqt_loss(self, psi: Tensor) -> Tensor:
        """L(psi) = beta tr(rho H) - S(rho) (nats): (..., P) -> (...)."""
        return self.free_energy(psi, self.hamiltonian, self.beta)

    def relative_entropy_to_target(self, psi: Tensor) -> Tensor:
        """D(rho(psi) || sigma_beta) = L(psi) + log Z_beta (nats): (..., P) -> (...)."""
        return self.vqt_loss(psi) + self.log_partition

    def fidelity_to_target(self, psi: Tensor) -> Tensor:
        """F(rho(psi), sigma_beta) = (tr sqrt(sqrt(sigma) rho sqrt(sigma)))^2 in [0, 1]: (..., P) -> (...)."""
        m = self.sqrt_gibbs @ self.density(psi) @ self.sqrt_gibbs
        return torch.linalg.eigvalsh(m).clamp_min(0).sqrt().sum(-1) ** 2

    def relative_entropy(self, psi: Tensor, psi_prime: Tensor) -> Tensor:
        """D(rho_psi || rho_psi') = tr(rho_psi K_psi') - S(rho_psi) + log Z_theta' (nats), by the
        modular Hamiltonian (no matrix logarithm): psi, psi_prime (..., P) -> (...)."""
        modular, log_z = self.modular_hamiltonian(psi_prime)
        return self.free_energy(psi, modular, 1.0) + log_z
