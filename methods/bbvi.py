"""Black-box variational inference with Euclidean gradients (Ranganath, Gerrish & Blei 2014, "Black
box variational inference", AISTATS; the research notes P7's baseline for QBVI), for a diagonal or a
full-covariance Gaussian q (the model's ``covariance`` key, bench/models/glm.py).

q = N(mu, C C^T) parameterised by (mu, the factor): diagonal, C = diag(sigma) and the factor is
omega = log sigma (R, P); full, C is the lower-triangular Cholesky factor of Sigma and the factor
(R, P, P) holds its strictly lower entries and the log of its diagonal (upper entries 0, never
moved), so C C^T is positive definite for any factor. Per step, S draws theta_s ~ q, the
log-likelihood f(theta_s) (summed over the minibatch: a claim gives the whole training set) and the
score-function estimate of grad E_q f with per-coordinate control variates from the previous step's
draws (bench.estimators.score_function, the same estimator as QBVI's), plus the prior's terms in
closed form (the ELBO = E_q f - KL(q || prior)):

    grad_mu ELBO = P_0 (mu_0 - mu) + mean_s Sigma^-1 (theta_s - mu) (f_s - c),
    grad_C ELBO  = tril(-P_0 C + C^-T) + tril(mean_s 2 (d log q / d Sigma)_s C (f_s - c)),

(d Sigma = dC C^T + C dC^T), and a log-diagonal entry's gradient is C_ii times C_ii's. Diagonal:
grad_omega ELBO = 1 - p_0 sigma^2 + mean_s (p (theta_s - mu)^2 - 1) (f_s - c), p = 1 / sigma^2. Both are
ascended by Adam with step ``lr`` (torch's Adam, elementwise, so replicas never mix). The step
returns 'batch_elbo', the estimate mean_s f_s - KL(q || prior) per example at the parameters it
started from. The full case's chain rule is ours [mem], checked against autograd in tests/test_qbvi_full.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.score_function import control_variate, gaussian_scores, score_function_gradient
from bench.models.glm import BayesianGLM
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register


def scale(factor: Tensor) -> Tensor:
    """C from the factor: sigma = exp(omega) (..., P), or the lower-triangular Cholesky factor
    (..., P, P) with exp of the factor's diagonal on its diagonal."""
    if factor.dim() == 2:
        return factor.exp()
    return factor.tril(-1) + torch.diag_embed(torch.diagonal(factor, dim1=-2, dim2=-1).exp())


def factor_gradient(grad_c: Tensor, c: Tensor) -> Tensor:
    """d/d factor from d/dC, C (R, P) or (R, P, P) and d/dC of C's shape or with a draws axis after
    the replicas': the lower triangle, its diagonal times C's (d C_ii / d log C_ii = C_ii)."""
    full = c.dim() == 3
    if grad_c.dim() > c.dim():
        c = c.unsqueeze(1)
    if not full:
        return grad_c * c
    diagonal = torch.diagonal(c, dim1=-2, dim2=-1)
    return grad_c.tril(-1) + torch.diag_embed(torch.diagonal(grad_c, dim1=-2, dim2=-1) * diagonal)


@register("bbvi", family="bayesian_glm", defaults={"lr": 0.01, "samples": 25})
class BBVI(Method):
    model: BayesianGLM

    def __init__(self, model: BayesianGLM, **hparams):
        super().__init__(model, **hparams)
        if model.full:
            c = torch.linalg.cholesky(model.covariance())
            factor = c.tril(-1) + torch.diag_embed(torch.diagonal(c, dim1=-2, dim2=-1).log())
        else:
            factor = -0.5 * model.precision.detach().log()  # omega
        self.factor = factor.clone()  # (R, P) or (R, P, P)
        self.opt = make_optimizer([model.mu, self.factor], "adam", self.lr)
        self.c = torch.zeros_like(torch.cat([model.mu, self.factor.flatten(1)], -1))  # control variate

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        mu, c = model.mu, scale(self.factor)
        theta = model.sample(self.samples)
        f = model.log_likelihood(theta, x)  # (R, S)
        score_mu, score_cov = gaussian_scores(theta, mu, model.precision)
        grad_c = 2 * (score_cov @ c.unsqueeze(1) if model.full else score_cov * c.unsqueeze(1))
        scores = torch.cat([score_mu, factor_gradient(grad_c, c).flatten(2)], -1)
        grad = score_function_gradient(f, scores, self.c)
        self.c = control_variate(f, scores)
        grad_mu, grad_factor = grad.split([mu.shape[1], c[0].numel()], -1)
        p0 = model.prior_precision
        diagonal = torch.diagonal(c, dim1=-2, dim2=-1) if model.full else c
        prior_c = -p0.unsqueeze(-1) * c + torch.diag_embed(1 / diagonal) if model.full else -p0 * c + 1 / c
        elbo = (f.mean(1) - model.kl_to_prior()) / x.shape[1]
        mu.grad = -(p0 * (model.prior_mean - mu) + grad_mu)
        self.factor.grad = -(factor_gradient(prior_c, c) + grad_factor.view_as(c))
        self.opt.step()
        c = scale(self.factor)
        model.precision.copy_(torch.cholesky_inverse(c) if model.full else c.square().reciprocal())
        return {"batch_elbo": elbo}
