"""Project step / lean step: what the harness's methods cost over a plain PyTorch loop.

A *lean step* is the same algorithm written as a plain, idiomatic single-replica PyTorch loop:
``nn.Linear`` layers, a ``torch.optim`` optimizer, no replica axis, no per-replica noise, no
harness; the same architecture, K, batch size, optimizer, hyper-parameters and update rule as the
project's method. ``tests/test_perf_lean.py`` checks that from identical parameters and identical
noise (the global generator, drawn in the same order) one lean step and one project step move
every parameter the same way, to float tolerance.

* ``LeanRWS``: methods/rws.py with its defaults (q_updates wake+sleep, sleep_every 2,
  q_baseline off, optimizer momentum_ema). The optimizer's rule is the project's, torch SGD
  with momentum = dampening = 0.95 (bench.nn.optim.make_optimizer's ``momentum_ema``), one
  optimizer over p and q shared by the wake and sleep updates. The wake pass evaluates
  log q(h | x) in the same forward pass that draws h, the bottom layer once per example.
* ``LeanIWAE``: methods/iwae.py (k samples, logsumexp bound summed over the minibatch, Adam).
* ``LeanIWAE`` with bound 'analytic' or 'sampled': methods/vae.py, kl 'analytic' (the method's
  default) or 'sampled' (the claims' "VAE k=1"), Adam.

The lean loops keep torch's default optimizer implementation (on a CPU one kernel per operation
and parameter); the project's optimizers run torch's fused kernels (bench.nn.optim), the same
update rounded in another order.

The benchmarks time the project's step as the engine runs it (inside ``bench.nn.noise.
replica_noise``, per-replica generators), the project's step on torch's global generator, and the
lean step, interleaved round by round in one process; each prints the medians and the ratios, and
R=5 seeds in lock-step against 5 lean models one after the other (what replicas buy).
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.engine.methods import get_method
from bench.models.helmholtz import HelmholtzMachine
from bench.models.vae import VAE
from bench.nn import noise
from bench.perf import benchmark, binary_batch, timed

# --------------------------------------------------------------------------- lean building blocks


def log_bernoulli(y: Tensor, logits: Tensor) -> Tensor:
    """log Bernoulli(y | sigmoid(logits)) summed over the last axis; logits broadcast against y."""
    return (y * logits).sum(-1) - F.softplus(logits).sum(-1)


def sample(logits: Tensor, shape: torch.Size | None = None) -> Tensor:
    """0/1 draws of Bernoulli(sigmoid(logits)), broadcast to `shape` (uniforms from the global
    generator, compared with the probabilities: the same draws as bench.nn.bernoulli outside
    replica_noise)."""
    probs = torch.sigmoid(logits)
    u = torch.rand(shape or probs.shape, dtype=probs.dtype, device=probs.device)
    return (u < probs).to(probs.dtype)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear + tanh per layer."""
    return nn.Sequential(*(m for a, b in itertools.pairwise(sizes) for m in (nn.Linear(a, b), nn.Tanh())))


# --------------------------------------------------------------------------- RWS


class LeanHelmholtz(nn.Module):
    """An SBN pair for layers [D, h1, ..., hL]: q[i] maps layer i to i+1, p[i] maps i+1 to i,
    `prior` holds the top layer's logits."""

    def __init__(self, layers: list[int]):
        super().__init__()
        self.q = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(layers))
        self.p = nn.ModuleList(nn.Linear(b, a) for a, b in itertools.pairwise(layers))
        self.prior = nn.Parameter(torch.zeros(layers[-1]))


