"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles", NeurIPS 2017, arXiv 1612.01474, Algorithm 1): M networks from
independent random initialisations, each trained on the proper scoring rule (the NLL), their
predictive the average of their softmaxes.

Layout: every seed (replica r) is one ensemble of M members. Member 1 is the harness's model (so
the ``mlp`` workload's standard metrics are a single member's: the single-network baseline is
this method with members = 1), members 2..M are networks of the same configuration (MLPs or convnets) held by the method,
with R replicas each, whose initialisations come from seeds drawn through bench.nn.noise at
construction (replica r's from its own generator, so a seed's ensemble does not depend on the seeds
beside it). All members see the same minibatches (the paper also shuffles the data per member:
here the members differ by their initialisation only) and are updated by one Adam on the sum of
their objectives, each member's own h = mean -log p(t | x) + l2/2 ||theta||^2 (no adversarial
training, the paper's optional step). The returned ``batch_objective`` is the members' mean h.

Predictive (``extra_metrics``, bench.workloads.predictive): the M members' averaged softmax
(``bma_nll``, ``bma_error``, ``bma_ece``; the NLL of the averaged predictive, not the average NLL)
and their spread (mutual information) on the evaluated inputs and on a white-noise probe; k is not
used (the ensemble is exact: M deterministic members).

Members 2..M are drawn from the model's own initialisation scheme (bench.models.mlp, bench.models.convnet). Defaults: Adam lr 1e-3, M = 5 (the
paper's). `tunable`: lr. Raises ConfigError when members is not a positive integer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.models.mlp import Network
from bench.nn import noise
from bench.workloads.method import Method, Sampler, register
from bench.workloads.predictive import bma_metrics

SEED_RANGE = 2**31  # member seeds are drawn uniformly from [0, SEED_RANGE)


def member_networks(model: Network, members: int) -> list[Network]:
    """The model and members - 1 more networks of its configuration (`Network.like`: an MLP's
    layers, activations, loss, bias, l2 and initialisation scheme; a convnet's architecture), each
    with the model's R replicas, on its device and dtype; member m's replica r is initialised from
    a seed drawn from replica r's noise generator."""
    seeds = (noise.rand((model.replicas, members - 1), model.weights[0]) * SEED_RANGE).long().cpu()
    return [model, *(model.like(seeds[:, m].tolist()) for m in range(members - 1))]


@register("deep_ensemble", family=("mlp", "convnet"), defaults={"lr": 1e-3, "members": 5})
class DeepEnsemble(Method):
    model: Network

    def __init__(self, model: Network, **hparams: Any):
        super().__init__(model, **hparams)
        if not isinstance(self.members, int) or self.members < 1:
            raise ConfigError(f"deep_ensemble: members (M, the networks per seed) must be an integer >= 1; "
                              f"got {self.members!r}")
        self.networks = member_networks(model, self.members)
        self.opt = torch.optim.Adam([p for net in self.networks for p in net.parameters()], lr=self.lr)

    def predictive_samplers(self, k: int) -> list[Sampler]:
        """The M members (k unused: the ensemble is exact)."""
        return list(self.networks)

    def step(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One Adam step of every member on x (R, B, D) (labels y (R, B)); returns their mean h (R,)."""
        h = torch.stack([net.objective(x, y) for net in self.networks])  # (M, R)
        self.opt.zero_grad(set_to_none=True)
        h.sum().backward()  # members and replicas have disjoint parameters
        self.opt.step()
        return {"batch_objective": h.detach().mean(0)}

    @torch.no_grad()
    def extra_metrics(self, x: Tensor, k: int, y: Tensor | None = None) -> dict[str, Tensor]:
        """The M members' predictive of a classifier (bench.workloads.predictive); none otherwise."""
        if self.model.loss != "categorical" or y is None:
            return {}
        return bma_metrics(self.predictive_samplers(k), x, y, self.classes_seen)
