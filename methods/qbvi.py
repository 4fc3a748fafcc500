"""Quasi black-box variational inference, diagonal case (Magris, Shabani & Iosifidis 2022, "Quasi
Black-Box Variational Inference with Natural Gradients for Bayesian Learning", arXiv 2205.11568;
the update of the authors' code, mmagris/QBVI VBLab/VB/QBVI/QBVI.m, with its ``useHfunc = 0``).

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
from bench.models.glm import BayesianGLM
from bench.workloads.method import Method, register


def clip_norm(g: Tensor, max_norm: float) -> tuple[Tensor, Tensor]:
    """g (R, P) scaled per replica to Euclidean norm at most max_norm (> 0; 0 disables), and where it was clipped (R,)."""
    if max_norm <= 0:
        return g, torch.zeros(g.shape[0], dtype=torch.bool, device=g.device)
    norm = g.norm(dim=-1, keepdim=True)
    return g * (max_norm / norm).clamp(max=1.0), norm.squeeze(-1) > max_norm


@register("qbvi", family="bayesian_glm",
          defaults={"lr": 0.1, "samples": 25, "xi": 1.0, "momentum": 0.4, "estimate_clip_first": 10.0,
                    "ng_clip_first": 100.0, "ng_clip": 1000.0})
class QBVI(Method):
    model: BayesianGLM

    def __init__(self, model: BayesianGLM, **hparams):
        super().__init__(model, **hparams)
        self.velocity: Tensor | None = None  # the momentum (R, 2P): (m_mu, m_p)
        self.c = torch.zeros_like(torch.cat([model.mu, model.mu], -1))  # control variate (R, 2P)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        mu, p, first = model.mu, model.precision, self.velocity is None
        theta = model.sample(self.samples)
        f = model.log_likelihood(theta, x)  # (R, S)
        score_mu, score_var = gaussian_scores(theta, mu, p)
        scores = torch.cat([score_mu, -2 * score_var], -1)  # -2 d log q / d var = p - p^2 (theta - mu)^2
        estimate = score_function_gradient(f, scores, self.c)
        self.c = control_variate(f, scores)
        if first:
            estimate, _ = clip_norm(estimate, self.estimate_clip_first)
        prior = torch.cat([model.prior_precision * (model.prior_mean - mu), model.prior_precision - p], -1)
        g, clipped = clip_norm(prior + estimate, self.ng_clip_first if first else self.ng_clip)
        w = self.momentum
        self.velocity = g if first else w * self.velocity + (1 - w) * g
        elbo = (f.mean(1) - model.kl_to_prior()) / x.shape[1]
        m_mu, m_p = self.velocity.split(mu.shape[1], -1)
        p.mul_(torch.exp(self.lr / self.xi * m_p / p))
        mu.add_(self.lr * m_mu / p)
        return {"batch_elbo": elbo, "clipped": clipped.to(elbo.dtype)}