def helmholtz_pairs(project: HelmholtzMachine, lean: LeanHelmholtz, r: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """(replica r's slice of a project parameter, the lean parameter it corresponds to)."""
    for mine, theirs in ((lean.q, project.recognition), (lean.p, project.generative)):
        for linear, layer in zip(mine, theirs):
            yield layer.weight[r], linear.weight
            yield layer.bias[r], linear.bias
    yield project.prior.bias[r], lean.prior


def to_lean_helmholtz(project: HelmholtzMachine, r: int = 0) -> LeanHelmholtz:
    """A LeanHelmholtz holding a copy of replica r's parameters (same dtype and device)."""
    lean = LeanHelmholtz(project.layers).to(project.prior.bias)
    with torch.no_grad():
        for src, dst in helmholtz_pairs(project, lean, r):
            dst.copy_(src)
    return lean


class LeanRWS:
    """Reweighted wake-sleep, methods/rws.py's defaults, on one model and x (B, D)."""

    def __init__(self, net: LeanHelmholtz, k: int = 5, lr: float = 0.1, sleep_every: int = 2, beta: float = 0.95):
        self.net, self.k, self.sleep_every = net, k, sleep_every
        self.opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=beta, dampening=beta)
        self.updates = 0

    def step(self, x: Tensor) -> Tensor:
        net, k, b = self.net, self.k, x.shape[0]
        # wake: K samples h ~ q(h | x) per example, (K, B, n); log q with gradients in the same pass
        logits = net.q[0](x)  # once per example, broadcast over the K samples
        h = [x, sample(logits, torch.Size((k, *logits.shape)))]
        log_q = log_bernoulli(h[1], logits)
        for layer in net.q[1:]:
            logits = layer(h[-1])
            h.append(sample(logits))
            log_q = log_q + log_bernoulli(h[-1], logits)
        log_p = log_bernoulli(h[-1], net.prior)
        for layer, below, above in zip(net.p, h, h[1:]):
            log_p = log_p + log_bernoulli(below, layer(above))
        w = torch.softmax((log_p - log_q).detach(), dim=0)  # self-normalised weights over K
        loss = -(w * (log_p + log_q)).sum(0).mean()  # wake-p + wake-q
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.updates += 1
        if self.updates % self.sleep_every == 0:  # sleep-q on sleep_every * B dreams (x, h) ~ p
            with torch.no_grad():
                dream = [sample(net.prior, torch.Size((self.sleep_every * b, net.prior.shape[0])))]
                for layer in reversed(net.p):
                    dream.insert(0, sample(layer(dream[0])))
            log_q_sleep = sum(log_bernoulli(above, layer(below)) for layer, below, above in zip(net.q, dream, dream[1:]))
            self.opt.zero_grad()
            (-log_q_sleep.sum() / b).backward()
            self.opt.step()
        return loss.detach()


# --------------------------------------------------------------------------- VAE / IWAE


class LeanGaussianVAE(nn.Module):
    """One Gaussian stochastic layer: q(z | x) = N(mean(f), exp(log_sigma(f))), f = encoder(x);
    p(z) = N(0, I); p(x | z) Bernoulli with logits head(decoder(z)). tanh MLPs."""

    def __init__(self, d: int, hidden: list[int], latent: int):
        super().__init__()
        self.encoder = mlp([d, *hidden])
        self.mean = nn.Linear(hidden[-1], latent)
        self.log_sigma = nn.Linear(hidden[-1], latent)
        self.decoder = mlp([latent, *hidden[::-1]])
        self.head = nn.Linear(hidden[0], d)


