"""Keskar et al.'s sharpness of a minimizer (Keskar, Mudigere, Nocedal, Smelyanskiy & Tang, "On
Large-Batch Training for Deep Learning: Generalization Gap and Sharp Minima", ICLR 2017, arXiv
1609.04836, Sec. 2.2.2, eq. 3 and 4). Their 1-D parametric plot between two minimizers (Sec. 2.2.1,
Figure 3) is bench/engine/interpolation.py.

Sharpness of f at x (A = I, the full space), in percent of 1 + f(x):

    phi_{x,f}(eps) = 100 (max_{y in C_eps} f(x + y) - f(x)) / (1 + f(x)),
    C_eps = {y : |y_i| <= eps (|x_i| + 1)},

the box growing with each coordinate's magnitude. The maximum is approximated, as in the paper, by
L-BFGS-B (scipy) started at y = 0 with a bounded number of iterations (Keskar et al. use 10): the
result is a lower bound of the true maximum, and never below f(x) (L-BFGS-B's iterates never
increase its objective -f). The objective and its gradient are evaluated in float64 by autograd.
The paper's random-subspace variant (A of n x p, p = 100) is not implemented.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from torch import Tensor

MAXITER = 10  # L-BFGS-B iterations of the box maximisation (Keskar et al.'s setting)

Loss = Callable[[Tensor], Tensor]  # a flat float64 parameter vector (n,) -> the scalar loss, differentiable


@dataclass(frozen=True)
class Sharpness:
    """phi (percent), the loss at x, the largest loss found in the box, and the perturbation y (n,)
    that reached it (|y_i| <= eps (|x_i| + 1))."""

    value: float
    loss: float
    max_loss: float
    y: Tensor


def box(x: Tensor, eps: float) -> Tensor:
    """The half-widths eps (|x_i| + 1) of Keskar's box C_eps around x (n,): (n,)."""
    return eps * (x.abs() + 1)


def sharpness(loss: Loss, x: Tensor, eps: float, maxiter: int = MAXITER) -> Sharpness:
    """Keskar's phi_{x,f}(eps) with A = I for the loss f = `loss` at x (n,), float64 (a ValueError
    otherwise; eps > 0). maxiter bounds the L-BFGS-B iterations (maxiter = 0: phi = 0)."""
    if x.dtype != torch.float64 or x.dim() != 1:
        raise ValueError(f"x must be a flat float64 vector; got {x.dtype} of shape {tuple(x.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    x = x.detach()
    f_x = float(loss(x))
    if maxiter == 0:
        return Sharpness(0.0, f_x, f_x, torch.zeros_like(x))

    def negative(y: np.ndarray) -> tuple[float, np.ndarray]:
        yt = torch.from_numpy(y).to(x.device).requires_grad_(True)
        f = loss(x + yt)
        (grad,) = torch.autograd.grad(f, yt)
        return -float(f.detach()), -grad.cpu().numpy()

    half = box(x, eps).cpu().numpy()
    with torch.enable_grad():
        result = scipy.optimize.minimize(negative, np.zeros_like(half), jac=True, method="L-BFGS-B",
                                         bounds=scipy.optimize.Bounds(-half, half), options={"maxiter": maxiter})
    y = torch.from_numpy(result.x).to(x.device)
    f_max = float(loss(x + y))
    return Sharpness(100.0 * (f_max - f_x) / (1.0 + f_x), f_x, f_max, y)
