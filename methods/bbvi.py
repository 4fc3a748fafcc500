"""Black-box variational inference with Euclidean gradients (Ranganath, Gerrish & Blei 2014, "Black
box variational inference", AISTATS; the research notes P7's baseline for QBVI).

q = N(mu, diag(sigma^2)) parameterised by (mu, omega = log sigma). Per step, S draws theta_s ~ q,
the log-likelihood f(theta_s) (summed over the minibatch: a claim gives the whole training set) and
the score-function estimate of grad E_q f with per-coordinate control variates from the previous
step's draws (bench.estimators.score_function, the same estimator as QBVI's), plus the prior's terms in closed
form (the ELBO = E_q f - KL(q || prior)):

    grad_mu ELBO    = p_0 (mu_0 - mu) + mean_s p (theta_s - mu) (f_s - c),
    grad_omega ELBO = 1 - p_0 sigma^2 + mean_s (p (theta_s - mu)^2 - 1) (f_s - c),   p = 1 / sigma^2,

ascended by Adam with step ``lr`` (torch's Adam, elementwise, so replicas never mix). The step
returns 'batch_elbo', the estimate mean_s f_s - KL(q || prior) per example at the parameters it started
from.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.estimators.score_function import control_variate, gaussian_scores, score_function_gradient
from bench.models.glm import BayesianGLM
from bench.nn.optim import make_optimizer
from bench.workloads.method import Method, register


@register("bbvi", family="bayesian_glm", defaults={"lr": 0.01, "samples": 25})
class BBVI(Method):
    model: BayesianGLM

    def __init__(self, model: BayesianGLM, **hparams):
        super().__init__(model, **hparams)
        self.log_sd = (-0.5 * model.precision.detach().log()).clone()  # omega (R, P)
        self.opt = make_optimizer([model.mu, self.log_sd], "adam", self.lr)
        self.c = torch.zeros_like(torch.cat([model.mu, model.mu], -1))  # control variate (R, 2P)

    @torch.no_grad()
    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        model = self.model
        mu, p = model.mu, model.precision
        theta = model.sample(self.samples)
        f = model.log_likelihood(theta, x)  # (R, S)
        score_mu, score_var = gaussian_scores(theta, mu, p)
        score_omega = 2 * score_var / p.unsqueeze(1)  # d log q / d omega = 2 sigma^2 d log q / d sigma^2
        scores = torch.cat([score_mu, score_omega], -1)
        grad = score_function_gradient(f, scores, self.c)
        self.c = control_variate(f, scores)
        grad_mu, grad_omega = grad.split(mu.shape[1], -1)
        elbo = (f.mean(1) - model.kl_to_prior()) / x.shape[1]
        mu.grad = -(model.prior_precision * (model.prior_mean - mu) + grad_mu)
        self.log_sd.grad = -(1 - model.prior_precision / p + grad_omega)
        self.opt.step()
        p.copy_(torch.exp(-2 * self.log_sd))
        return {"batch_elbo": elbo}
