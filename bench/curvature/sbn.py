"""Exact per-unit Fisher blocks of sigmoid-belief-network layers and the damped natural gradient.

An SBN layer p(y | x) = prod_i Bernoulli(y_i | s_i), s_i = sigmoid(w_i . x + b_i), has score
(y_i - s_i) x~ for unit i's parameters, with x~ = [x; 1] (bias LAST). Units are independent given x,
so the Fisher is block-diagonal with one (in+1) x (in+1) block per unit:

    F_i = (1/N) sum_n c_ni x~_n x~_n^T,   c_ni = s_ni (1 - s_ni),

estimated on N parent samples. For a whole Helmholtz machine the Fisher of the joint p(x, h) is
block-diagonal across layers too, each block taken over the parent's marginal (Varady et al.).
Natural reweighted wake-sleep (Varady et al. 2020/2022; rist-ro/argo) replaces each unit's gradient
g_i = [grad_w_i; grad_b_i] by

    P(g_i) = (1 + a) (F_i + a I)^{-1} g_i,   a = damping,

where the (1 + a) factor makes P(g) -> g as a -> infinity. s is clamped to [clip, 1 - clip] before
forming c, so that saturated units do not make the blocks singular beyond what a damps.

`LayerFisher` and `PriorFisher` hold the blocks of one layer; `HelmholtzFisher` those of a whole
Helmholtz machine, fitted on the samples the NRWS authors use and refreshed every few updates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.models.helmholtz import HelmholtzMachine, State
from bench.nn.bernoulli import SBNLayer

_F64_BYTES = 8
_CPU_MAX_BYTES = 2**22  # 4 MiB
_CUDA_MAX_BYTES = 2**30  # 1 GiB


def _variance(probs: Tensor, clip: float) -> Tensor:
    """s (1 - s) in float64 with s clamped, the Bernoulli variance that weights every Fisher row."""
    s = probs.double().clamp(clip, 1.0 - clip)
    return s * (1.0 - s)


def _augment(inputs: Tensor) -> Tensor:
    """(R, N, in) -> (R, N, in+1) float64 with a trailing column of ones (the bias input)."""
    x = inputs.double()
    return torch.cat([x, x.new_ones(x.shape[:-1] + (1,))], dim=-1)


def _blocks(xt: Tensor, c: Tensor) -> Tensor:
    """sum_n c_ni x~_n x~_n^T for xt (R, N, d) and weights c (R, N, k): (R, k, d, d).

    The k weighted copies of X~^T are stacked into one (k*d, N) matrix so that a single GEMM
    per replica forms all k blocks."""
    r, n, d = xt.shape
    k = c.shape[-1]
    weighted = xt.transpose(1, 2).unsqueeze(1) * c.transpose(1, 2).unsqueeze(2)  # (R, k, d, N)
    return torch.bmm(weighted.reshape(r, k * d, n), xt).view(r, k, d, d)


def fisher_blocks(inputs: Tensor, probs: Tensor, clip: float = 1e-6) -> Tensor:
    """Fisher blocks F_i of every unit, (R, out, in+1, in+1) float64, from parent samples
    inputs (R, N, in) and unit probabilities probs (R, N, out). Dense: for tests and small layers."""
    n = inputs.shape[1]
    return _blocks(_augment(inputs), _variance(probs, clip) / n)


def solver_costs(n_samples: int, fan_in: int, n_out: int, reuse: int = 1) -> dict[str, float]:
    """Multiply-add counts per application of the two exact solvers for one replica of a layer
    (d = fan_in + 1), when one factorization serves `reuse` applications (NRWS's `fisher_every`).

    cholesky: per unit, form F_i (N d^2) and factor it (d^3 / 3) once; each application is two
      triangular solves (2 d^2).
    woodbury: (F_i + aI)^{-1} g = (g - U (aI_N + U^T U)^{-1} U^T g) / a with U = X~^T diag(sqrt(c_i/N));
      U^T U = diag(.) G diag(.) where the Gram G = X~ X~^T (N^2 d) is shared by all units; per unit,
      scale G (N^2) and factor (N^3 / 3) once; each application is two triangular solves (2 N^2)
      plus U^T g and U z (2 N d).
    With reuse > 1 the application cost matters more, and it favours the smaller factors.
    """
    n, d = n_samples, fan_in + 1
    fit = {"cholesky": n_out * (n * d**2 + d**3 / 3), "woodbury": n**2 * d + n_out * (n**3 / 3 + n**2)}
    apply = {"cholesky": n_out * 2 * d**2, "woodbury": n_out * (2 * n**2 + 2 * n * d)}
    return {k: fit[k] / reuse + apply[k] for k in fit}


def choose_solver(n_samples: int, fan_in: int, n_out: int = 1, reuse: int = 1) -> str:
    """The cheaper solver by `solver_costs`. Per unit and fit the two are N d^2 + d^3/3 against
    N^3/3 + O(N^2 + N d), so Woodbury wins roughly when N < d = fan_in + 1 (the authors' rule)."""
    costs = solver_costs(n_samples, fan_in, n_out, reuse)
    return min(costs, key=costs.get)


def _units_per_chunk(solver: str, replicas: int, n: int, d: int, max_bytes: int) -> int:
    """Units factored at once so that the float64 work arrays stay under max_bytes: per unit,
    cholesky holds the weighted X~^T (N d), the block and its factor (2 d^2); woodbury holds the
    scaled Gram and its factor (2 N^2). Shared arrays (X~, the Gram, gradients) are not counted."""
    per_unit = 2 * d * d + n * d if solver == "cholesky" else 2 * n * n
    return max(1, max_bytes // (_F64_BYTES * replicas * per_unit))


def default_max_bytes(device: torch.device | str) -> int:
    """Chunk budget used when max_bytes is None: 4 MiB on a CPU, 1 GiB on CUDA.

    On a CPU cache-sized chunks were measured 1.7-3.5x faster than 256 MiB chunks on MNIST-sized
    layers. On a GPU big batched kernels amortise launches, so the budget only guards memory; the
    1 GiB value is a guess that has not been measured here (no GPU was available)."""
    return _CUDA_MAX_BYTES if torch.device(device).type == "cuda" else _CPU_MAX_BYTES


def _resolve_solver(solver: str, n: int, fan_in: int, n_out: int, reuse: int) -> str:
    if solver == "auto":
        return choose_solver(n, fan_in, n_out, reuse)
    if solver not in ("cholesky", "woodbury"):
        raise ValueError(f"unknown solver {solver!r}; use 'cholesky', 'woodbury' or 'auto'")
    return solver


def _cholesky_factor(blocks: Tensor, damping: float) -> Tensor:
    """Lower Cholesky factor of blocks + aI; `blocks` is a fresh work array and is overwritten."""
    blocks.diagonal(dim1=-2, dim2=-1).add_(damping)
    return torch.linalg.cholesky(blocks)


def _woodbury_factor(gram: Tensor, s: Tensor, damping: float) -> Tensor:
    """Lower Cholesky factor of aI + S_i G S_i for scalings s (R, k, N): (R, k, N, N)."""
    m = s.unsqueeze(-1) * gram.unsqueeze(1)
    m.mul_(s.unsqueeze(-2))
    return _cholesky_factor(m, damping)


class LayerFisher:
    """The factorized damped Fisher blocks of one SBN layer (all replicas and units), estimated on
    the given parent samples; apply() reuses them for any later gradient of that layer.

    Natural RWS (Varady et al.; rist-ro/argo, NaturalReweightedWakeSleepOptimizerAlternate) refreshes
    the Fisher every k_step_update steps only; fitting is the O(out N^3) or O(out (N d^2 + d^3)) part,
    so fit() at refresh time and apply() every step:

        fisher = LayerFisher.fit(parents, probs, damping)   # refresh
        nat_w, nat_b = fisher.apply(grad_w, grad_b)         # any step until the next refresh

    fit() copies what it needs (it never aliases `inputs` or `probs`), so later in-place updates of
    the samples or the parameters do not change the cached Fisher; apply() reads the factors only.

    Stored, all float64 (d = in + 1; see `nbytes`):
      cholesky: the lower Cholesky factors of F_i + aI, R * out * d^2 values;
                apply = two triangular solves per unit, O(out d^2).
      woodbury: X~ (R, N, d), the per-unit scalings s_i = sqrt(c_i / N) (R, out, N) and the lower
                Cholesky factors of aI + S_i G S_i (G = X~ X~^T), R * out * N^2 values; apply = X~ g_i
                for all units in one bmm, two triangular solves per unit, U z in one bmm,
                O(out (N d + N^2)) instead of the O(out N^3) of a fit.

    Memory held per replica, authors' MNIST bottom generative layer (in=200, out=784, d=201):
      N=160:  'auto' -> woodbury: factors 784 * 160^2 * 8 B = 160.6 MB, plus X~ 0.26 MB and scalings
              1.0 MB: 161.8 MB (154.3 MiB). Cholesky would hold 784 * 201^2 * 8 B = 253.4 MB.
      N=1000: 'auto' -> cholesky: 253.4 MB (241.7 MiB), independent of N. Woodbury would hold
              784 * 1000^2 * 8 B = 6.27 GB plus 7.9 MB; do not force it there.
    Woodbury holds less iff N < d. 'auto' minimises time, not memory; the two agree here but not
    always: in=100, out=200, N=160 picks woodbury (41 MB) over cholesky (16.3 MB).
    Transient work arrays during fit() are bounded by max_bytes per chunk on top of that.

    On a 2-core CPU (torch 2.13, R=1, float32 gradients) for that layer at N=160 (woodbury), fit took
    105-165 ms and apply 18-30 ms; for in=100, out=200, N=160 forced to cholesky, 26-31 ms and
    2-3.5 ms. A woodbury apply is memory-bound: it reads the 154 MiB of factors twice (~13 ms for
    one batched mat-vec over them). The factors stay in per-chunk tensors because a per-chunk
    cholesky_solve was 5x faster there than one cholesky_solve over all 784 units (which copies the
    whole batch), and 1.2x faster than two solve_triangular calls.
    """

    def __init__(self, solver: str, damping: float, shape: tuple[int, int, int], units: list[slice],
                 factors: list[Tensor], xt: Tensor | None = None, scale: Tensor | None = None) -> None:
        self.solver = solver
        self.damping = float(damping)
        self.shape = shape  # (R, out, in): the gradient shape apply() accepts
        self._units = units
        self._factors = factors
        self._xt = xt
        self._scale = scale

    @classmethod
    @torch.no_grad()
    def fit(cls, inputs: Tensor, probs: Tensor, damping: float, solver: str = "auto", clip: float = 1e-6,
            max_bytes: int | None = None, reuse: int = 1) -> "LayerFisher":
        """Factor (F_i + aI) for every unit, F_i estimated on inputs (R, N, in) (unweighted rows) with
        the units' sigmoid probs (R, N, out) at those inputs, s clamped to [clip, 1 - clip].

        solver: 'cholesky' forms and factors every (in+1)^2 block; 'woodbury' factors an N x N
        system per unit instead, sharing the Gram X~ X~^T across units; 'auto' takes the cheaper by
        `solver_costs` for `reuse` applications per fit. Both are exact. Units are factored in chunks so that the float64 work
        arrays stay under about max_bytes (None: `default_max_bytes(inputs.device)`, 4 MiB on a
        CPU, 1 GiB on CUDA); the factors kept are not bounded by it (see the class docstring)."""
        if damping <= 0:
            raise ValueError(f"damping must be > 0 (F_i is singular when N < in+1); got {damping}")
        if inputs.dim() != 3 or probs.dim() != 3 or probs.shape[:2] != inputs.shape[:2]:
            raise ValueError(f"need inputs (R, N, in) and probs (R, N, out); got {tuple(inputs.shape)}"
                             f" and {tuple(probs.shape)}")
        r, n, fan_in = inputs.shape
        n_out = probs.shape[-1]
        solver = _resolve_solver(solver, n, fan_in, n_out, reuse)
        if max_bytes is None:
            max_bytes = default_max_bytes(inputs.device)

        xt = _augment(inputs)
        c = _variance(probs, clip) / n  # (R, N, out), carries the 1/N of the estimate
        chunk = _units_per_chunk(solver, r, n, fan_in + 1, max_bytes)
        units = [slice(start, min(start + chunk, n_out)) for start in range(0, n_out, chunk)]
        shape = (r, n_out, fan_in)
        if solver == "cholesky":
            factors = [_cholesky_factor(_blocks(xt, c[..., u]), damping) for u in units]
            return cls(solver, damping, shape, units, factors)
        gram = torch.bmm(xt, xt.transpose(1, 2))
        scale = c.sqrt().transpose(1, 2).contiguous()  # s_i = sqrt(c_i / N): (R, out, N)
        factors = [_woodbury_factor(gram, scale[:, u], damping) for u in units]
        return cls(solver, damping, shape, units, factors, xt, scale)

    @property
    def device(self) -> torch.device:
        return self._factors[0].device

    @property
    def nbytes(self) -> int:
        """Bytes held: the factors, plus X~ and the scalings for woodbury."""
        held = self._factors + [t for t in (self._xt, self._scale) if t is not None]
        return sum(t.numel() * t.element_size() for t in held)

    @torch.no_grad()
    def apply(self, grad_w: Tensor, grad_b: Tensor) -> tuple[Tensor, Tensor]:
        """P(g_i) = (1 + a)(F_i + aI)^{-1} g_i with the fitted F_i, for grad_w (R, out, in) and grad_b
        (R, out). Solved in float64; returns (nat_w, nat_b) with the gradients' dtype and device."""
        r, n_out, fan_in = self.shape
        if tuple(grad_w.shape) != self.shape or tuple(grad_b.shape) != (r, n_out):
            raise ValueError(f"fitted for gradients {self.shape} and {(r, n_out)}; got "
                             f"{tuple(grad_w.shape)} and {tuple(grad_b.shape)}")
        f64 = dict(device=self.device, dtype=torch.float64)
        g = torch.cat([grad_w.to(**f64), grad_b.to(**f64).unsqueeze(-1)], dim=-1)  # (R, out, d)
        a = self.damping
        if self.solver == "cholesky":
            out = torch.cat([torch.cholesky_solve(g[:, u].unsqueeze(-1), f).squeeze(-1)
                             for u, f in zip(self._units, self._factors)], dim=1)
            out.mul_(1.0 + a)
        else:
            # (F_i + aI)^{-1} g = (g - U_i (aI + U_i^T U_i)^{-1} U_i^T g) / a, U_i = X~^T S_i.
            rhs = torch.bmm(g, self._xt.transpose(1, 2)).mul_(self._scale)  # U_i^T g_i: (R, out, N)
            z = torch.cat([torch.cholesky_solve(rhs[:, u].unsqueeze(-1), f).squeeze(-1)
                           for u, f in zip(self._units, self._factors)], dim=1)
            out = torch.sub(g, torch.bmm(z.mul_(self._scale), self._xt)).mul_((1.0 + a) / a)
        return out[..., :-1].to(grad_w), out[..., -1].to(grad_b)


@torch.no_grad()
def precondition_layer(
    grad_w: Tensor,
    grad_b: Tensor,
    inputs: Tensor,
    probs: Tensor,
    damping: float,
    solver: str = "auto",
    clip: float = 1e-6,
    max_bytes: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Damped natural gradient P(g_i) = (1 + a)(F_i + aI)^{-1} g_i of every unit of an SBN layer,
    one-shot: `LayerFisher.fit(inputs, probs, damping, solver, clip, max_bytes).apply(grad_w, grad_b)`.

    grad_w (R, out, in), grad_b (R, out): the layer's gradient; inputs (R, N, in): parent samples
    the Fisher is estimated on (unweighted rows); probs (R, N, out): the units' sigmoid at those
    inputs. Returns (nat_w, nat_b) with the shapes and dtype of the gradients; all replicas and
    units are batched and solved in float64 (the blocks are ill-conditioned for small damping).
    To reuse the Fisher over several steps, keep the LayerFisher instead (see its docstring)."""
    return LayerFisher.fit(inputs, probs, damping, solver, clip, max_bytes).apply(grad_w, grad_b)


class PriorFisher:
    """The damped Fisher of the factorial top prior with logits `bias` (R, n): exactly diagonal,
    c = s(1 - s), so P(g) = g (1 + a) / (a + c). fit() at refresh time stores the (R, n) float64
    scale (1 + a) / (a + c) (a copy: later in-place updates of the bias do not change it);
    apply() multiplies any later gradient by it."""

    def __init__(self, scale: Tensor, damping: float) -> None:
        self._scale = scale
        self.damping = float(damping)

    @classmethod
    @torch.no_grad()
    def fit(cls, bias: Tensor, damping: float, clip: float = 1e-6) -> "PriorFisher":
        if damping < 0:
            raise ValueError(f"damping must be >= 0; got {damping}")
        c = _variance(torch.sigmoid(bias.double()), clip)
        return cls((1.0 + damping) / (damping + c), damping)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._scale.shape)

    @torch.no_grad()
    def apply(self, grad_b: Tensor) -> Tensor:
        """P(g) for grad_b of the fitted shape; same dtype and device as grad_b."""
        if tuple(grad_b.shape) != self.shape:
            raise ValueError(f"fitted for gradients {self.shape}; got {tuple(grad_b.shape)}")
        g = grad_b.to(device=self._scale.device, dtype=torch.float64)
        return (g * self._scale).to(grad_b)


@torch.no_grad()
def precondition_prior(grad_b: Tensor, bias: Tensor, damping: float, clip: float = 1e-6) -> Tensor:
    """Damped natural gradient of the factorial top prior, one-shot:
    `PriorFisher.fit(bias, damping, clip).apply(grad_b)`. Same shape and dtype as grad_b."""
    return PriorFisher.fit(bias, damping, clip).apply(grad_b)


MAX_DAMPING = 10.0  # above this damping the NRWS authors' code uses the raw gradient


class HelmholtzFisher:
    """The damped natural gradient of every layer of a Helmholtz machine, the preconditioner of
    natural reweighted wake-sleep and of the natural BiHM (Varady, Volpi, Malago & Ay, arXiv
    2008.06687; authors' code rist-ro/argo, NaturalReweightedWakeSleepOptimizerAlternate /
    NaturalBidirectionalOptimizer). The Fisher of the joint p(x, h) (and of q(h | x)) is exactly
    block-diagonal over layers and units, so each layer's gradient is preconditioned by its own
    `LayerFisher` and the top prior's by its `PriorFisher`. Which samples estimate which block
    follows the authors' code:

    * generative layers and the top prior: the model's own ancestral samples, K x B fresh dreams
      (one `model.sample_p` call per fit, the only random draw here);
    * recognition layers: the wake samples h ~ q(h | x) of the update being preconditioned; the
      bottom layer on the B distinct examples rather than their K copies (the same matrix, a K
      times smaller Woodbury system);
    * unweighted rows, no running average; refit every `fisher_every` updates (the code's
      `k_step_update`; 0 = every update) and reused in between;
    * above damping MAX_DAMPING the gradients are left alone (and nothing is fitted).

        fisher = HelmholtzFisher(model, k, damping, fisher_every, clip)
        ...backward()...
        fisher.precondition(wake_state, update)   # refit if due, then swap every gradient in place
        optimizer.step()
    """

    def __init__(self, model: HelmholtzMachine, k: int, damping: float, fisher_every: int, clip: float) -> None:
        self.model = model
        self.k = k
        self.damping = float(damping)
        self.fisher_every = fisher_every
        self.clip = clip
        self.generative: list[LayerFisher] = []
        self.recognition: list[LayerFisher] = []
        self.prior: PriorFisher | None = None
        self.fitted_at = -1  # the update the blocks were fitted at

    def due(self, update: int) -> bool:
        """Whether the blocks must be (re)fitted before preconditioning update number `update`
        (counted from 0): never fitted yet, or a multiple of `fisher_every` not yet fitted at."""
        return self.prior is None or (self.fitted_at != update and update % max(self.fisher_every, 1) == 0)

    @torch.no_grad()
    def fit(self, state: State, update: int) -> None:
        """Fit every block: p's on K x B new dreams, q's on the wake state [x tiled K times, h1..hL]
        (each (R, K*B, n_i), sample-major, as `HelmholtzMachine.sample_q` returns it)."""
        m, b = self.model, state[0].shape[1] // self.k
        dreams = m.sample_p(self.k * b)
        self.generative = [self._layer(layer, dreams[i + 1]) for i, layer in enumerate(m.generative)]
        self.recognition = [self._layer(layer, state[i][:, :b] if i == 0 else state[i])
                            for i, layer in enumerate(m.recognition)]
        self.prior = PriorFisher.fit(m.prior.bias, self.damping, clip=self.clip)
        self.fitted_at = update

    def _layer(self, layer: SBNLayer, parents: Tensor) -> LayerFisher:
        return LayerFisher.fit(parents, torch.sigmoid(layer.logits(parents)), self.damping, clip=self.clip,
                               reuse=max(self.fisher_every, 1))

    @torch.no_grad()
    def apply(self) -> None:
        """Replace every parameter's gradient in place by its damped natural gradient with the fitted
        blocks; a layer without a gradient (e.g. p's in a sleep-only update) is skipped."""
        if self.prior is None:
            raise RuntimeError("HelmholtzFisher.apply() before fit()")
        m = self.model
        for layer, fisher in zip([*m.generative, *m.recognition], [*self.generative, *self.recognition]):
            if layer.weight.grad is not None:
                nat_w, nat_b = fisher.apply(layer.weight.grad, layer.bias.grad)
                layer.weight.grad.copy_(nat_w)
                layer.bias.grad.copy_(nat_b)
        if m.prior.bias.grad is not None:
            m.prior.bias.grad.copy_(self.prior.apply(m.prior.bias.grad))

    def precondition(self, state: State, update: int) -> None:
        """The whole preconditioning step of update number `update` (from 0), whose wake state is
        `state`: nothing above MAX_DAMPING; else refit if `due`, then `apply`."""
        if self.damping > MAX_DAMPING:
            return
        if self.due(update):
            self.fit(state, update)
        self.apply()
