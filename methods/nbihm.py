"""Natural bidirectional Helmholtz machine (Varady et al.; authors' code rist-ro/argo,
NaturalBidirectionalOptimizer): BiHM's update (methods/bihm.py: sqrt(p/q) importance weights, p
and q updated with them, 1/K baseline for q, no sleep phase) with every layer's gradient replaced
by its damped natural gradient, exactly as in NRWS (methods/nrws.py: the same Fisher blocks on the
same samples -- ancestral samples for p, wake samples for q -- refreshed every `fisher_every`
steps; plain SGD; lr 0.02 = the code's 0.01 with its +-1 coding, see there)."""

from __future__ import annotations

from bench.workloads.method import register
from methods.bihm import BiHM
from methods.nrws import NATURAL_DEFAULTS, NaturalGradient


@register("nbihm", family="helmholtz", defaults={
    "k": 5, "lr": 0.02, "optimizer": "sgd", "z_samples": 10000, **NATURAL_DEFAULTS,
})
class NBiHM(NaturalGradient, BiHM):
    pass