def vae_pairs(project: VAE, lean: LeanGaussianVAE, r: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
    """(replica r's slice of a project parameter, the lean parameter it corresponds to)."""
    q, data = project.q[0], project.data
    mine = [m for m in lean.encoder if isinstance(m, nn.Linear)] + [lean.mean, lean.log_sigma]
    mine += [m for m in lean.decoder if isinstance(m, nn.Linear)] + [lean.head]
    theirs = [*q.trunk.linears, q.mean, q.log_sigma, *data.trunk.linears, data.head]
    for linear, layer in zip(mine, theirs, strict=True):
        yield layer.weight[r], linear.weight
        yield layer.bias[r], linear.bias


def to_lean_vae(project: VAE, r: int = 0) -> LeanGaussianVAE:
    """A LeanGaussianVAE holding a copy of replica r's parameters (one stochastic layer, Bernoulli data)."""
    if len(project.layers) != 2 or project.data.likelihood != "bernoulli":
        raise ValueError("the lean VAE has one stochastic layer and Bernoulli data")
    hidden = [linear.weight.shape[1] for linear in project.q[0].trunk.linears]  # (R, out, in)
    ref = project.data.head.weight
    lean = LeanGaussianVAE(project.layers[0], hidden, project.layers[1]).to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for src, dst in vae_pairs(project, lean, r):
            dst.copy_(src)
    return lean


class LeanIWAE:
    """The k-sample IWAE bound, summed over the minibatch, ascended with Adam; x (B, D).
    With kl 'sampled' the bound is the mean of the k log-weights instead (methods/vae.py,
    estimator A); with kl 'analytic', the mean over k of log p(x | z) minus the closed-form KL
    (estimator B)."""

    def __init__(self, net: LeanGaussianVAE, k: int = 5, lr: float = 1e-3, beta1: float = 0.99, eps: float = 1e-4,
                 bound: str = "iwae"):
        if bound not in ("iwae", "sampled", "analytic"):
            raise ValueError(f"bound {bound!r}")
        self.net, self.k, self.bound = net, k, bound
        self.opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(beta1, 0.999), eps=eps)

    def step(self, x: Tensor) -> Tensor:
        net = self.net
        f = net.encoder(x)
        mu, log_sigma = net.mean(f), net.log_sigma(f)
        eps = torch.randn((self.k, *mu.shape), dtype=mu.dtype, device=mu.device)
        z = mu + log_sigma.exp() * eps  # (k, B, d)
        logits = net.head(net.decoder(z))
        log_px = log_bernoulli(x, logits)  # (k, B)
        if self.bound == "analytic":
            kl = (0.5 * (mu.square() + (2 * log_sigma).exp() - 1) - log_sigma).sum(-1)
            bound = log_px.mean(0) - kl
        else:
            # log p(z) - log q(z | x); the -d/2 log(2 pi) of both cancel
            log_w = log_px + (0.5 * eps.square() + log_sigma - 0.5 * z.square()).sum(-1)
            bound = torch.logsumexp(log_w, 0) - math.log(self.k) if self.bound == "iwae" else log_w.mean(0)
        loss = -bound.sum()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.detach()


# --------------------------------------------------------------------------- timing

REPEATS = 15  # interleaved rounds per comparison


def _load() -> str:
    """The machine's load when a benchmark starts: other processes share the CPU the ratios are
    measured on."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start"


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each fn (one call runs `steps` steps), timed round by round: each
    round times every fn once (with `timed`), the order rotating from round to round."""
    for fn in fns.values():
        timed(fn, device, repeats=1, warmup=1)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            times[name].append(timed(fns[name], device, repeats=1, warmup=0))
    return {name: statistics.median(t) / steps for name, t in times.items()}


def _compare(project, lean: list, x: Tensor, seeds: list[int], device: torch.device, repeats: int,
             steps: int) -> dict[str, float]:
    """Time the project method on x (R, B, D) inside replica_noise (as the engine runs it) and on the
    global generator, against the R lean steppers run one after the other on their slices."""

    def in_engine() -> None:
        with noise.replica_noise(seeds, device):
            for _ in range(steps):
                project.step(x)

    def global_noise() -> None:
        for _ in range(steps):
            project.step(x)

    def plain() -> None:
        for r, m in enumerate(lean):
            for _ in range(steps):
                m.step(x[r])

    return interleaved({"project": in_engine, "global": global_noise, "lean": plain}, device, repeats, steps)


def _lines(label: str, t: dict[str, float], r: int) -> list[str]:
    if r == 1:
        return [(f"  {label}:  project {t['project'] * 1e3:7.2f} ms per step "
                 f"(global generator {t['global'] * 1e3:7.2f});  lean {t['lean'] * 1e3:7.2f} ms;  "
                 f"project / lean = {t['project'] / t['lean']:.2f}x (global generator {t['global'] / t['lean']:.2f}x)")]
    return [(f"  {label}:  project R={r} lock-step {t['project'] * 1e3:7.2f} ms per step of all seeds "
             f"(global generator {t['global'] * 1e3:7.2f});  {r} x lean one after the other {t['lean'] * 1e3:7.2f} ms;  "
             f"throughput lock-step / {r} x lean = {t['lean'] / t['project']:.2f}x")]


