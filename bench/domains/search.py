"""Blind breadth-first search over an explicit graph: optimal plans when every action costs 1
(the blind search of Latplan's AMA1 planning, Asai & Fukunaga 2018, Sec. 4, written in Python
instead of Fast Downward's A* with the blind heuristic; both return a shortest plan)."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping, Sequence


def bfs_path(graph: Mapping[Hashable, Sequence[Hashable]], start: Hashable, goal: Hashable) -> list[Hashable] | None:
    """A shortest path [start, ..., goal] along the directed edges `graph` (node -> successors), or
    None when the goal is unreachable. Ties go to the first successor listed."""
    parent: dict[Hashable, Hashable | None] = {start: None}
    frontier = deque([start])
    while frontier:
        node = frontier.popleft()
        if node == goal:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return path[::-1]
        for nxt in graph.get(node, ()):
            if nxt not in parent:
                parent[nxt] = node
                frontier.append(nxt)
    return None
