"""Quasi black-box variational inference, diagonal and full covariance (Magris, Shabani & Iosifidis
2022, "Quasi Black-Box Variational Inference with Natural Gradients for Bayesian Learning", arXiv
2205.11568; the diagonal update of the authors' code, mmagris/QBVI VBLab/VB/QBVI/QBVI.m, with its
``useHfunc = 0``). The model's ``covariance`` key chooses q's family (bench/models/glm.py).

q = N(mu, diag(1 / p)) with the prior N(mu_0, diag(1 / p_0)) handled analytically and only the
log-likelihood f(theta) = sum_n log p(y_n | x_n, theta) evaluated at S draws theta_s ~ q: no
gradient of the model. Per step, with the score-function estimate Y = mean_s h_s (f_s - c) of
(grad_mu E_q f, -2 grad_var E_q f), h = (p (theta - mu), p - p^2 (theta - mu)^2), and c the
per-coordinate control variate of the previous step's draws (bench.estimators.score_function),

    g_mu = p_0 (mu_0 - mu) + Y_mu      (the ELBO's gradient in mu; Sigma g_mu is its natural gradient),
    g_p  = (p_0 - p) + Y_p             (the natural gradient in the precision);

at the first step Y is clipped to norm ``estimate_clip_first`` and (g_mu, g_p) to norm
``ng_clip_first``, later (g_mu, g_p) to ``ng_clip`` (the code's GradClipInit, NgClip); the momentum
m <- w m + (1 - w) g (``momentum`` w = 0.4, the code's GradWeight; the first step takes g), and

    p  <- p exp((lr / xi) m_p / p)      (exponential retraction: p stays > 0),
    mu <- mu + lr m_mu / p              (with the updated precision, as in the code).

Full covariance (``covariance: full``, precision matrix P (R, P, P)). [src] the paper treats full
and diagonal Sigma (its abstract; the research notes C7.2), but the authors' code holds only the
diagonal branch and the paper's algorithm box was not retrievable, so this case is derived [mem]
from the Gaussian's exponential-family natural gradient (Khan & Rue's Bayesian learning rule, Gaussian
case): with natural parameters (P mu, -P / 2) and mean parameters (mu, Sigma + mu mu^T), the natural
gradient of the ELBO is its gradient in the mean parameters, which in (mu, P) coordinates is

    g_mu = P_0 (mu_0 - mu) + Y_mu,       Y_mu = mean_s P (theta_s - mu) (f_s - c),
    G    = (P_0 - P) + Y_P,              Y_P  = mean_s (P - P e_s e_s^T P) (f_s - c) = -2 grad_Sigma E_q f,

e_s = theta_s - mu, the score-function estimate of -E_q[Hessian of f] (Stein's lemma) needing no
gradient of f: the entrywise extension of the diagonal code's (g_mu, g_p), whose diagonal it is.
The precision moves on the exponential map of the affine-invariant metric,

    P <- L expm((lr / xi) L^-1 M_P L^-T) L^T,   P = L L^T (Cholesky),   mu <- mu + lr P^-1 m_mu,

the matrix form of the code's p exp((lr / xi) m_p / p) (equal to it for diagonal P and M_P; to first
order in lr it is the learning rule's P + (lr / xi) M_P, which can leave the cone). Positive
definiteness: L invertible and expm of a symmetric matrix positive definite make P positive definite
for any step and direction in exact arithmetic (the result is a Gram matrix (L V e^(tW/2))(...)^T);
in float64 as long as its condition number stays well below 1e16 (tests/test_qbvi_full.py checks it
over 2000 steps at 5x the paper's logistic step size). Control
variates, clipping (on the joint vector (g_mu, vec G)) and momentum are the diagonal case's, per
entry of G.

Departures from the code: plain normal draws (the reference runs use randomised quasi-Monte Carlo,
sampler 's'), a constant step (their decay lr tau / t starts after 10000 steps, beyond their 500),
and the current iterate is evaluated (no best-iterate selection by a smoothed ELBO).

Full batch: f sums over the minibatch it gets, so a claim gives the whole training set
(batch_size = N). The step returns 'batch_elbo' (mean_s f_s minus KL(q || prior), per example: an unbiased
estimate of the ELBO at the parameters it started from) and 'clipped' (1 where the natural
gradient was clipped; its mean over steps is the clip rate).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.score_function import control_variate, gaussian_scores, score_function_gradient
from bench.models.glm import BayesianGLM, cholesky_or_nan
from bench.workloads.method import Method, register


def clip_norm(g: Tensor, max_norm: float) -> tuple[Tensor, Tensor]:
    """g (R, P) scaled per replica to Euclidean norm at most max_norm (> 0; 0 disables), and where it was clipped (R,)."""
    if max_norm <= 0:
        return g, torch.zeros(g.shape[0], dtype=torch.bool, device=g.device)
    norm = g.norm(dim=-1, keepdim=True)
    return g * (max_norm / norm).clamp(max=1.0), norm.squeeze(-1) > max_norm


def exponential_retraction(precision: Tensor, step: float, direction: Tensor) -> Tensor:
    """The precision moved by `step` along the symmetric `direction` on the exponential map of the
    affine-invariant metric: diagonal (R, P): p exp(step d / p) (the authors' code); full (R, P, P):
    L expm(step L^-1 D L^-T) L^T with precision = L L^T, by a symmetric eigendecomposition. Positive
    definite for every step and direction in exact arithmetic; a replica whose result is not
    numerically positive definite (condition number near 1e16, or a non-finite input) gets NaN, so its
    run reads diverged, and nothing raises."""
    if precision.dim() == 2:
        return precision * torch.exp(step * direction / precision)
    chol = cholesky_or_nan(precision)
    inner = torch.linalg.solve_triangular(chol, direction, upper=False)
    inner = torch.linalg.solve_triangular(chol, inner.mT, upper=False)  # L^-1 D L^-T (D symmetric)
    bad = ~torch.isfinite(inner).all(-1).all(-1)
    w, v = torch.linalg.eigh(torch.where(bad[:, None, None], 0.0, 0.5 * (inner + inner.mT)))
    half = chol @ v * torch.exp(0.5 * step * w).unsqueeze(-2)
    moved = half @ half.mT
    bad |= torch.linalg.cholesky_ex(moved).info != 0
    return torch.where(bad[:, None, None], torch.nan, moved)


def precision_solve(precision: Tensor, v: Tensor) -> Tensor:
    """Sigma v = precision^-1 v, v (R, P): elementwise for a diagonal precision (R, P), by Cholesky for
    a full one (NaN for a replica whose precision is not positive definite)."""
    if precision.dim() == 2:
        return v / precision
    return torch.cholesky_solve(v.unsqueeze(-1), cholesky_or_nan(precision)).squeeze(-1)


@register("qbvi", family="bayesian_glm",
          defaults={"lr": 0.1, "samples": 25, "xi": 1.0, "momentum": 0.4, "estimate_clip_first": 10.0,
                    "ng_clip_first": 100.0, "ng_clip": 1000.0})
class QBVI(Method):
    model: BayesianGLM

    def __init__(self, model: BayesianGLM, **hparams):
        super().__init__(model, **hparams)
        self.velocity: Tensor | None = None  # the momentum (R, P + Q): (m_mu, m_P), Q = P^2 full, P diagonal
        self.c = torch.zeros_like(torch.cat([model.mu, model.precision.flatten(1)], -1))  # control variate (R, P + Q)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        mu, p, first = model.mu, model.precision, self.velocity is None
        theta = model.sample(self.samples)
        f = model.log_likelihood(theta, x)  # (R, S)
        score_mu, score_cov = gaussian_scores(theta, mu, p)
        scores = torch.cat([score_mu, -2 * score_cov.flatten(2)], -1)  # -2 d log q / d Sigma = P - P e e^T P
        estimate = score_function_gradient(f, scores, self.c)
        self.c = control_variate(f, scores)
        if first:
            estimate, _ = clip_norm(estimate, self.estimate_clip_first)
        p0 = torch.diag_embed(model.prior_precision) if model.full else model.prior_precision
        prior = torch.cat([model.prior_precision * (model.prior_mean - mu), (p0 - p).flatten(1)], -1)
        g, clipped = clip_norm(prior + estimate, self.ng_clip_first if first else self.ng_clip)
        w = self.momentum
        self.velocity = g if first else w * self.velocity + (1 - w) * g
        elbo = (f.mean(1) - model.kl_to_prior()) / x.shape[1]
        m_mu, m_p = self.velocity.split([mu.shape[1], p[0].numel()], -1)
        p.copy_(exponential_retraction(p, self.lr / self.xi, m_p.view_as(p)))
        mu.add_(precision_solve(p, self.lr * m_mu))
        return {"batch_elbo": elbo, "clipped": clipped.to(elbo.dtype)}
