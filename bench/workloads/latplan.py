"""Workload of Latplan's state autoencoder (``latplan`` family) on the MNIST 8-puzzle (Asai &
Fukunaga, AAAI 2018; bench/models/latplan.py, bench/domains/puzzle8.py).

A run reads ``mnist_8puzzle`` with ``labels: true`` (each image's state rank) and
``transform: unit_interval``. The tile templates are read off the evaluated split's first image
and its state (bench.domains.puzzle8.templates): the renderer's own tiles, no learned part.
Codes are the deterministic test-time argmax (never a Gumbel sample). Every metric is exact
(no sampling, so the evaluation K plays no part).

Every evaluation (LP-1, the SAE):

* 'bce': -log p(x | code(x)) in nats per image (the tuning score, lower is better), with its
  standard error 'bce_sem';
* 'roundtrip': fraction of images whose reconstruction sigmoid(decode(code(x))) classifies, tile
  by tile to the nearest template, to the image's true state (all 9 tiles);
* 'collisions': fraction of images whose code is also the code of an image of another state.

Final evaluation (LP-2, planning with AMA1), on PLAN_INSTANCES instances: the initial states are
the split's first PLAN_INSTANCES states, each goal a state exactly PLAN_DISTANCE moves away (drawn
with a fixed seed from the symbolic breadth-first search). AMA1's action model is every ground
transition among the states within PLAN_DISTANCE moves of the initial state, rendered and encoded
(an edge code(s) -> code(t) per legal move s -> t: the paper's AMA1 enumerates the whole domain's
transitions; a shortest plan never leaves this ball). Blind breadth-first search from code(init
image) to code(goal image) in this latent graph gives a plan of codes; each is decoded, its image
classified to a state, and the plan is checked by the symbolic simulator (never the learned model):

* 'plan_valid': fraction of instances whose decoded plan starts at the initial state, ends at the
  goal and takes only legal moves (no plan found counts as invalid);
* 'plan_optimal': fraction whose plan is valid and of the optimal length PLAN_DISTANCE;
* 'plan_suboptimal': fraction valid but longer than optimal ('plan_valid' - 'plan_optimal').

The same instances planned by a classical planner (bench.domains.pddl): per instance, AMA1 as a
STRIPS task of every distinct latent transition of its ball (each (code(s), code(t)) one grounded
action: preconditions the before-code's bits, effects the flips) from code(init image) to
code(goal image), solved by pyperplan 2.1's A* with the blind heuristic (a shortest plan); its
plans are decoded and validated as above:
'pddl_plan_valid', 'pddl_plan_optimal', 'pddl_plan_suboptimal'.

LP-3 (noise robustness): the same instances, the init and goal images corrupted (only those two
per instance; AMA1's transitions stay those of the clean images) by a fixed seeded generator
(NOISES, NOISE_SEED: Gaussian sigma 0.3, not clipped; salt-and-pepper, each pixel 0 or 1 with
probability 0.06), planned by the blind BFS from code(noisy init) to code(noisy goal) and validated
by the simulator from the true initial state to the true goal:
'noisy_gaussian_plan_valid', 'noisy_saltpepper_plan_valid' (the solvable fraction; at noise 0 it is
'plan_valid').
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from bench.core.errors import ConfigError
from bench.domains import puzzle8
from bench.domains.pddl import AMA1Planner
from bench.domains.search import bfs_path
from bench.models.latplan import StateAutoencoder
from bench.workloads import Workload, register_workload, with_sem
from bench.workloads.health import Check, blow_up, flat_curve
from bench.workloads.method import Method

PLAN_INSTANCES = 20  # the research notes' quick setup: 20 instances at distance 7
PLAN_DISTANCE = 7
PLAN_SEED = 7  # draws each goal among the states PLAN_DISTANCE moves from its initial state
STEP_METRICS = ("bce", "roundtrip", "collisions")
NOISES = {"gaussian": 0.3, "saltpepper": 0.06}  # LP-3: sigma of N(0, sigma^2) per pixel; p of a flipped pixel
NOISE_SEED = 3  # the noise on the init/goal images: numpy.random.default_rng([NOISE_SEED, kind's index])
PLAN_METRICS = (*(f"{p}_{m}" for p in ("plan", "pddl_plan") for m in ("valid", "optimal", "suboptimal")),
                *(f"noisy_{kind}_plan_valid" for kind in NOISES))


def _states(y: Tensor | None) -> np.ndarray:
    """The (N, 9) states of labels y (R, N) (identical across replicas)."""
    if y is None:
        raise ConfigError("the latplan workload reads each image's state: set `labels: true` in the claim")
    return puzzle8.unrank(y[0].cpu().numpy())


def _judge(model: StateAutoencoder, replica: int, plan: list[np.ndarray] | None, like: Tensor,
           tiles: np.ndarray, start: np.ndarray, goal: np.ndarray) -> tuple[bool, bool]:
    """(valid, optimal) of a plan of codes (each (N,) uint8) by replica `replica`: its codes are
    decoded, each image classified to a state by the templates (9, 196), and the symbolic simulator
    checks that it runs from `start` to `goal` (9,) by legal moves; optimal: valid and
    PLAN_DISTANCE moves long. No plan (None) is neither."""
    if plan is None:
        return False, False
    z = torch.as_tensor(np.stack(plan), dtype=like.dtype, device=like.device).expand(like.shape[0], -1, -1)
    steps = puzzle8.classify(torch.sigmoid(model.decode(z)[replica]).double().cpu().numpy(), tiles)
    valid = bool((steps[0] == start).all() and (steps[-1] == goal).all() and puzzle8.valid_plan(steps.tolist()))
    return valid, valid and len(plan) - 1 == PLAN_DISTANCE


def _collisions(codes: np.ndarray, ranks: np.ndarray) -> float:
    """Fraction of rows whose code (M, N) is shared with a row of another state rank (M,)."""
    by_code: dict[bytes, set[int]] = defaultdict(set)
    keys = [row.tobytes() for row in codes]
    for key, r in zip(keys, ranks.tolist()):
        by_code[key].add(r)
    return float(np.mean([len(by_code[key]) > 1 for key in keys]))


def _instances(starts: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per instance the states within PLAN_DISTANCE moves of its start (the start first), and the
    goals (P, 9) drawn among those exactly PLAN_DISTANCE away."""
    rng = np.random.default_rng(PLAN_SEED)
    balls, goals = [], []
    for start in starts:
        dist = puzzle8.distances(start, PLAN_DISTANCE)
        ball = np.array(list(dist), dtype=np.int64)
        far = [s for s, d in dist.items() if d == PLAN_DISTANCE]
        balls.append(ball)
        goals.append(far[rng.integers(len(far))])
    return balls, np.array(goals, dtype=np.int64)


