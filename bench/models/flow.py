"""A normalising flow with a leading replica axis (``flow`` family): a masked autoregressive flow
(MAF; Papamakarios, Pavlakou & Murray 2017, "Masked autoregressive flow for density estimation",
NeurIPS) from the zuko library (zuko.flows.MAF), one flow per replica, in float64.

``layers = [D, H]``: D values, H units in each of the two hidden layers of every MADE; ``transforms``
autoregressive affine transforms (zuko's default order reversal between them) on a standard normal
base. The flow reads standardised values u = (x - m) / s, where m and s are the observed training
mean and standard deviation of each value (fixed buffers ``observed_mean``, ``observed_sd``, set by
`initialize_from_data`; 0 and 1 before), so by the change of variables

    log p(x) = log p_flow(u) - sum_j log s_j,   log p_flow(u) = log N(f(u); 0, I) + log|det df/du|.

Initialisation: replica r's flow is built under torch's global generator seeded 1000 * seeds[r] + 1
(as the other families' layers), inside ``torch.random.fork_rng`` so the caller's stream is kept.
Missing values (NaN) are not marginalised: `log_prob` reads complete data only.
"""

from __future__ import annotations

import torch
import zuko
from torch import Tensor, nn

from bench.core.missing import register_observed_moments, set_observed_moments
from bench.models import register_family


@register_family("flow")
class Flow(nn.Module):
    def __init__(self, layers: list[int], seeds: list[int], transforms: int = 3):
        super().__init__()
        if len(layers) != 2 or min(layers) < 1 or transforms < 1:
            raise ValueError(f"a flow needs layers [D, H] with D, H >= 1 and transforms >= 1; "
                             f"got layers={layers}, transforms={transforms}")
        self.layers = list(layers)
        d, h = layers
        flows = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1000 * seed + 1)
                flows.append(zuko.flows.MAF(d, transforms=transforms, hidden_features=(h, h)))
        self.flows = nn.ModuleList(flows).double()
        register_observed_moments(self, len(seeds), d)

    @torch.no_grad()
    def initialize_from_data(self, x_train: Tensor) -> None:
        """observed_mean, observed_sd <- each value's observed mean and standard deviation in x_train
        (N, D) (NaN = missing; bench.core.missing.observed_moments, which raises a ValueError when a
        value is observed fewer than twice)."""
        set_observed_moments(self, x_train)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per example for complete x (R, N, D): (R, N) nats, float64, differentiable in the
        flows' parameters and in x. A ValueError when x holds a NaN (a missing value)."""
        x = x.to(torch.float64)
        if torch.isnan(x).any():
            raise ValueError("Flow.log_prob reads complete data; impute the missing values (NaN) first")
        u = (x - self.observed_mean.unsqueeze(1)) / self.observed_sd.unsqueeze(1)
        log_p = torch.stack([flow().log_prob(u_r) for flow, u_r in zip(self.flows, u)])
        return log_p - self.observed_sd.log().sum(-1, keepdim=True)
