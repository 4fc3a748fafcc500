"""The 8-puzzle and its MNIST rendering (Asai & Fukunaga, AAAI 2018, "Classical planning in deep
latent space", Sec. 5: the MNIST 8-puzzle).

A state is a permutation of 0..8 as an int array of 9: ``state[p]`` is the tile at position p
(row p // 3, column p % 3); tile 0 is the blank. A move swaps the blank with a tile next to it
(up, down, left, right). The goal is (0, 1, ..., 8). A state is reachable from the goal iff the
number of inversions among its tiles 1..8 is even (Johnson & Story 1879; for an odd board width
the blank's row does not enter), so half of the 9! = 362,880 permutations, 181,440, are states.

Rendering: tile t is a 14x14 image of digit t (one MNIST exemplar per digit, 2x2-mean pooled from
28x28, `mnist_tiles`); a state is the 42x42 image of its 3x3 tiles, flattened row-major to 1764
pixels. Classification of an image back to a state is nearest-template matching per tile (squared
Euclidean distance to the 9 tile images, `classify`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

SIDE = 3  # tiles per row and column
TILES = SIDE * SIDE
TILE_PX = 14  # pixels per tile side
IMAGE_PX = SIDE * TILE_PX  # 42
PIXELS = IMAGE_PX * IMAGE_PX  # 1764
GOAL = tuple(range(TILES))
STATES = math.factorial(TILES) // 2  # 181,440 reachable states
_FACT = np.array([math.factorial(TILES - 1 - i) for i in range(TILES)], dtype=np.int64)
_NEIGHBOURS = tuple(
    tuple(q for q in (p - SIDE, p + SIDE, p - 1 if p % SIDE else -1, p + 1 if p % SIDE < SIDE - 1 else -1)
          if 0 <= q < TILES)
    for p in range(TILES)
)


def is_state(state: Sequence[int]) -> bool:
    """True when `state` is a permutation of 0..8 (of either parity)."""
    return len(state) == TILES and sorted(int(t) for t in state) == list(range(TILES))


def solvable(states: np.ndarray) -> np.ndarray:
    """(N, 9) permutations -> (N,) bool: reachable from the goal (even inversions among tiles 1..8)."""
    s = np.asarray(states)
    tiles = s[:, :, None], s[:, None, :]
    upper = np.triu(np.ones((TILES, TILES), dtype=bool), 1)
    inversions = ((tiles[0] > tiles[1]) & (tiles[1] > 0) & upper).sum((1, 2))
    return inversions % 2 == 0


def successors(state: Sequence[int]) -> list[tuple[int, ...]]:
    """The states one move away: the blank swapped with each adjacent tile (2 to 4 of them)."""
    s = tuple(int(t) for t in state)
    b = s.index(0)
    out = []
    for q in _NEIGHBOURS[b]:
        t = list(s)
        t[b], t[q] = t[q], 0
        out.append(tuple(t))
    return out


def is_move(a: Sequence[int], b: Sequence[int]) -> bool:
    """True when b follows from a by one legal move."""
    return is_state(a) and tuple(int(t) for t in b) in successors(a)


def valid_plan(states: Sequence[Sequence[int]]) -> bool:
    """True when every state is a permutation of 0..8 and each follows from the one before by a
    legal move (a plan of no move, one state, is valid)."""
    return all(is_state(s) for s in states) and all(is_move(a, b) for a, b in zip(states, states[1:]))


def distances(start: Sequence[int], max_depth: int) -> dict[tuple[int, ...], int]:
    """Breadth-first search from `start`: every state within `max_depth` moves -> its distance
    (the optimal plan length)."""
    start = tuple(int(t) for t in start)
    dist = {start: 0}
    frontier = deque([start])
    while frontier:
        s = frontier.popleft()
        if dist[s] == max_depth:
            continue
        for t in successors(s):
            if t not in dist:
                dist[t] = dist[s] + 1
                frontier.append(t)
    return dist


def rank(states: np.ndarray) -> np.ndarray:
    """(N, 9) permutations -> (N,) int64 Lehmer-code ranks in [0, 9!) (lexicographic order)."""
    s = np.asarray(states)
    smaller_after = (s[:, :, None] > s[:, None, :]) & np.triu(np.ones((TILES, TILES), dtype=bool), 1)
    return (smaller_after.sum(2) * _FACT).sum(1).astype(np.int64)


def unrank(ranks: np.ndarray) -> np.ndarray:
    """(N,) Lehmer-code ranks -> (N, 9) permutations (the inverse of `rank`)."""
    r = np.asarray(ranks, dtype=np.int64).copy()
    out = np.empty((len(r), TILES), dtype=np.int64)
    left = np.tile(np.arange(TILES), (len(r), 1))
    for i in range(TILES):
        digit, r = np.divmod(r, _FACT[i])
        out[:, i] = left[np.arange(len(r)), digit]
        keep = np.ones_like(left, dtype=bool)
        keep[np.arange(len(r)), digit] = False
        left = left[keep].reshape(len(r), TILES - 1 - i)
    return out


def random_states(n: int, rng: np.random.Generator, distinct: bool = True) -> np.ndarray:
    """(n, 9) states drawn uniformly from the 181,440 reachable ones (permutations of even parity),
    pairwise distinct when `distinct`."""
    out = np.empty((0, TILES), dtype=np.int64)
    while len(out) < n:
        draw = np.argsort(rng.random((2 * (n - len(out)) + 16, TILES)), axis=1)
        out = np.concatenate([out, draw[solvable(draw)]])
        if distinct:
            _, first = np.unique(rank(out), return_index=True)
            out = out[np.sort(first)]
    return out[:n]


def mnist_tiles(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tile images: for each digit 0..8 the first image of that label in `images` (N, 784)
    uint8, 2x2-mean pooled to 14x14 and rounded. Returns (tiles (9, 14, 14) uint8, the chosen
    indices (9,)). ValueError when a digit is missing."""
    index = []
    for d in range(TILES):
        hits = np.flatnonzero(labels == d)
        if len(hits) == 0:
            raise ValueError(f"no image of digit {d} among the {len(labels)} labels")
        index.append(int(hits[0]))
    digits = images[index].reshape(TILES, TILE_PX, 2, TILE_PX, 2).astype(np.float64).mean((2, 4))
    return np.rint(digits).astype(np.uint8), np.array(index)


