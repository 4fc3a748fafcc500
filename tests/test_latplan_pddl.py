"""AMA1 as PDDL solved by pyperplan (bench/domains/pddl.py): on a toy 2-bit domain the planner's
plan is a shortest path of the latent graph (checked against blind BFS, bench/domains/search.py)
made of observed transitions only; with a perfect encoder (a state's one-hot tiles) on the
8-puzzle, the plan decodes to a legal, optimal move sequence by the symbolic simulator."""

from __future__ import annotations

import numpy as np
import pytest

from bench.domains import puzzle8
from bench.domains.pddl import AMA1Planner, check_plan, domain_pddl, operators, parse, problem_pddl
from bench.domains.search import bfs_path

# a 2-bit toy: 00 -> 01 -> 11 and 00 -> 10, 10 -> 00; 11 is a dead end, 10 cannot reach 11 directly
TOY = np.array([[[0, 0], [0, 1]], [[0, 1], [1, 1]], [[0, 0], [1, 0]], [[1, 0], [0, 0]]], dtype=np.uint8)


def _bfs(transitions: np.ndarray, start: np.ndarray, goal: np.ndarray) -> list[bytes] | None:
    graph: dict[bytes, list[bytes]] = {}
    for a, b in transitions:
        graph.setdefault(a.tobytes(), []).append(b.tobytes())
    return bfs_path(graph, start.tobytes(), goal.tobytes())


def test_the_toy_domain_is_written_as_strips_actions_of_flips():
    text = domain_pddl(TOY)
    assert text.count("(:action") == 4 and "(:requirements :strips)" in text
    assert ":precondition (and (nb0) (b1))\n   :effect (and (b0) (not (nb0))))" in text  # 01 -> 11 flips bit 0
    assert "(:init (b0) (nb1))" in problem_pddl(np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="0/1"):
        domain_pddl(TOY * 2)


def test_the_planner_s_operators_are_pyperplan_s_grounding_of_the_pddl():
    """The operators handed to pyperplan directly equal those its parser and grounding read off
    the written PDDL (names, preconditions, add and delete lists), on the toy and on random codes."""
    codes = (np.random.default_rng(5).random((30, 2, 7)) < 0.5).astype(np.uint8)
    for transitions in (TOY, codes):
        task = parse(domain_pddl(transitions), problem_pddl(transitions[0, 0], transitions[-1, 1]))
        assert sorted(task.operators, key=lambda o: o.name) == sorted(operators(transitions), key=lambda o: o.name)
        assert task.facts == AMA1Planner(transitions).facts


@pytest.mark.parametrize("start, goal", [((0, 0), (1, 1)), ((1, 0), (1, 1)), ((1, 0), (0, 0)), ((1, 1), (0, 0))])
def test_pyperplan_finds_the_shortest_plan_of_the_toy_domain(start, goal):
    planner = AMA1Planner(TOY)
    s, g = np.array(start, dtype=np.uint8), np.array(goal, dtype=np.uint8)
    plan, reference = planner.plan(s, g), _bfs(TOY, s, g)
    assert (plan is None) == (reference is None)
    if plan is not None:
        assert [c.tobytes() for c in np.asarray(plan, dtype=np.uint8)] == reference
        assert check_plan(TOY, plan) and (plan[0] == s).all() and (plan[-1] == g).all()
    assert (start, goal) != ((1, 1), (0, 0)) or plan is None  # 11 is a dead end


def test_check_plan_rejects_an_unobserved_transition():
    assert check_plan(TOY, [np.array([0, 0]), np.array([0, 1]), np.array([1, 1])])
    assert not check_plan(TOY, [np.array([1, 0]), np.array([1, 1])])


def _one_hot(states: np.ndarray) -> np.ndarray:
    """A perfect encoder: 81 bits, the tile at each position one-hot (decoded by argmax)."""
    return np.eye(9, dtype=np.uint8)[np.asarray(states)].reshape(len(states), 81)


def test_a_plan_through_a_perfect_encoder_is_valid_and_optimal():
    start = np.array([1, 2, 5, 3, 0, 4, 6, 7, 8])
    dist = puzzle8.distances(start, 4)
    ball = np.array(list(dist))
    code = {s: c for s, c in zip(map(tuple, ball.tolist()), _one_hot(ball))}
    transitions = np.array([[code[s], code[t]] for s in code for t in puzzle8.successors(s) if t in code])
    planner = AMA1Planner(transitions)
    for goal in [s for s, d in dist.items() if d == 4][:3]:
        plan = planner.plan(code[tuple(start.tolist())], code[goal])
        states = [tuple(np.asarray(c).reshape(9, 9).argmax(1).tolist()) for c in plan]
        assert puzzle8.valid_plan(states) and states[0] == tuple(start.tolist()) and states[-1] == goal
        assert len(plan) - 1 == dist[goal] == 4
    # a move the simulator refuses (two tiles swapped) is no transition: such a goal is unreachable
    swapped = tuple(start[[1, 0, *range(2, 9)]].tolist())
    assert not puzzle8.is_move(tuple(start.tolist()), swapped)
    assert planner.plan(code[tuple(start.tolist())], _one_hot(np.array([swapped]))[0]) is None
