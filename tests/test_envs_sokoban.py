"""rlx.envs.sokoban: pushes derived by hand on tiny levels; generated levels solved by an
independent breadth-first search over (player, boxes) written here."""

from collections import deque

import pytest

from rlx.envs.sokoban import Sokoban, make_level, parse_level

DIRS = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def solve(level: str, limit: int = 200000):
    """Shortest push/move sequence by BFS (None if unsolvable within `limit` states)."""
    rows = level.split("\n")
    walls = {(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "#"}
    boxes = frozenset((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "$*")
    goals = frozenset((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in ".*+")
    me = next((r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "@+")
    start = (me, boxes)
    prev = {start: None}
    todo = deque([start])
    while todo and len(prev) < limit:
        state = todo.popleft()
        p, b = state
        if b == goals:
            path = []
            while prev[state] is not None:
                state, move = prev[state]
                path.append(move)
            return path[::-1]
        for name, (dr, dc) in DIRS.items():
            q = (p[0] + dr, p[1] + dc)
            if q in walls:
                continue
            nb = b
            if q in b:
                z = (q[0] + dr, q[1] + dc)
                if z in walls or z in b:
                    continue
                nb = (b - {q}) | {z}
            nxt = (q, frozenset(nb))
            if nxt not in prev:
                prev[nxt] = (state, name)
                todo.append(nxt)
    return None


def test_one_push_solves_a_corridor():
    env = Sokoban()
    obs = env.reset({"level": "#####\n#@$.#\n#####"}, seed=0)
    assert obs.startswith("#####\n#@$.#\n#####")
    start = env.initial_state_id
    # Cells are numbered row * 5 + col in a 3 x 5 map (n = 15): player (1, 1) = 6, box (1, 2) = 7.
    assert start == 6 + 15 * 7
    r = env.step("left")                          # into the wall: nothing moves, a valid action
    assert (r.info["state_id"], r.info["valid_action"], r.done) == (start, True, False)
    r = env.step("wait")
    assert (r.info["state_id"], r.info["valid_action"]) == (start, False)
    r = env.step("push it right")
    assert r.done and r.reward == 1.0 and r.info["solved"]
    assert r.observation.startswith("#####\n# @*#\n#####")
    assert r.info["state_id"] == 7 + 15 * 8


def test_blocked_pushes_and_the_step_budget():
    env = Sokoban()
    env.reset({"level": "######\n#@$$.#\n#   .#\n######", "max_steps": 3}, seed=0)
    s0 = env.initial_state_id
    assert env.step("right").info["state_id"] == s0       # two boxes in a row do not move
    env.step("down")
    r = env.step("right")
    assert r.done and r.reward == 0.0 and not r.info["solved"]    # the budget of 3 moves
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("up")


def test_level_errors_name_the_problem():
    with pytest.raises(ValueError, match="no player"):
        parse_level("####\n#$.#\n####")
    with pytest.raises(ValueError, match="2 boxes for 1 targets"):
        parse_level("#####\n#@$$.#\n#####")
    with pytest.raises(ValueError, match="not enclosed by walls at row 1, column 4"):
        parse_level("####\n#@$. \n####")
    with pytest.raises(ValueError, match="unknown symbol 'x'"):
        parse_level("####\n#@x.#\n####")


@pytest.mark.parametrize("boxes", [1, 2])
def test_generated_levels_are_deterministic_and_solvable(boxes):
    for seed in range(8):
        level = make_level(5, 5, boxes=boxes, wall_prob=0.1, scramble=20, level_seed=seed)
        assert level == make_level(5, 5, boxes=boxes, wall_prob=0.1, scramble=20, level_seed=seed)
        _, b, t, _ = parse_level(level)
        assert len(b) == boxes and b != t
        path = solve(level)
        assert path, (seed, level)
        env = Sokoban()                          # the BFS's moves solve the level in the env too
        env.reset({"level": level, "max_steps": len(path)}, seed=0)
        rs = [env.step(m) for m in path]
        assert rs[-1].reward == 1.0 and rs[-1].done and not any(r.done for r in rs[:-1])


def test_expert_plays_a_shortest_solution_and_gives_up_when_stuck():
    env = Sokoban()
    env.reset({"level": "######\n#@$ .#\n######"}, seed=0)
    assert env.expert_action() == "right"                  # two pushes right, by hand
    env.step("right")
    assert env.expert_action() == "right"
    assert env.step("right").reward == 1.0
    # The box in the top-left corner can never move again: no solution, no expert move.
    env.reset({"level": "#####\n#$  #\n#  .#\n# @ #\n#####"}, seed=0)
    assert env.expert_action() is None
    for seed in range(8):                                  # as short as the independent BFS's
        level = make_level(5, 5, boxes=2, wall_prob=0.1, scramble=20, level_seed=seed)
        env.reset({"level": level, "max_steps": 100}, seed=0)
        n, r = 0, None
        while not env.done:
            r = env.step(env.expert_action())
            n += 1
        assert r.reward == 1.0 and n == len(solve(level)), (seed, level)


def test_neighbors_line_lists_adjacent_then_beyond_cells():
    env = Sokoban()
    obs = env.reset({"level": "#####\n#@$.#\n#####", "neighbors": True, "hint": False}, seed=0)
    # Player (1, 1): up (0, 1) '#', down (2, 1) '#', left (1, 0) '#', right (1, 2) '$';
    # two away: up and down and left are off the map ('#'), right (1, 3) is the target '.'.
    assert obs == "#####\n#@$.#\n#####\n###$###."
    obs = env.step("right").observation                   # the push: player (1, 2), box on target
    assert obs == "#####\n# @*#\n#####\n## *####"