def _noisy(images: np.ndarray, kind: str) -> np.ndarray:
    """LP-3's corruption of images (M, D) in [0, 1], reproducible (a generator seeded by NOISE_SEED
    and the kind): 'gaussian' adds N(0, sigma^2) to every pixel (not clipped: the encoder reads any
    real input); 'saltpepper' sets each pixel with probability p to 0 or 1 (even odds)."""
    rng = np.random.default_rng([NOISE_SEED, list(NOISES).index(kind)])
    level = NOISES[kind]
    if kind == "gaussian":
        return images + rng.normal(0.0, level, images.shape) if level > 0 else images.copy()
    hit, salt = rng.random(images.shape) < level, rng.random(images.shape) < 0.5
    return np.where(hit, salt.astype(images.dtype), images)


def _plan(ball: np.ndarray, codes: np.ndarray, goal_code: bytes,
          start_code: bytes | None = None) -> list[np.ndarray] | None:
    """BFS in AMA1's latent graph over one ball (states (M, 9), their codes (M, N) uint8) from
    start_code (by default the code of ball[0]) to goal_code: the plan's codes, or None."""
    key = {tuple(s): c.tobytes() for s, c in zip(ball.tolist(), codes)}
    graph: dict[bytes, list[bytes]] = defaultdict(list)
    for s, c in key.items():
        for t in puzzle8.successors(s):
            if t in key and key[t] not in graph[c]:
                graph[c].append(key[t])
    path = bfs_path(graph, key[tuple(ball[0].tolist())] if start_code is None else start_code, goal_code)
    return None if path is None else [np.frombuffer(c, dtype=np.uint8) for c in path]


