"""Latplan on the MNIST 8-puzzle (bench/domains, bench/models/latplan.py, bench/workloads/latplan.py,
methods/sae_gumbel.py): the symbolic simulator against exact enumeration and the puzzle's known
state counts, BFS against iterative deepening, the renderer and template classifier, the
Gumbel-softmax against its closed forms, and the planning protocol with an oracle autoencoder
(every plan valid and optimal) and a collapsed one (none valid)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.domains import puzzle8
from bench.domains.search import bfs_path
from bench.engine import data
from bench.models.latplan import StateAutoencoder
from bench.nn import noise
from bench.workloads import workload_for
from bench.workloads.health import run_checks
from bench.workloads.latplan import PLAN_DISTANCE, PLAN_INSTANCES
from methods.sae_gumbel import SAEGumbel

RIGHT, DOWN = 1, 3  # offsets of the position the blank moves to


def _move(state: tuple[int, ...], offset: int) -> tuple[int, ...]:
    s = list(state)
    b = s.index(0)
    s[b], s[b + offset] = s[b + offset], 0
    return tuple(s)


def test_the_simulator_rejects_illegal_moves_and_accepts_a_valid_plan():
    goal = puzzle8.GOAL
    swap_tiles = (0, 2, 1, 3, 4, 5, 6, 7, 8)  # two tiles swapped, the blank unmoved
    diagonal = (4, 1, 2, 3, 0, 5, 6, 7, 8)  # the blank jumps diagonally
    wrap = (2, 1, 0, 3, 4, 5, 6, 7, 8)  # the blank jumps two columns
    for bad in (swap_tiles, diagonal, wrap, goal):
        assert not puzzle8.is_move(goal, bad)
        assert not puzzle8.valid_plan([goal, bad])
    assert not puzzle8.valid_plan([goal, (0, 0, 2, 3, 4, 5, 6, 7, 8)])  # not a permutation
    walk = [goal]
    rng = np.random.default_rng(0)
    for _ in range(20):
        options = puzzle8.successors(walk[-1])
        walk.append(options[rng.integers(len(options))])
    assert puzzle8.valid_plan(walk)
    assert puzzle8.valid_plan([_move(_move(goal, RIGHT), DOWN)][:1])
    assert sorted(puzzle8.successors(goal)) == sorted([_move(goal, RIGHT), _move(goal, DOWN)])


def test_the_state_space_has_181440_states_and_two_at_depth_31():
    """Known results (Reinefeld 1993, complete solution of the 8-puzzle): 9!/2 reachable states,
    the farthest 31 moves from a corner-blank goal, two of them; the parity test picks exactly
    the reachable permutations."""
    dist = puzzle8.distances(puzzle8.GOAL, 40)
    depths = np.bincount(list(dist.values()))
    assert len(dist) == puzzle8.STATES == 181440
    assert len(depths) - 1 == 31 and depths[31] == 2
    assert depths[:5].tolist() == [1, 2, 4, 8, 16]
    sample = np.array(list(itertools.islice(itertools.permutations(range(9)), 0, 362880, 97)))
    reachable = np.array([tuple(s) in dist for s in sample.tolist()])
    assert (puzzle8.solvable(sample) == reachable).all() and reachable.any() and not reachable.all()


def test_rank_is_the_lexicographic_index_and_unrank_inverts_it():
    perms = list(itertools.permutations(range(9)))
    idx = np.arange(0, len(perms), 1013)
    chosen = np.array([perms[i] for i in idx])
    assert (puzzle8.rank(chosen) == idx).all()
    assert (puzzle8.unrank(idx) == chosen).all()


def _all_sequences_reach(start: tuple[int, ...], target: tuple[int, ...], depth: int) -> bool:
    """Exhaustive enumeration of every move sequence of exactly `depth` moves."""
    frontier = {start}
    for _ in range(depth):
        frontier = {t for s in frontier for t in puzzle8.successors(s)}
    return target in frontier


def test_bfs_finds_optimal_plan_lengths_on_the_true_graph():
    goal = puzzle8.GOAL
    three = _move(_move(_move(goal, RIGHT), DOWN), RIGHT)  # (1, 4, 2, 3, 5, 0, ...): 3 moves away
    assert not any(_all_sequences_reach(goal, three, d) for d in range(3)) and _all_sequences_reach(goal, three, 3)
    ball = puzzle8.distances(goal, 8)
    graph = {s: puzzle8.successors(s) for s in ball}
    path = bfs_path(graph, goal, three)
    assert path is not None and len(path) - 1 == 3 and puzzle8.valid_plan(path)
    rng = np.random.default_rng(1)
    for target in [s for s, d in ball.items() if d == 6][:: 13][:5] + [tuple(rng.permutation(9))]:
        path = bfs_path(graph, goal, target)
        shortest = next((d for d in range(9) if _all_sequences_reach(goal, target, d)), None)
        assert (path is None) == (shortest is None)
        if path is not None:
            assert len(path) - 1 == shortest and path[0] == goal and path[-1] == target
            assert puzzle8.valid_plan(path)


def _synthetic_tiles(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (9, 14, 14)).astype(np.uint8)


def test_render_then_classify_returns_every_tile_of_every_state():
    tiles = _synthetic_tiles()
    states = puzzle8.random_states(200, np.random.default_rng(2))
    images = puzzle8.render(states, tiles)
    assert images.shape == (200, 1764) and images.dtype == np.uint8
    assert (images[0].reshape(42, 42)[14:28, 28:42] == tiles[states[0, 5]]).all()  # position 5: row 1, col 2
    assert (puzzle8.classify(images / 255.0, tiles.reshape(9, -1) / 255.0) == states).all()
    assert (puzzle8.templates(images[7], states[7]) == tiles.reshape(9, -1)).all()


@pytest.mark.skipif(not data.is_available("mnist"), reason="the real mnist is not on the data search path")
def test_the_mnist_8puzzle_renders_real_digits_of_distinct_reachable_states():
    ds = data.load("mnist_8puzzle")
    mnist = data.load("mnist")
    tiles, index = puzzle8.mnist_tiles(mnist.x["train"], mnist.y["train"])
    assert index.tolist() == [1, 3, 5, 7, 2, 0, 13, 15, 17]  # the first training image of each digit
    assert (mnist.y["train"][index] == np.arange(9)).all()
    train, test = puzzle8.unrank(ds.y["train"]), puzzle8.unrank(ds.y["test"])
    assert puzzle8.solvable(np.concatenate([train, test])).all()
    assert len(set(ds.y["train"]) | set(ds.y["test"])) == 6000  # distinct, test states held out
    assert (ds.x["test"] == puzzle8.render(test, tiles)).all()
    assert (puzzle8.classify(ds.x["train"], tiles.reshape(9, -1)) == train).all()


def _model(seeds=(0, 1)) -> StateAutoencoder:
    return StateAutoencoder([12, 16, 5], list(seeds)).double()


def test_the_test_time_code_is_the_deterministic_argmax():
    model = _model()
    x = torch.rand(2, 64, 12, dtype=torch.float64)
    with noise.replica_noise([0, 1], "cpu"):
        first, second = model.code(x), model.code(x)
    logits = model.logits(x)
    assert torch.equal(first, second)
    assert torch.equal(first, (logits[..., 1] > logits[..., 0]).double())


def test_gumbel_softmax_samples_follow_the_encoder_and_harden_as_tau_falls():
    """Gumbel-max: at tau -> 0 the relaxed bit is 1 with probability softmax(logits)_1 (closed form)."""
    model = _model()
    logits = torch.tensor([[[[0.3, -0.9], [0.0, 1.2]]]], dtype=torch.float64).expand(2, 20000, 2, 2)
    with noise.replica_noise([0, 1], "cpu"):
        hard = model.relaxed(logits, 1e-3)
        soft = model.relaxed(logits, 5.0)
    assert ((hard < 1e-6) | (hard > 1 - 1e-6)).double().mean() > 0.99
    expected = torch.softmax(logits[0, 0], -1)[:, 1]
    assert torch.allclose(hard.round().mean((0, 1)), expected, atol=0.01)
    assert (soft - 0.5).abs().max() < (hard - 0.5).abs().max()


def test_the_loss_terms_match_torch_distributions():
    model = _model()
    logits = torch.randn(2, 7, 5, 2, dtype=torch.float64)
    q = torch.distributions.Categorical(logits=logits)
    uniform = torch.distributions.Categorical(probs=torch.full_like(logits, 0.5))
    assert torch.allclose(model.kl_uniform(logits), torch.distributions.kl_divergence(q, uniform).sum(-1))
    x, z = torch.rand(2, 7, 12, dtype=torch.float64), torch.randn(2, 7, 12, dtype=torch.float64)
    # the continuous Bernoulli-likelihood form used for grey pixels: -[x log s + (1 - x) log(1 - s)]
    s = torch.sigmoid(z)
    assert torch.allclose(model.cross_entropy(x, z), -(x * s.log() + (1 - x) * (1 - s).log()).sum(-1))


def test_sae_gumbel_anneals_tau_and_lowers_its_loss():
    torch.manual_seed(0)
    model = StateAutoencoder([12, 32, 4], [0, 1])
    method = SAEGumbel(model, lr=1e-2, anneal_updates=50)
    method.prepare(64)
    patterns = (torch.rand(4, 12) < 0.5).float()  # 4 images, which 4 bits can code
    x = patterns.repeat(16, 1).expand(2, -1, -1)
    with noise.replica_noise([0, 1], "cpu"):
        first = method.step(x)["loss"]
        assert math.isclose(method.temperature(), 5.0 * (0.7 / 5.0) ** (1 / 50))
        for _ in range(199):
            last = method.step(x)["loss"]
    assert math.isclose(method.temperature(), 0.7)
    assert (last < 0.6 * first).all()


class _Oracle(torch.nn.Module):
    """An autoencoder that reads a state off its image by the templates and codes it as 81 one-hot
    bits (tile per position), and decodes a code to the logits of the state's exact image; `collapse`
    gives every image the same code."""

    def __init__(self, tiles: np.ndarray, replicas: int, collapse: bool = False):
        super().__init__()
        self.tiles, self.replicas, self.collapse = tiles, replicas, collapse

    def code(self, x: torch.Tensor) -> torch.Tensor:
        states = puzzle8.classify(x[0].numpy(), self.tiles)
        bits = np.eye(9)[states].reshape(len(states), 81) * (not self.collapse)
        return torch.as_tensor(bits, dtype=x.dtype).expand(x.shape[0], -1, -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        states = z[0].reshape(z.shape[1], 9, 9).argmax(-1).numpy()
        images = puzzle8.render(states, self.tiles.reshape(9, 14, 14)).clip(1e-6, 1 - 1e-6)
        return torch.logit(torch.as_tensor(images, dtype=z.dtype)).expand(z.shape[0], -1, -1)

    cross_entropy = staticmethod(StateAutoencoder.cross_entropy)


@pytest.mark.parametrize("collapse", [False, True])
def test_planning_is_validated_by_the_simulator(collapse: bool):
    tiles = _synthetic_tiles(3).reshape(9, -1) / 255.0
    states = puzzle8.random_states(PLAN_INSTANCES + 5, np.random.default_rng(4))
    x = torch.as_tensor(puzzle8.render(states, tiles.reshape(9, 14, 14)), dtype=torch.float64).expand(2, -1, -1)
    y = torch.as_tensor(puzzle8.rank(states)).expand(2, -1)
    workload, model = workload_for("latplan"), _Oracle(tiles, 2, collapse)
    step = workload.metrics(model, None, x, 1, y)
    final = workload.final_metrics(model, x, y, "test")
    expected = 0.0 if collapse else 1.0
    assert step["roundtrip"].tolist() == [expected] * 2 and step["collisions"].tolist() == [1.0 - expected] * 2
    assert final["plan_valid"].tolist() == [expected] * 2 and final["plan_optimal"].tolist() == [expected] * 2
    assert final["plan_suboptimal"].tolist() == [0.0, 0.0] and PLAN_DISTANCE == 7
    for name in ("pddl_plan_valid", "pddl_plan_optimal"):  # the same instances planned by pyperplan
        assert final[name].tolist() == [expected] * 2


def test_the_puzzle_is_available_only_where_mnist_is(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path)
    assert not data.is_available("mnist") and not data.is_available("mnist_8puzzle")
    assert data.is_available("bars_4x4")


def test_a_state_autoencoder_that_never_round_trips_is_degenerate():
    """The quick budget's failure mode: round trip 0 at every evaluation reads 'flat curve'
    (degenerate: its plans test nothing), a learning one does not."""
    rows = pd.DataFrame([{"split": "test", "metric": "roundtrip", "eval_k": 1, "seed": seed, "step": step, "value": v}
                         for seed, values in {0: [0.0, 0.0, 0.0], 1: [0.0, 0.4, 0.9]}.items()
                         for step, v in enumerate(values)])
    findings = run_checks(workload_for("latplan").health_checks({}), rows)
    assert [(f.seed, f.check, f.kind) for f in findings] == [(0, "flat curve", "degenerate")]


def test_the_data_dependent_start_reconstructs_the_training_mean():
    """After initialize_from_data the encoder reads x - mean and an all-zero-weight decoder
    outputs sigmoid(bias) = the training mean image (clamped), for every replica and code."""
    model = _model().double()
    x = torch.rand(50, 12, dtype=torch.float64) * 0.9 + 0.05
    model.initialize_from_data(x)
    assert torch.allclose(model.input_mean, x.mean(0))
    with torch.no_grad():
        model.decoder[-1].weight.zero_()
    z = torch.randint(0, 2, (2, 3, 5)).double()
    assert torch.allclose(torch.sigmoid(model.decode(z)), x.mean(0).expand(2, 3, -1))
    shifted = StateAutoencoder([12, 16, 5], [0, 1]).double()
    shifted.load_state_dict(model.state_dict())
    shifted.input_mean.zero_()
    assert torch.allclose(shifted.logits(x.expand(2, -1, -1) - x.mean(0)), model.logits(x.expand(2, -1, -1)))


@pytest.mark.parametrize("collapse", [False, True])
def test_noiseless_noisy_planning_is_the_plan_metric(monkeypatch, collapse: bool):
    """LP-3 at noise 0 (sigma 0, p 0) plans exactly LP-2's instances: its solvable fraction is
    plan_valid, for a model that solves every instance and one that solves none."""
    import bench.workloads.latplan as lp
    monkeypatch.setattr(lp, "NOISES", {"gaussian": 0.0, "saltpepper": 0.0})
    tiles = _synthetic_tiles(3).reshape(9, -1) / 255.0
    states = puzzle8.random_states(PLAN_INSTANCES + 5, np.random.default_rng(4))
    x = torch.as_tensor(puzzle8.render(states, tiles.reshape(9, 14, 14)), dtype=torch.float64).expand(2, -1, -1)
    y = torch.as_tensor(puzzle8.rank(states)).expand(2, -1)
    final = workload_for("latplan").final_metrics(_Oracle(tiles, 2, collapse), x, y, "test")
    for kind in ("gaussian", "saltpepper"):
        assert final[f"noisy_{kind}_plan_valid"].tolist() == final["plan_valid"].tolist() == [float(not collapse)] * 2


class _Recorder(_Oracle):
    """The oracle, recording every batch of images it codes."""

    def __init__(self, *args):
        super().__init__(*args)
        self.seen: list[np.ndarray] = []

    def code(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[0].numpy().copy())
        return super().code(x)


def test_noise_touches_only_the_init_and_goal_images_and_is_reproducible():
    """The action model's images are the clean renders; the noisy batches are exactly the P initial
    then the P goal images, corrupted, and the same on a second run (a fixed seeded generator)."""
    from bench.workloads.latplan import NOISES, _instances, _noisy
    tiles = _synthetic_tiles(3).reshape(9, -1) / 255.0
    states = puzzle8.random_states(PLAN_INSTANCES + 5, np.random.default_rng(4))
    x = torch.as_tensor(puzzle8.render(states, tiles.reshape(9, 14, 14)), dtype=torch.float64).expand(2, -1, -1)
    y = torch.as_tensor(puzzle8.rank(states)).expand(2, -1)
    runs = []
    for _ in range(2):
        model = _Recorder(tiles, 2)
        final = workload_for("latplan").final_metrics(model, x, y, "test")
        runs.append((model.seen, final))
    (seen, final), (again, final_again) = runs
    balls, goals = _instances(states[:PLAN_INSTANCES])
    clean_all = puzzle8.render(np.concatenate([*balls, goals]), tiles.reshape(9, 14, 14))
    clean = puzzle8.render(np.concatenate([np.stack([b[0] for b in balls]), goals]), tiles.reshape(9, 14, 14))
    assert len(seen) == 1 + len(NOISES) and np.array_equal(seen[0], clean_all)
    for kind, batch in zip(NOISES, seen[1:]):
        assert batch.shape == clean.shape and not np.array_equal(batch, clean)
        assert np.array_equal(batch, _noisy(clean, kind))
    assert abs((seen[1] - clean).std() - NOISES["gaussian"]) < 0.01
    changed = (seen[2] != clean).mean()
    assert 0.5 * NOISES["saltpepper"] < changed <= NOISES["saltpepper"]
    assert set(np.unique(seen[2][seen[2] != clean])) <= {0.0, 1.0}
    assert all(np.array_equal(a, b) for a, b in zip(seen, again))
    assert {k: v.tolist() for k, v in final.items()} == {k: v.tolist() for k, v in final_again.items()}


def test_batch_norm_codes_by_running_averages_in_evaluation():
    """With batch norm the workload evaluates in eval mode (a code never depends on its batch) and
    hands the model back in training mode; the running averages move only in training."""
    model = StateAutoencoder([12, 16, 5], [0, 1], batch_norm=True).double()
    assert len(model.encoder_norms) == 1 and len(model.decoder_norms) == 1
    x = torch.rand(2, 64, 12, dtype=torch.float64)
    method = SAEGumbel(model, lr=1e-2, anneal_updates=50)
    method.prepare(64)
    with noise.replica_noise([0, 1], "cpu"):
        for _ in range(5):
            method.step(x)
    before = model.encoder_norms[0].running_mean.clone()
    model.eval()
    whole, part = model.code(x), model.code(x[:, :7])
    assert torch.equal(whole[:, :7], part) and torch.equal(model.encoder_norms[0].running_mean, before)
    model.train()
    from bench.workloads.latplan import _evaluating
    with _evaluating(model):
        assert not model.training
    assert model.training
