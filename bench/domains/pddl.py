"""Latplan's AMA1 action model as PDDL, solved by a classical planner (Asai & Fukunaga, AAAI 2018,
Sec. 4: "AMA1", every observed latent transition one grounded action; the paper plans with Fast
Downward, here pyperplan 2.1, A* with its blind heuristic: optimal for unit action costs).

A latent state is an N-bit code (uint8 0/1). PDDL STRIPS (pyperplan's fragment) has no negative
preconditions, so bit i is two zero-arity facts, ``(b<i>)`` when it is 1 and ``(nb<i>)`` when it
is 0 (one of them holds in every reachable state). A transition (c, c') becomes the action
``a<k>``: precondition every fact of c (the before-state, all N bits), effects the flips only:
for each i with c_i != c'_i, add the fact of c'_i and delete that of c_i. The problem's initial
state is every fact of the start code; its goal every fact of the goal code.

The PDDL texts (`domain_pddl`, `problem_pddl`) are what a planner such as Fast Downward reads;
`AMA1Planner` gives pyperplan the same grounded task directly (see its docstring).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pyperplan.grounding import ground
from pyperplan.heuristics.blind import BlindHeuristic
from pyperplan.pddl.parser import Parser
from pyperplan.search.a_star import astar_search
from pyperplan.task import Operator, Task

DOMAIN_NAME = "ama1"


def _facts(code: np.ndarray) -> list[str]:
    return [f"(b{i})" if bit else f"(nb{i})" for i, bit in enumerate(code.tolist())]


def _flip(before: np.ndarray, after: np.ndarray) -> tuple[list[str], list[str]]:
    """The add and delete lists of the move from code `before` to code `after` (N,) each."""
    changed = np.flatnonzero(before != after).tolist()
    new, old = _facts(after), _facts(before)
    return [new[i] for i in changed], [old[i] for i in changed]


def domain_pddl(transitions: np.ndarray) -> str:
    """The AMA1 domain of `transitions` (M, 2, N) uint8 {0, 1}, row k = (c, c'): action a<k> per
    row. ValueError on a bad shape or non-binary entries."""
    t = np.asarray(transitions)
    if t.ndim != 3 or t.shape[1] != 2 or len(t) == 0 or not np.isin(t, (0, 1)).all():
        raise ValueError(f"transitions must be (M >= 1, 2, N) of 0/1; got shape {t.shape}")
    bits = t.shape[2]
    predicates = " ".join(f"(b{i}) (nb{i})" for i in range(bits))
    actions = []
    for k, (before, after) in enumerate(t):
        add, delete = _flip(before, after)
        effect = " ".join(add + [f"(not {f})" for f in delete])
        actions.append(f"  (:action a{k}\n   :parameters ()\n   :precondition (and {' '.join(_facts(before))})\n"
                       f"   :effect (and {effect}))")
    return (f"(define (domain {DOMAIN_NAME})\n  (:requirements :strips)\n  (:predicates {predicates})\n"
            + "\n".join(actions) + ")\n")


def problem_pddl(start: np.ndarray, goal: np.ndarray) -> str:
    """The problem from code `start` (N,) to code `goal` (N,) in the AMA1 domain."""
    return (f"(define (problem plan) (:domain {DOMAIN_NAME})\n  (:init {' '.join(_facts(np.asarray(start)))})\n"
            f"  (:goal (and {' '.join(_facts(np.asarray(goal)))})))\n")


def operators(transitions: np.ndarray) -> list[Operator]:
    """The grounded STRIPS operators of `domain_pddl(transitions)` (M, 2, N), built directly:
    operator k is action a<k>, named "(a<k>)" as pyperplan's grounding names it."""
    out = []
    for k, (before, after) in enumerate(np.asarray(transitions)):
        add, delete = _flip(before, after)
        out.append(Operator(f"(a{k})", _facts(before), add, delete))
    return out


def parse(domain: str, problem: str) -> Task:
    """pyperplan's grounded task of PDDL texts `domain` and `problem` (its parser and grounding,
    keeping every operator and fact)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = Path(tmp) / "domain.pddl", Path(tmp) / "problem.pddl"
        for path, text in zip(paths, (domain, problem)):
            path.write_text(text)
        parser = Parser(*map(str, paths))
        parsed = parser.parse_problem(parser.parse_domain())
    return ground(parsed, remove_statics_from_initial_state=False, remove_irrelevant_operators=False)


class AMA1Planner:
    """AMA1 over `transitions` (M, 2, N) uint8, solved by pyperplan: any start/goal pair by A*
    with the blind heuristic (unit costs: a shortest plan). The grounded task is handed to
    pyperplan through its Python API (`operators`, identical to parsing `domain_pddl`'s text:
    tests/test_latplan_pddl.py), since its PDDL parser takes about 10 ms per 36-bit action."""

    def __init__(self, transitions: np.ndarray):
        self.transitions = np.asarray(transitions, dtype=np.uint8)
        self.operators = operators(self.transitions)
        bits = self.transitions.shape[2]
        self.facts = frozenset(f"({p}{i})" for i in range(bits) for p in ("b", "nb"))

    def plan(self, start: np.ndarray, goal: np.ndarray) -> list[np.ndarray] | None:
        """The codes [start, ..., goal] (each (N,)) visited by a shortest plan, or None when the
        planner finds none (the goal is unreachable by the observed transitions)."""
        init, goals = (frozenset(_facts(np.asarray(c))) for c in (start, goal))
        task = Task("plan", self.facts, init, goals, self.operators)
        solution = astar_search(task, BlindHeuristic(task))
        if solution is None:
            return None
        return [np.asarray(start, dtype=np.uint8)] + [self.transitions[int(op.name[2:-1]), 1] for op in solution]


def check_plan(transitions: np.ndarray, codes: Sequence[np.ndarray]) -> bool:
    """True when each consecutive pair of `codes` is one of the `transitions` (M, 2, N)."""
    known = {(a.tobytes(), b.tobytes()) for a, b in np.asarray(transitions, dtype=np.uint8)}
    return all((np.asarray(a, np.uint8).tobytes(), np.asarray(b, np.uint8).tobytes()) in known
               for a, b in zip(codes, codes[1:]))
