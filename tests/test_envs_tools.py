"""rlx.envs.tools.ToolMath: tool calls and answers on Countdown / arithmetic problems,
episodes derived by hand from the generated problems."""

import zlib

import pytest

from rlx.data import arithmetic, countdown
from rlx.envs import ENVS, EnvPool
from rlx.envs.tools import ToolMath, calculate


def test_calculator_is_exact():
    assert calculate("3*(4+1)") == "= 15"
    assert calculate(" 7 / 2 ") == "= 7/2"
    assert calculate("1/0").startswith("error:") and calculate("2**3").startswith("error:")


def test_a_countdown_episode_with_the_calculator():
    ex = countdown.generate_example(0, 1, 3, template="answer")      # numbers [4, 10], target 40
    assert (ex["numbers"], ex["target"]) == ([4, 10], 40)
    env = ToolMath()
    obs = env.reset({"level": 1}, seed=3)
    assert obs.startswith(ex["prompt"]) and "<calc>" in obs.splitlines()[-1]
    assert env.initial_state_id == zlib.crc32(b"")
    r = env.step("let me try <calc>4 + 10</calc>")
    assert (r.observation, r.reward, r.done, r.info["valid_action"]) == ("= 14", 0.0, False, True)
    assert r.info["state_id"] == zlib.crc32(b"4 + 10")
    r = env.step("hmm")                                 # neither a call nor an answer
    assert not r.info["valid_action"] and not r.done and r.info["state_id"] == zlib.crc32(b"4 + 10")
    r = env.step("<python>print(1)</python>")           # not this task's tool
    assert not r.info["valid_action"]
    r = env.step("<answer>10*4</answer>")               # the 4th step: right, and the end anyway
    assert (r.reward, r.done, r.observation) == (1.0, True, "correct")
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step("<answer>1</answer>")


def test_wrong_answers_and_the_step_budget():
    env = ToolMath()
    env.reset({"level": 1, "max_steps": 2}, seed=3)
    r = env.step("<answer>4+10</answer>")               # 14, not 40
    assert (r.reward, r.done, r.observation) == (0.0, True, "wrong")
    env.reset({"level": 1, "max_steps": 2}, seed=3)
    assert not env.step("<calc>4*10</calc>").done
    r = env.step("<calc>4*10</calc>")
    assert r.done and r.reward == 0.0                   # out of steps without an answer
    # the same calls in the same order: the same state, across episodes
    env2 = ToolMath()
    env2.reset({"level": 1, "max_steps": 2}, seed=3)
    env2.step("<calc> 4*10 </calc>")
    assert env2.state_id() == zlib.crc32(b"4*10") != r.info["state_id"]


def test_an_arithmetic_episode_with_the_python_tool():
    ex = arithmetic.generate_example(0, 1, 3, template="answer")     # 3+5 = 8
    env = ToolMath()
    obs = env.reset({"problem": "arithmetic", "level": 1, "tool": "python", "timeout_s": 10}, seed=3)
    assert obs.startswith(ex["prompt"])
    r = env.step("<python>print(3+5)</python>")
    assert (r.observation, r.info["valid_action"]) == ("8", True)
    r = env.step("<python>import socket; socket.socket()</python>")     # the sandbox refuses
    assert r.observation.startswith("error:") and "PermissionError" in r.observation
    assert env.step("<answer>8</answer>").reward == 1.0


def test_registered_and_pooled():
    assert ENVS["tool_math"] is ToolMath
    pool = EnvPool(ToolMath, workers=2, step_timeout_s=30)
    obs = pool.reset([{"level": 1, "index": i} for i in range(3)], [0, 0, 0])
    assert [o.split(".")[0] for o in obs] == [countdown.generate_example(0, 1, i)["prompt"].split(".")[0]
                                            for i in range(3)]
    res = pool.step(["<answer>0</answer>"] * 3)
    assert all(r.done and r.reward == 0.0 for r in res) and pool.stats.errors == 0
    pool.close()
    with pytest.raises(ValueError, match="tool must be one of"):
        ToolMath().reset({"tool": "shell"}, 0)


def test_expert_checks_with_the_tool_then_answers_and_compact_prompts():
    import numpy as np
    env = ToolMath()
    obs = env.reset({"level": 1, "template": "compact"}, seed=3)       # 4 10 -> 40, solution 10*4
    assert obs == "Using 4 10 make 40:\nTool: <calc></calc>"
    assert env.expert_action() == "<calc>10*4</calc>"
    env.step("<calc>4+10</calc>")                     # a wrong check: the expert calls the solution
    assert env.expert_action() == "<calc>10*4</calc>"
    env.step("<calc>10*4</calc>")                     # "= 40": the expert answers with that call
    assert env.expert_action() == "<answer>10*4</answer>"
    assert env.step(env.expert_action()).reward == 1.0
    rng = np.random.default_rng(0)
    env.reset({"level": 1}, seed=3)
    for _ in range(10):
        a = env.random_action(rng)
        assert a.startswith("<calc>") and a.endswith("</calc>") and sorted(a[6:-7].replace("+", " ").replace(
            "-", " ").replace("*", " ").replace("/", " ").split()) == ["10", "4"]
    env.reset({"problem": "arithmetic", "tool": "python"}, seed=3)         # 3+5
    assert env.expert_action() == "<python>print(3+5)</python>"
    env.step(env.expert_action())
    assert env.expert_action() == "<answer>8</answer>"
    assert env.step(env.expert_action()).reward == 1.0


def test_search_expert_tries_operations_in_order_until_the_target_shows():
    env = ToolMath()
    env.reset({"level": 1, "template": "compact", "expert": "search"}, seed=3)    # 4 10 -> 40
    assert env.expert_action() == "<calc>4+10</calc>"
    assert env.step(env.expert_action()).observation == "= 14"
    assert env.expert_action() == "<calc>4*10</calc>"
    assert env.step(env.expert_action()).observation == "= 40"
    assert env.expert_action() == "<answer>4*10</answer>"
    assert env.step(env.expert_action()).reward == 1.0
    # 10 6 -> 16 (seed 5): the first candidate is right; a budget of 2 turns is enough.
    env.reset({"level": 1, "expert": "search", "max_steps": 2}, seed=5)
    env.step(env.expert_action())
    r = env.step(env.expert_action())
    assert r.reward == 1.0 and r.done
    # A wrong call the model made itself is skipped over, not repeated.
    env.reset({"level": 1, "expert": "search"}, seed=3)
    env.step("<calc>4*10</calc>")
    assert env.expert_action() == "<answer>4*10</answer>"
    env.reset({"level": 1, "expert": "search"}, seed=3)
    env.step("<calc>4+10</calc>")
    assert env.expert_action() == "<calc>4*10</calc>"
    with pytest.raises(ValueError, match="expert='search' needs Countdown problems with two numbers"):
        env.reset({"level": 2, "expert": "search"}, seed=0)
    with pytest.raises(ValueError, match="expert must be 'solution' or 'search'"):
        env.reset({"expert": "oracle"}, seed=0)