def _transitions(ball: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """AMA1's observed transitions (T, 2, N) uint8, distinct: (code(s), code(t)) for every legal
    move s -> t between states of a ball (states (M, 9), their codes (M, N) in the same order)."""
    key = {tuple(s): c for s, c in zip(ball.tolist(), codes)}
    pairs = [np.stack([c, key[t]]) for s, c in key.items() for t in puzzle8.successors(s) if t in key]
    return np.unique(np.stack(pairs), axis=0)


@contextmanager
def _evaluating(model: torch.nn.Module):
    """The model in evaluation mode (batch norm on its running averages), its mode restored after."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@register_workload("latplan")
class LatplanWorkload(Workload):
    transforms = ("unit_interval",)
    tuning_metric = ("bce", False)

    def prepare(self, model: StateAutoencoder, x_train: Tensor, y_train: Tensor | None = None) -> None:
        model.initialize_from_data(x_train)

    def exact_metrics(self, model: dict) -> tuple[str, ...]:
        return (*STEP_METRICS, *PLAN_METRICS)

    def health_checks(self, model: dict) -> list[Check]:
        """A reconstruction loss that blows up, and a state autoencoder that never round-trips a
        single held-out state (round trip flat at its first value, 0: nothing learned, so its plans
        test nothing)."""
        return [blow_up("bce", higher_is_better=False, split="test"), flat_curve("roundtrip", "test")]

    @torch.no_grad()
    def metrics(self, model: StateAutoencoder, method: Method, x: Tensor, k: int,
                y: Tensor | None) -> dict[str, Tensor]:
        with _evaluating(model):
            return self._step_metrics(model, x, y)

    def _step_metrics(self, model: StateAutoencoder, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        states = _states(y)
        tiles = puzzle8.templates(x[0, 0].double().cpu().numpy(), states[0])
        codes = model.code(x)
        recon = model.decode(codes)
        out = with_sem("bce", model.cross_entropy(x, recon))
        images = torch.sigmoid(recon).double().cpu().numpy()
        ranks = puzzle8.rank(states)
        bits = codes.to(torch.uint8).cpu().numpy()
        out["roundtrip"] = torch.tensor([(puzzle8.classify(im, tiles) == states).all(1).mean() for im in images])
        out["collisions"] = torch.tensor([_collisions(b, ranks) for b in bits])
        return out

    @torch.no_grad()
    def final_metrics(self, model: StateAutoencoder, x: Tensor, y: Tensor | None, split: str) -> dict[str, Tensor]:
        with _evaluating(model):
            return self._plan_metrics(model, x, y)

    def _plan_metrics(self, model: StateAutoencoder, x: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        states = _states(y)
        if len(states) < PLAN_INSTANCES:
            raise ConfigError(f"latplan planning needs {PLAN_INSTANCES} evaluated states; got {len(states)}")
        tiles = puzzle8.templates(x[0, 0].double().cpu().numpy(), states[0])
        balls, goals = _instances(states[:PLAN_INSTANCES])
        images = puzzle8.render(np.concatenate([*balls, goals]), tiles)
        r = x.shape[0]
        codes = model.code(torch.as_tensor(images, dtype=x.dtype, device=x.device).expand(r, -1, -1))
        bits = codes.to(torch.uint8).cpu().numpy()  # (R, M, N)
        bounds = np.cumsum([0, *map(len, balls)])
        scores = {name: np.zeros((r, PLAN_INSTANCES)) for name in ("bfs", "pddl")}
        optimal = {name: np.zeros((r, PLAN_INSTANCES)) for name in ("bfs", "pddl")}
        for i in range(r):
            for j, ball in enumerate(balls):
                ball_codes, goal_code = bits[i, bounds[j]:bounds[j + 1]], bits[i, bounds[-1] + j]
                plans = {"bfs": _plan(ball, ball_codes, goal_code.tobytes()),
                         "pddl": AMA1Planner(_transitions(ball, ball_codes)).plan(ball_codes[0], goal_code)}
                for name, plan in plans.items():
                    scores[name][i, j], optimal[name][i, j] = _judge(model, i, plan, x, tiles, ball[0], goals[j])
        # LP-3: the same instances from noisy init/goal images (the action model stays AMA1's clean
        # transitions); a plan counts when the simulator validates it from the true init to the true goal
        clean = images[[*bounds[:-1], *range(bounds[-1], len(images))]]  # the P init, then the P goal images
        for kind in NOISES:
            noisy = model.code(torch.as_tensor(_noisy(clean, kind), dtype=x.dtype, device=x.device).expand(r, -1, -1))
            noisy_bits = noisy.to(torch.uint8).cpu().numpy()  # (R, 2P, N)
            solved = np.zeros((r, PLAN_INSTANCES))
            for i in range(r):
                for j, ball in enumerate(balls):
                    plan = _plan(ball, bits[i, bounds[j]:bounds[j + 1]], noisy_bits[i, PLAN_INSTANCES + j].tobytes(),
                                 noisy_bits[i, j].tobytes())
                    solved[i, j] = _judge(model, i, plan, x, tiles, ball[0], goals[j])[0]
            scores[f"noisy_{kind}"] = solved
        out = {f"noisy_{kind}_plan_valid": torch.tensor(scores[f"noisy_{kind}"].mean(1)) for kind in NOISES}
        for name, prefix in (("bfs", "plan"), ("pddl", "pddl_plan")):
            out[f"{prefix}_valid"] = torch.tensor(scores[name].mean(1))
            out[f"{prefix}_optimal"] = torch.tensor(optimal[name].mean(1))
            out[f"{prefix}_suboptimal"] = torch.tensor((scores[name] - optimal[name]).mean(1))
        return out
