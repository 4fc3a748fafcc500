"""Wake-sleep (Hinton, Dayan, Frey & Neal 1995) for a continuous-latent model: AEVB's baseline.

Kingma & Welling (2014, Sec. 5) compare AEVB with wake-sleep "with the same encoder (recognition
model)". For a Gaussian-latent model:

* wake: z ~ q(z | x) (a sample; no reparameterisation), ascend log p(x, z) in the generative
  parameters theta (only p's parameters receive this gradient);
* sleep: fantasies (x~, z~) ~ p, ascend log q(z~ | x~) in the recognition parameters phi
  (only q's parameters receive it), one fantasy per minibatch example.

Both phases are one backward pass: the wake term is differentiated with the sample detached and
the sleep term through q only, and p's and q's parameters are disjoint, so their sum's gradient is
exactly the two phase gradients. Optimiser, schedule and weight decay are shared with the VAE
(methods/vae.py). The training bound returned as 'bound' is the ELBO of q on the minibatch
(mean log w from the wake samples), so curves compare like for like with AEVB.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.workloads.method import register
from methods.vae import OPTIM_DEFAULTS, GaussianLatentMethod


@register("ws_continuous", family="vae", defaults={**OPTIM_DEFAULTS})
class WakeSleepContinuous(GaussianLatentMethod):
    def step(self, x: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            zs, log_q = self.model.sample_q(x, 1)
            fantasy_x, fantasy_zs = self.model.sample_p(x.shape[1])
        wake = self.model.log_joint(x, zs)  # (R, 1, B); gradients reach p only (z detached)
        with torch.no_grad():
            elbo = (wake - log_q).mean((1, 2))
        sleep = self.model.log_q(fantasy_x, fantasy_zs)  # gradients reach q only (fantasies detached)
        self.apply(wake.sum((1, 2)) + sleep.sum((1, 2)), x.shape[1])
        return {"bound": elbo}