@benchmark
def lean_rws(device: torch.device) -> list[str]:
    """RWS steps (methods/rws.py defaults but K=5: wake-p + wake-q, sleep-q every 2nd step,
    momentum_ema lr 0.1) on SBN 784-200-200-10, B=20 and 100: project vs lean, R=1 and R=5."""
    layers, k, steps, repeats = [784, 200, 200, 10], 5, 10, REPEATS
    hp = {"k": k, "lr": 0.1, "optimizer": "momentum_ema", "q_updates": "wake+sleep", "sleep_every": 2,
          "q_baseline": False}
    lines = [(f"RWS step (wake-p + wake-q, sleep-q every 2nd step), SBN {'-'.join(map(str, layers))}, K={k}, "
              f"momentum_ema lr 0.1; {steps} steps per timing, median of {repeats} interleaved rounds; project = "
              f"method.step inside replica_noise as the engine runs it; lean = bench/perf/lean.py LeanRWS; {_load()}")]
    for b, r in ((20, 1), (100, 1), (20, 5), (100, 5)):
        seeds = list(range(r))
        project = get_method("rws")(HelmholtzMachine(layers, seeds).to(device), **hp)
        lean = [LeanRWS(to_lean_helmholtz(project.model, i), k=k, lr=0.1, sleep_every=2) for i in range(r)]
        t = _compare(project, lean, binary_batch(r, b, layers[0], device), seeds, device, repeats, steps)
        lines += _lines(f"B={b:3d}, R={r}", t, r)
    return lines


def _variational(device: torch.device, configs: list[tuple[str, str, dict, dict]], steps: int) -> list[str]:
    """configs: (label, method name, project hparams, LeanIWAE kwargs), each at R=1 and R=5."""
    net = {"layers": [784, 50], "hidden": [[100, 100]], "activation": "tanh", "likelihood": "bernoulli",
           "init": "glorot_uniform", "output_bias": "zero"}
    repeats, b = REPEATS, 20
    lines = [(f"VAE 784-[100,100]-50, tanh, Bernoulli (bench/claims/iwae.yaml's quick profile), B={b}; "
              f"{steps} steps per timing, median of {repeats} interleaved rounds; project = method.step inside "
              f"replica_noise as the engine runs it; lean = bench/perf/lean.py LeanIWAE; {_load()}")]
    for label, name, hp, lean_kw in configs:
        lines.append(f" {label}")
        for r in (1, 5):
            seeds = list(range(r))
            cls = get_method(name)
            project = cls(VAE(seeds=seeds, **net).to(device), **{**cls.defaults, **hp})
            lean = [LeanIWAE(to_lean_vae(project.model, i), **lean_kw) for i in range(r)]
            t = _compare(project, lean, binary_batch(r, b, 784, device), seeds, device, repeats, steps)
            lines += _lines(f"R={r}", t, r)
    return lines


@benchmark
def lean_iwae(device: torch.device) -> list[str]:
    """IWAE k=5 steps (Adam beta1 0.99, eps 1e-4, lr 1e-3), the IWAE claims' quick-profile net:
    project vs lean, R=1 and R=5."""
    return _variational(device, [("IWAE k=5 (method iwae, defaults)", "iwae", {"k": 5},
                                  {"k": 5, "lr": 1e-3, "beta1": 0.99, "eps": 1e-4, "bound": "iwae"})], steps=40)


@benchmark
def lean_vae(device: torch.device) -> list[str]:
    """VAE k=1 steps, the IWAE claims' quick-profile net: as the claim runs it (kl sampled, Adam
    beta1 0.99, eps 1e-4) and with methods/vae.py's defaults (kl analytic, beta1 0.9, eps 1e-8):
    project vs lean, R=1 and R=5."""
    return _variational(device, [
        ("VAE k=1 as bench/claims/iwae.yaml runs it (kl sampled, Adam beta1 0.99, eps 1e-4)", "vae",
         {"k": 1, "kl": "sampled", "beta1": 0.99, "eps": 1e-4},
         {"k": 1, "lr": 1e-3, "beta1": 0.99, "eps": 1e-4, "bound": "sampled"}),
        ("VAE k=1 with methods/vae.py's defaults (kl analytic, Adam beta1 0.9, eps 1e-8)", "vae",
         {"k": 1, "kl": "analytic", "beta1": 0.9, "eps": 1e-8},
         {"k": 1, "lr": 1e-3, "beta1": 0.9, "eps": 1e-8, "bound": "analytic"}),
    ], steps=40)
