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

A sweep over inverse temperatures (model config ``betas``, ``steps_per_beta``, ``warm_start``,
``target_tolerance``; instead of ``beta``): the target is betas[k] for outer steps k * steps_per_beta
... (k + 1) * steps_per_beta - 1, each method calling ``advance`` before its step; a warm start keeps psi
when the target switches, a cold one returns it to the seed's initialisation (Sbahi et al. 2022,
Sec. 5: learning a sequence of states from the previous solution; google/qhbm-library
baselines/qhbm config: beta 0.5 to 2.25 in 4 steps).

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
    refer to), or at each of `betas` in turn, `steps_per_beta` outer steps each (``advance``).
    Raises ValueError for fewer than 2 qubits, no layer, a non-positive beta, both or neither of
    beta and betas, or a sweep of fewer than 2 betas or without steps_per_beta >= 1."""

    def __init__(self, qubits: int, circuit_layers: int, field: float, seeds: list[int], beta: float | None = None,
                 betas: list[float] | None = None, steps_per_beta: int | None = None, warm_start: bool = True,
                 target_tolerance: float = 1e-2):
        super().__init__()
        sweep = (beta,) if betas is None else tuple(float(b) for b in betas)
        if (beta is None) == (betas is None) or (betas is not None and (len(sweep) < 2 or steps_per_beta is None
                                                                         or steps_per_beta < 1)):
            raise ValueError("a QHBM needs either beta or betas (at least 2, with steps_per_beta >= 1); "
                             f"got beta {beta}, betas {betas}, steps_per_beta {steps_per_beta}")
        if circuit_layers < 1 or min(sweep) <= 0:
            raise ValueError(f"a QHBM needs circuit_layers >= 1 and beta > 0; got {circuit_layers} and {sweep}")
        self.qubits, self.circuit_layers, self.field, self.seeds = qubits, circuit_layers, field, list(seeds)
        self.betas, self.steps_per_beta, self.warm_start = sweep, steps_per_beta, warm_start
        self.target_tolerance = target_tolerance
        n = qubits
        self.register_buffer("hamiltonian", tfim_hamiltonian(n, field).to(torch.complex128))
        self.register_buffer("features", kobe_features(n))
        bits = basis_bits(n)
        self.register_buffer("bond_bits", bits[:, :-1] * bits[:, 1:])  # (2^n, n - 1): both ends of bond (q, q+1) are 1
        self.n_energy = self.features.shape[1]
        self.n_layer = 3 * n - 1
        self.params = nn.Parameter(self.initial_params())
        self.steps_taken, self.stage = 0, 0
        # sweep bookkeeping, per stage and replica: steps before D <= target_tolerance (the budget if never)
        self.register_buffer("steps_to_target", torch.full((len(sweep), len(self.seeds)), float(steps_per_beta or 0),
                                                           dtype=torch.float64))
        self._set_target(sweep[0])

    def initial_params(self) -> Tensor:
        """Each replica's initial psi from its own seed's generator: (R, P) float64, theta ~ N(0, 0.1^2),
        phi ~ U(-0.25, 0.25); the same draw on every call."""
        gens = noise.replica_generators([1000 * s + 1 for s in self.seeds])
        return torch.stack([torch.cat([
            ENERGY_INIT_STD * torch.randn(self.n_energy, generator=g, dtype=torch.float64),
            CIRCUIT_INIT_HALF_WIDTH * (2 * torch.rand(self.circuit_layers * self.n_layer, generator=g,
                                                      dtype=torch.float64) - 1)]) for g in gens])

    def _set_target(self, beta: float) -> None:
        """The target Gibbs state sigma_beta (log Z_beta, sigma, sqrt(sigma)) by exact diagonalisation."""
        energies, vectors = torch.linalg.eigh(self.hamiltonian)
        gibbs = torch.softmax(-beta * energies, 0)
        self.beta = beta
        self.register_buffer("log_partition", torch.logsumexp(-beta * energies, 0))  # log Z_beta
        self.register_buffer("gibbs_state", (vectors * gibbs) @ vectors.mH)
        self.register_buffer("sqrt_gibbs", (vectors * gibbs.sqrt()) @ vectors.mH)

    # ------------------------------------------------------------------ the beta sweep
    def advance(self) -> bool:
        """Called by a method at the start of each outer step. In a sweep (``betas``), the target is
        betas[k] for steps k * steps_per_beta ... (k + 1) * steps_per_beta - 1 (the last beta for
        any later step); at a boundary the target switches and, without ``warm_start``, psi returns
        to initial_params() (the seed's random initialisation, the cold start). Records, per stage
        and replica, the steps taken in the stage before D(rho || sigma_beta) <= target_tolerance
        (D read before each step; the stage's budget if never). Returns True when the target
        switched: the method must then reset any optimiser state it keeps (Sbahi et al. 2022, Sec.
        5; google/qhbm-library: init_steps for the first beta, num_steps for each next one, warm)."""
        step, self.steps_taken = self.steps_taken, self.steps_taken + 1
        if len(self.betas) == 1:
            return False
        stage = min(step // self.steps_per_beta, len(self.betas) - 1)
        switched = stage != self.stage
        if switched:
            self.stage = stage
            self._set_target(self.betas[stage])
            if not self.warm_start:
                with torch.no_grad():
                    self.params.copy_(self.initial_params().to(self.params))
        with torch.no_grad():
            unreached = self.relative_entropy_to_target(self.params) > self.target_tolerance
            within = step - stage * self.steps_per_beta
            pending = (self.steps_to_target[stage] == self.steps_per_beta) & (within < self.steps_per_beta)
            self.steps_to_target[stage] = torch.where(pending & ~unreached, float(within), self.steps_to_target[stage])
        return switched

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
