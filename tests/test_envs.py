"""rlx.envs: the text gridworld (episodes derived by hand on small maps) and EnvPool's
handling of environments that raise, hang or return the wrong thing."""

import threading
import time

import pytest

from rlx.envs import EnvPool, GridWorld, StepResult
from rlx.envs.gridworld import make_map, parse_action


def test_maps_are_deterministic_and_solvable():
    for seed in range(20):
        m = make_map(5, 0.4, seed)
        assert m == make_map(5, 0.4, seed)
        assert m[0][0] == "S" and m[-1][-1] == "G" and len(m) == 5 and all(len(r) == 5 for r in m)
    assert make_map(3, 0.0, 7) == ["S..", "...", "..G"]
    assert any("H" in "".join(make_map(5, 0.4, s)) for s in range(20))
    with pytest.raises(ValueError, match="size must be >= 2"):
        make_map(1, 0.1, 0)


def test_parse_action_takes_the_last_move_word():
    assert parse_action("I think Up, no: RIGHT.") == "right"
    assert parse_action("uptown") is None and parse_action("") is None


def test_an_episode_on_an_open_map():
    # 3x3 without holes: S at (0, 0), G at (2, 2). Hand-derived: "up" from the start
    # leaves the map, so the agent stays (state 0, a valid action); then right, right,
    # down, down visit cells 1, 2, 5, 8 (= row * 3 + col) and the last one is G.
    env = GridWorld()
    obs = env.reset({"size": 3, "hole_prob": 0.0}, seed=0)
    assert obs.splitlines()[:3] == ["A..", "...", "..G"]
    r = env.step("up")
    assert (r.info["state_id"], r.info["valid_action"], r.reward, r.done) == (0, True, 0.0, False)
    r = env.step("jump!")                       # no move word: invalid, the agent stays
    assert (r.info["state_id"], r.info["valid_action"], r.done) == (0, False, False)
    ids = []
    for a in ("right", "go right", "down", "down"):
        r = env.step(a)
        ids.append(r.info["state_id"])
    assert ids == [1, 2, 5, 8] and r.reward == 1.0 and r.done
    assert r.observation.splitlines()[2] == "..A"
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("up")


def test_holes_and_the_step_budget_end_episodes():
    env = GridWorld()
    env.reset({"size": 2, "hole_prob": 0.0}, seed=0)
    env.map = ["S.", "HG"]                       # a hand-made map: a hole below the start
    r = env.step("down")
    assert r.done and r.reward == 0.0 and r.info["cell"] == "H" and r.info["state_id"] == 2
    env.reset({"size": 3, "hole_prob": 0.0, "max_steps": 2}, seed=0)
    assert not env.step("left").done and env.step("left").done


class _Scripted:
    """Reset gives "start"; step(action) does what the action says."""

    def reset(self, task, seed):
        if task.get("fail_reset"):
            raise OSError("no such level")
        return "start"

    @property
    def initial_state_id(self):
        return 0

    def step(self, action):
        if action == "raise":
            raise ValueError("simulator crashed")
        if action == "hang":
            time.sleep(3.0)
        if action == "bad":
            return ("obs", 1.0, False, {})
        return StepResult(f"saw {action}", 1.0, action == "stop", {"state_id": 1, "valid_action": True})


def test_pool_ends_failing_episodes_and_goes_on():
    pool = EnvPool(_Scripted, workers=2, step_timeout_s=0.5)
    obs = pool.reset([{}, {}, {}, {}, {"fail_reset": True}], [0, 1, 2, 3, 4])
    assert obs == ["start"] * 4 + [None] and pool.done == [False] * 4 + [True]
    res = pool.step(["go", "raise", "hang", "bad", None])
    assert res[0].observation == "saw go" and res[0].reward == 1.0 and not res[0].done
    for i, why in ((1, "ValueError: simulator crashed"), (2, "timeout"), (3, "TypeError")):
        assert res[i].done and res[i].reward == 0.0 and res[i].info["error"].startswith(why), res[i]
    assert res[4] is None
    assert (pool.stats.errors, pool.stats.timeouts) == (3, 1)     # the failed reset counts too
    assert "no such level" in pool.stats.first_error
    # The hung step's thread still sleeps; the next step gets fresh threads and the limit.
    t0 = time.perf_counter()
    res = pool.step(["stop", None, None, None, None])
    assert res[0].done and time.perf_counter() - t0 < 0.5
    with pytest.raises(ValueError, match="episode 1 has ended"):
        pool.step([None, "go", None, None, None])
    pool.close()


def test_pool_steps_episodes_concurrently():
    # Two steps that each wait for the other: they finish only if run at the same time.
    barrier = threading.Barrier(2, timeout=5)

    class Meeting(_Scripted):
        def step(self, action):
            barrier.wait()
            return super().step(action)

    pool = EnvPool(Meeting, workers=2, step_timeout_s=10)
    pool.reset([{}, {}], [0, 1])
    res = pool.step(["a", "b"])
    assert [r.observation for r in res] == ["saw a", "saw b"]
    pool.close()


def test_expert_action_follows_a_shortest_safe_path_and_hint_off_shows_the_map_only():
    # Hand-made map S.. / .H. / ..G: from (0, 0) both ways round the hole take 4 moves, the
    # tie goes to the first of up, down, left, right -> "down"; from (0, 1) "down" is the
    # hole and "right" (2 moves left) beats "left" (4) -> "right".
    env = GridWorld()
    obs = env.reset({"size": 3, "hole_prob": 0.0, "hint": False}, seed=0)
    assert obs == "A..\n...\n..G"
    env.map = ["S..", ".H.", "..G"]
    assert env.expert_action() == "down"
    env.pos = (0, 1)
    assert env.expert_action() == "right"
    env.pos = (1, 2)
    assert env.expert_action() == "down"


def test_the_neighbors_line_lists_up_down_left_right():
    # Map S.. / .H. / ..G with the agent at (0, 1): up is off the map (#), down the hole,
    # left the start cell S, right ice.
    env = GridWorld()
    env.reset({"size": 3, "hole_prob": 0.0, "hint": False, "neighbors": True}, seed=0)
    env.map = ["S..", ".H.", "..G"]
    env.pos = (0, 1)
    assert env.render() == "SA.\n.H.\n..G\n#HS."