def render(states: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """(N, 9) states and (9, 14, 14) tiles -> (N, 1764) images of the tiles' dtype, row-major 42x42."""
    s = np.asarray(states)
    grid = tiles[s].reshape(len(s), SIDE, SIDE, TILE_PX, TILE_PX)
    return grid.transpose(0, 1, 3, 2, 4).reshape(len(s), PIXELS)


def tiles_of(images: np.ndarray) -> np.ndarray:
    """(N, 1764) images -> (N, 9, 196): the flattened 14x14 tile at each position."""
    grid = np.asarray(images).reshape(-1, SIDE, TILE_PX, SIDE, TILE_PX)
    return grid.transpose(0, 1, 3, 2, 4).reshape(-1, TILES, TILE_PX * TILE_PX)


def templates(image: np.ndarray, state: Sequence[int]) -> np.ndarray:
    """The 9 tile images (9, 196) read off one rendered image (1764,) of a known state: row t is
    the tile of digit t."""
    found = tiles_of(image[None])[0]
    out = np.empty_like(found)
    out[np.asarray(state)] = found
    return out


def classify(images: np.ndarray, tile_templates: np.ndarray) -> np.ndarray:
    """(N, 1764) images (any scale, the templates' scale) -> (N, 9) int64: at each position the
    digit whose template (9, 196) is nearest in squared Euclidean distance. A result need not be a
    permutation (two positions may read as the same digit); see `is_state`."""
    t = tiles_of(images).astype(np.float64)
    ref = np.asarray(tile_templates, dtype=np.float64)
    d = (t**2).sum(-1)[..., None] - 2 * t @ ref.T + (ref**2).sum(-1)
    return d.argmin(-1)
