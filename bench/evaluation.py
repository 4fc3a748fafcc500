"""The harness's standard evaluation protocol per model family (DESIGN.md, rule 4).

Latent-variable models (anything with ``log_weights(x, k)``) are scored by the importance-sampled
test log-likelihood with the model's own recognition network as proposal, K samples per example
(K = 5000 at the paper profile, the IWAE protocol; each table states its K).
"""

from __future__ import annotations

from torch import Tensor, nn

from bench.estimators import importance_log_likelihood


def standard_metrics(model: nn.Module, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
    """name -> (R,) mean over the examples of x (R, N, D).

    Models with ``log_weights(x, k)`` get the importance-sampled log-likelihood 'll'; models with
    ``metrics(x, y)`` (e.g. autoencoders, classifiers: losses, errors) contribute those too."""
    out = {}
    if hasattr(model, "log_weights"):
        out["ll"] = importance_log_likelihood(model.log_weights, x, k).mean(1)
    if hasattr(model, "metrics"):
        out.update(model.metrics(x, y))
    if not out:
        raise NotImplementedError(f"no standard evaluation for model family {getattr(model, 'family', type(model))!r}")
    return out
