"""A text gridworld in the style of FrozenLake: reach the goal, avoid the holes.

Each task is a square map of `size` x `size` cells drawn from the task's `map_seed`:
`S` the start (top-left), `G` the goal (bottom-right), `H` holes (each other cell with
probability `hole_prob`), `.` frozen ice; maps are redrawn until a path from S to G
avoids every hole (breadth-first search), so every task is solvable. The observation
shows the map with the agent as `A` and lists the moves; an action is the last of the
words up / down / left / right in the model's text (case-insensitive). A move off the
map keeps the agent in place (a valid action); text without a move is an invalid action
(the agent stays, `valid_action` False). Reward 1 on reaching G; stepping on a hole or
reaching G ends the episode, as does `max_steps` moves.

`state_id` = the agent's cell index row * size + col: the same cell of one task is the
same state (GiGPO's anchor states are grouped within a task's episodes).

Task option "hint" (default True) appends the instruction line to every observation;
False shows the map alone (the CPU configs: a character-level model reads ~20 tokens a
turn instead of ~95, and learns the format from the warm start). Option "neighbors"
(default False) adds a line of the four cells next to the agent, in the order up,
down, left, right (`#` off the map), e.g. `.H#.`: what a small model would otherwise
have to learn to read off the 2-D layout of the map. `expert_action()` is
a shortest safe path's next move (BFS), the demonstrations of the SFT warm start.
"""

from __future__ import annotations

import re
from collections import deque

import numpy as np

from rlx.envs.base import StepResult

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
_MOVE_RE = re.compile(r"\b(up|down|left|right)\b", re.IGNORECASE)


def make_map(size: int, hole_prob: float, map_seed: int) -> list[str]:
    """A solvable map (rows of S/G/H/.), deterministic in its arguments."""
    if size < 2:
        raise ValueError(f"gridworld: size must be >= 2, got {size}")
    if not 0.0 <= hole_prob < 1.0:
        raise ValueError(f"gridworld: hole_prob must be in [0, 1), got {hole_prob}")
    rng = np.random.default_rng(map_seed)
    while True:
        holes = rng.random((size, size)) < hole_prob
        holes[0, 0] = holes[-1, -1] = False
        if _reachable(holes):
            rows = [["H" if h else "." for h in row] for row in holes]
            rows[0][0], rows[-1][-1] = "S", "G"
            return ["".join(r) for r in rows]


def distances(start: tuple[int, int], is_open) -> dict[tuple[int, int], int]:
    """Moves from `start` to every cell reachable by moves between cells where
    `is_open(cell)` (breadth-first search)."""
    dist, todo = {start: 0}, deque([start])
    while todo:
        r, c = todo.popleft()
        for dr, dc in MOVES.values():
            q = (r + dr, c + dc)
            if q not in dist and is_open(q):
                dist[q] = dist[(r, c)] + 1
                todo.append(q)
    return dist


def reachable(start: tuple[int, int], is_open) -> set[tuple[int, int]]:
    """Cells reachable from `start` by moves between cells where `is_open(cell)` (BFS)."""
    return set(distances(start, is_open))


def _reachable(holes: np.ndarray) -> bool:
    n = holes.shape[0]
    return (n - 1, n - 1) in reachable((0, 0), lambda q: 0 <= q[0] < n and 0 <= q[1] < n and not holes[q])


def random_move(rng) -> str:
    """A uniformly random move (the warm starts mix these into the experts' moves)."""
    return list(MOVES)[rng.integers(len(MOVES))]


def parse_action(text: str) -> str | None:
    """The last move word in `text`, lower-cased; None if there is none."""
    found = _MOVE_RE.findall(text)
    return found[-1].lower() if found else None


class GridWorld:
    """One episode at a time; `reset(task, seed)` with task {"size", "hole_prob", "map_seed"}
    (defaults 4, 0.2, and `seed`), optional "max_steps" (default 2 * size * size) and
    "hint" (default True) and "neighbors" (default False)."""
    TASK_KEYS = ("size", "hole_prob", "map_seed", "max_steps", "hint", "neighbors")
    SEED_KEY = "map_seed"          # the task key that draws a task (the episodes kind numbers tasks by it)

    def reset(self, task: dict, seed: int) -> str:
        self.size = int(task.get("size", 4))
        self.map = make_map(self.size, float(task.get("hole_prob", 0.2)), int(task.get("map_seed", seed)))
        self.max_steps = int(task.get("max_steps", 2 * self.size * self.size))
        self.hint = bool(task.get("hint", True))
        self.neighbors = bool(task.get("neighbors", False))
        self.pos = (0, 0)
        self.steps = 0
        self.done = False
        return self.render()

    @property
    def initial_state_id(self) -> int:
        return 0

    def render(self) -> str:
        rows = [list(r) for r in self.map]
        rows[self.pos[0]][self.pos[1]] = "A"
        grid = "\n".join("".join(r) for r in rows)
        if self.neighbors:
            n = self.size
            near = [self.map[r][c] if 0 <= r < n and 0 <= c < n else "#"
                    for r, c in ((self.pos[0] + dr, self.pos[1] + dc) for dr, dc in MOVES.values())]
            grid += "\n" + "".join(near)
        if not self.hint:
            return grid
        return f"{grid}\nYou are A. Reach G, avoid H. Answer with one move: up, down, left or right."

    def expert_action(self) -> str:
        """The first move of a shortest path from the agent to G that avoids the holes (ties
        broken in the order up, down, left, right). Maps are solvable from the start; from
        any cell the agent can stand on (not a hole) G stays reachable, since every move
        between open cells is reversible."""
        n = self.size

        def is_open(q):
            return 0 <= q[0] < n and 0 <= q[1] < n and self.map[q[0]][q[1]] != "H"
        dist = distances((n - 1, n - 1), is_open)        # moves are symmetric: distances to G
        best = None
        for name, (dr, dc) in MOVES.items():
            q = (self.pos[0] + dr, self.pos[1] + dc)
            if q in dist and (best is None or dist[q] < best[0]):
                best = (dist[q], name)
        if best is None:
            raise RuntimeError(f"gridworld: no path to G from {self.pos}")
        return best[1]

    def random_action(self, rng) -> str:
        return random_move(rng)

    def step(self, action: str) -> StepResult:
        if self.done:
            raise RuntimeError("gridworld: step() after the episode ended; reset() first")
        self.steps += 1
        move = parse_action(action)
        reward = 0.0
        if move is not None:
            dr, dc = MOVES[move]
            r, c = self.pos[0] + dr, self.pos[1] + dc
            if 0 <= r < self.size and 0 <= c < self.size:
                self.pos = (r, c)
        cell = self.map[self.pos[0]][self.pos[1]]
        if cell == "G":
            reward, self.done = 1.0, True
        elif cell == "H" or self.steps >= self.max_steps:
            self.done = True
        info = {"state_id": self.pos[0] * self.size + self.pos[1], "valid_action": move is not None,
                "cell": cell}
        return StepResult(self.render(), reward, self.done, info)
