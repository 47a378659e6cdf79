"""A small procedural Sokoban as text: push every box onto a target.

Levels: a walled rectangular room of `width` x `height` interior cells with a few inner
walls (each cell with probability `wall_prob`, the open cells kept connected), `boxes`
boxes placed on targets and the player on a free cell; then `scramble` random reverse
moves — the player steps, or steps back pulling a box it stands next to — move the
boxes off their targets. Every pull is the reverse of a legal push, so every level is
solvable (by undoing the pulls). Deterministic in the task's `level_seed`.

Symbols: `#` wall, `.` target, `$` box, `*` box on a target, `@` player, `+` player on
a target, ` ` floor. An action is the last of up / down / left / right in the model's
text; text without one is an invalid action (nothing moves, `valid_action` False). A move
into a wall, or a push into a wall or another box, leaves everything in place (valid).
Reward 1 when every box is on a target (the episode ends), else 0; `max_steps` moves
(default 30) end it too. (verl-agent's Sokoban shapes the reward — +1 / -1 per box on
or off a target, -0.1 per step, +10 solved; rlx keeps the outcome only: GiGPO's and
GRPO's advantages are computed from it.)

`state_id` = player cell + n * (sorted box cells in base n), n = cells in the map: the
same player and box positions are the same state.

`expert_action()` is the first move of a shortest solution from the current state
(breadth-first search over player and box positions, ties broken up, down, left,
right), or None where no solution exists (a box pushed into a corner): the SFT warm
start's demonstrations. Task option "neighbors" (default False) adds a line of the
four cells next to the player and the four cells beyond them (up, down, left, right,
then the same beyond; `#` off the map): what a push needs to know, which a small model
would otherwise read off the 2-D layout.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from rlx.envs.base import StepResult
from rlx.envs.gridworld import MOVES, parse_action, random_move, reachable


def parse_level(text: str) -> tuple[list[str], set, set, tuple]:
    """(walls-and-floor rows, box cells, target cells, player cell) of a level in the
    symbols above; a ValueError names what is missing."""
    rows = text.strip("\n").split("\n")
    boxes, targets, player = set(), set(), None
    grid = []
    for r, row in enumerate(rows):
        line = []
        for c, ch in enumerate(row):
            if ch in "$*":
                boxes.add((r, c))
            if ch in ".*+":
                targets.add((r, c))
            if ch in "@+":
                if player is not None:
                    raise ValueError("sokoban level: more than one player")
                player = (r, c)
            if ch not in "#.$*@+ ":
                raise ValueError(f"sokoban level: unknown symbol {ch!r} at row {r}, column {c}")
            line.append("#" if ch == "#" else " ")
        grid.append("".join(line))
    for r, row in enumerate(grid):
        for c, ch in enumerate(row):
            if ch == " " and any(not (0 <= r + dr < len(grid) and 0 <= c + dc < len(grid[r + dr]))
                                 for dr, dc in MOVES.values()):
                raise ValueError(f"sokoban level: not enclosed by walls at row {r}, column {c}")
    if player is None:
        raise ValueError("sokoban level: no player (@ or +)")
    if not boxes or len(boxes) != len(targets):
        raise ValueError(f"sokoban level: {len(boxes)} boxes for {len(targets)} targets")
    return grid, boxes, targets, player


def _open_cells(grid) -> list[tuple[int, int]]:
    return [(r, c) for r, row in enumerate(grid) for c, ch in enumerate(row) if ch == " "]


def _connected(cells: list) -> bool:
    cellset = set(cells)
    return len(reachable(cells[0], cellset.__contains__)) == len(cellset)


def make_level(width: int = 5, height: int = 5, boxes: int = 1, wall_prob: float = 0.1, scramble: int = 20,
               level_seed: int = 0) -> str:
    """A solvable level (see the module docstring) as text."""
    if width < 3 or height < 3:
        raise ValueError(f"sokoban: width and height must be >= 3, got {width} x {height}")
    if boxes < 1:
        raise ValueError(f"sokoban: boxes must be >= 1, got {boxes}")
    rng = np.random.default_rng(level_seed)
    for _ in range(1000):
        inner = rng.random((height, width)) < wall_prob
        grid = ["#" * (width + 2)] + ["#" + "".join("#" if w else " " for w in row) + "#" for row in inner] \
            + ["#" * (width + 2)]
        cells = _open_cells(grid)
        if len(cells) < boxes + 2 or not _connected(cells):
            continue
        pick = rng.choice(len(cells), boxes + 1, replace=False)
        targets = {cells[i] for i in pick[:boxes]}
        box = set(targets)
        player = cells[pick[-1]]
        for _ in range(scramble):
            dr, dc = list(MOVES.values())[int(rng.integers(4))]
            nxt = (player[0] + dr, player[1] + dc)
            if grid[nxt[0]][nxt[1]] == "#" or nxt in box:
                continue
            behind = (player[0] - dr, player[1] - dc)     # a box behind the player comes along
            if behind in box and rng.random() < 0.7:
                box.remove(behind)
                box.add(player)
            player = nxt
        if box == targets:
            continue                                     # still solved: draw again
        return render(grid, box, targets, player)
    raise ValueError(f"sokoban: no level found for {width} x {height}, {boxes} boxes, wall_prob {wall_prob}")


def render(grid, boxes, targets, player) -> str:
    rows = [list(r) for r in grid]
    for r, c in targets:
        rows[r][c] = "."
    for r, c in boxes:
        rows[r][c] = "*" if (r, c) in targets else "$"
    rows[player[0]][player[1]] = "+" if player in targets else "@"
    return "\n".join("".join(r) for r in rows)


def solve(grid, boxes, targets, player, max_states: int = 200_000) -> list[str] | None:
    """A shortest list of moves that puts every box on a target (breadth-first search over
    player and box positions; ties broken in the order up, down, left, right), [] if
    solved already, None if no solution exists within `max_states` states."""
    start = (player, frozenset(boxes))
    parent = {start: None}
    todo = deque([start])
    while todo:
        state = todo.popleft()
        pl, bx = state
        if bx == targets:
            path = []
            while parent[state] is not None:
                state, move = parent[state]
                path.append(move)
            return path[::-1]
        for name, (dr, dc) in MOVES.items():
            nxt = (pl[0] + dr, pl[1] + dc)
            if grid[nxt[0]][nxt[1]] == "#":
                continue
            nb = bx
            if nxt in bx:
                beyond = (nxt[0] + dr, nxt[1] + dc)
                if grid[beyond[0]][beyond[1]] == "#" or beyond in bx:
                    continue
                nb = (bx - {nxt}) | {beyond}
            new = (nxt, nb)
            if new not in parent:
                parent[new] = (state, name)
                if len(parent) > max_states:
                    return None
                todo.append(new)
    return None


class Sokoban:
    """`reset(task, seed)`: task {"level": text} or the arguments of `make_level`
    (width, height, boxes, wall_prob, scramble; `level_seed` defaults to `seed`), and
    optional "max_steps" (default 30), "hint" (default True: the instruction line
    follows the map in every observation) and "neighbors" (default False)."""
    TASK_KEYS = ("level", "width", "height", "boxes", "wall_prob", "scramble", "level_seed", "max_steps", "hint",
                 "neighbors")
    SEED_KEY = "level_seed"

    def reset(self, task: dict, seed: int) -> str:
        level = task.get("level")
        if level is None:
            args = {k: task[k] for k in ("width", "height", "boxes", "wall_prob", "scramble") if k in task}
            level = make_level(**args, level_seed=int(task.get("level_seed", seed)))
        self.grid, self.boxes, self.targets, self.player = parse_level(level)
        self.max_steps = int(task.get("max_steps", 30))
        self.hint = bool(task.get("hint", True))
        self.neighbors = bool(task.get("neighbors", False))
        self.steps = 0
        self.done = False
        self._initial = self.state_id()
        return self.observation()

    @property
    def initial_state_id(self) -> int:
        return self._initial

    def state_id(self) -> int:
        width = max(len(r) for r in self.grid)
        n = len(self.grid) * width
        sid = 0
        for r, c in sorted(self.boxes, reverse=True):
            sid = sid * n + r * width + c
        return self.player[0] * width + self.player[1] + n * sid

    def observation(self) -> str:
        grid = render(self.grid, self.boxes, self.targets, self.player)
        if self.neighbors:
            rows = grid.split("\n")
            near = []
            for k in (1, 2):
                for dr, dc in MOVES.values():
                    r, c = self.player[0] + k * dr, self.player[1] + k * dc
                    near.append(rows[r][c] if 0 <= r < len(rows) and 0 <= c < len(rows[r]) else "#")
            grid += "\n" + "".join(near)
        if not self.hint:
            return grid
        return grid + ("\nYou are @. Push every $ onto a . (# is a wall). Answer with one move: up, down, left "
                       "or right.")

    def expert_action(self) -> str | None:
        """The first move of a shortest solution from here, or None if there is none."""
        path = solve(self.grid, self.boxes, self.targets, self.player)
        return path[0] if path else None

    def random_action(self, rng) -> str:
        return random_move(rng)

    def step(self, action: str) -> StepResult:
        if self.done:
            raise RuntimeError("sokoban: step() after the episode ended; reset() first")
        self.steps += 1
        move = parse_action(action)
        if move is not None:
            dr, dc = MOVES[move]
            nxt = (self.player[0] + dr, self.player[1] + dc)
            if self.grid[nxt[0]][nxt[1]] != "#":
                if nxt not in self.boxes:
                    self.player = nxt
                else:
                    beyond = (nxt[0] + dr, nxt[1] + dc)
                    if self.grid[beyond[0]][beyond[1]] != "#" and beyond not in self.boxes:
                        self.boxes = (self.boxes - {nxt}) | {beyond}
                        self.player = nxt
        solved = self.boxes == self.targets
        self.done = solved or self.steps >= self.max_steps
        info = {"state_id": self.state_id(), "valid_action": move is not None, "solved": solved}
        return StepResult(self.observation(), 1.0 if solved else 0.0, self.done, info)
