"""Tests for rlx.rewards: per-task checkers, format rules, the robust batch scorer.

Every expected reward is written by hand from the task's rule (comments give the reason).
"""

import time

import numpy as np
import pytest

from rlx import rewards
from rlx.rewards import check_countdown, check_numeric, format_reward, score, strict_format_ok

CD = {"task": "countdown", "numbers": [25, 5, 3], "target": 60, "use_all": True, "template": "answer",
      "answer": "(25-5)*3"}
AR = {"task": "arithmetic", "answer": "19", "template": "compact"}
GS = {"task": "gsm8k", "answer": "1200", "template": "answer"}
KK = {"task": "knights_knaves", "template": "think", "names": ["Zoe", "Ben"],
      "answer": "(1) Zoe is a knight\n(2) Ben is a knave"}

# --------------------------------------------------------------------------- countdown


@pytest.mark.parametrize("expr,ok", [
    ("(25-5)*3", True),          # 20*3 = 60
    ("3*(25-5)", True),
    ("(25 - 5) × 3", True),      # unicode times
    ("(25-5)*3 = 60", True),     # trailing "= target" allowed
    ("(25-5)*3 = 61", False),    # ... but it must be the target
    ("25*3-5", False),           # 70
    ("(25-5)*3*1", False),       # 1 is not a given number
    ("25*3-5-5-5", False),       # 5 used three times, and 60 = 75-15 only by reusing
    ("(25+5)*2", False),         # 2 not given, 3 unused
    ("60", False),               # not using the numbers
    ("(25.0-5)*3", False),       # decimals are not the given integers
    ("(25-5)*3 = 60 = 60", False),
    ("", False), (None, False),
])
def test_check_countdown(expr, ok):
    assert check_countdown(expr, [25, 5, 3], 60) is ok


def test_check_countdown_subset_rule():
    # Target 30 = 25+5 leaves 3 unused: wrong under "use all", right under "at most once".
    assert not check_countdown("25+5", [25, 5, 3], 30, use_all=True)
    assert check_countdown("25+5", [25, 5, 3], 30, use_all=False)
    assert not check_countdown("25+5+5", [25, 5, 3], 35, use_all=False)   # 5 twice


def test_countdown_generated_answers_get_full_reward():
    from rlx.data import countdown
    exs = countdown.generate(20, seed=0, level=4)
    comps = [f"<answer>{e['answer']}</answer>" for e in exs]
    r, c, st = score("countdown", comps, exs)
    np.testing.assert_array_equal(r, np.ones(20))
    assert st.successes == 20 and st.format_ok == 20 and st.errors == 0

# --------------------------------------------------------------------------- numeric / formats


def test_check_numeric():
    assert check_numeric("1,200", "1200") and check_numeric("$1200.00", 1200)
    assert check_numeric("0.3333333", "1/3", abs_tol=1e-6) and not check_numeric("0.333", "1/3")
    assert check_numeric("101", 100, rel_tol=0.01, abs_tol=0) and not check_numeric("102", 100, rel_tol=0.01, abs_tol=0)
    assert not check_numeric("The answer is 1200", "1200") and not check_numeric(None, "1")


def test_strict_format_rule():
    assert strict_format_ok("<think>a</think><answer>b</answer>")
    assert strict_format_ok("<think>a</think>\n<answer>b</answer>\n<|im_end|>")
    assert not strict_format_ok("<answer>b</answer><think>a</think>")             # order
    assert not strict_format_ok("<think>a</think><answer>b</answer> more")        # text after </answer>
    assert not strict_format_ok("<think>a</think><answer>b</answer><answer>c</answer>")   # twice
    assert not strict_format_ok("<answer>b</answer>")                             # no think
    assert strict_format_ok("<answer>b</answer>", require_think=False)
    assert format_reward("x <answer>1</answer> y", strict=False) == 1.0
    assert format_reward("x <answer>1</answer> y") == 0.0


@pytest.mark.parametrize("task,ex,completion,expected", [
    # (format, answer) components
    ("arithmetic", AR, "19", (1.0, 1.0)),
    ("arithmetic", AR, " 19\nbecause 12+7", (1.0, 1.0)),       # compact: the first line
    ("arithmetic", AR, "<answer>19</answer>", (1.0, 1.0)),      # a tagged answer also counts
    ("arithmetic", AR, "20", (1.0, 0.0)),
    ("arithmetic", AR, "19 apples", (1.0, 0.0)),
    ("arithmetic", AR, "", (0.0, 0.0)),
    ("arithmetic", {**AR, "template": "answer"}, "19", (0.0, 0.0)),          # tags required
    ("arithmetic", {**AR, "template": "answer"}, "<answer> 19 </answer>", (1.0, 1.0)),
    ("arithmetic", {**AR, "template": "think"}, "<answer>19</answer>", (0.0, 1.0)),   # think missing
    ("arithmetic", {**AR, "template": "think"}, "<think>7+12</think><answer>19</answer>", (1.0, 1.0)),
    ("countdown", CD, "<answer>(25-5)*3</answer>", (1.0, 1.0)),
    ("countdown", CD, "<answer>(25-5)*3</answer> and more", (0.0, 1.0)),      # strict format fails
    ("countdown", CD, "<answer>1</answer><answer>(25-5)*3</answer>", (0.0, 1.0)),  # last pair counts
    ("countdown", CD, "<answer>25*3-5</answer>", (1.0, 0.0)),
    ("gsm8k", GS, "<answer>1,200</answer>", (1.0, 1.0)),
    ("gsm8k", GS, "<answer>$1200</answer>", (1.0, 1.0)),
    ("gsm8k", GS, "<answer>1201</answer>", (1.0, 0.0)),
    ("gsm8k", GS, "1200", (0.0, 0.0)),
])
def test_components(task, ex, completion, expected):
    r, c, st = score(task, [completion], [ex])
    np.testing.assert_array_equal(c[:, 0], expected)
    assert r[0] == expected[1]              # default weights (0, 1): reward = answer correctness
    assert st.errors == 0 and st.timeouts == 0


def test_weights_and_components_total():
    comps = ["<answer>19</answer>", "20", "<answer>18</answer>"]
    ex = {**AR, "template": "answer"}
    r, c, _ = score("arithmetic", comps, [ex] * 3, weights=(0.5, 2.0))
    # (format, answer): (1,1) -> 2.5; (0,0) -> 0; (1,0) -> 0.5
    np.testing.assert_allclose(r, [2.5, 0.0, 0.5])
    np.testing.assert_allclose(rewards.combine(c, (0.5, 2.0)), r)
    assert rewards.components.as_dict(c, ("format", "answer"))["format"].tolist() == [1, 0, 1]
    r, c, _ = score("exact", ["<answer>Paris</answer>", "<answer>paris </answer>", "Rome"],
                    [{"answer": "Paris"}] * 3)
    assert c is None and r.tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="weights: task 'arithmetic' has 2 components"):
        score("arithmetic", ["1"], [AR], weights=(1.0,))
    with pytest.raises(ValueError, match="differ in length"):
        score("arithmetic", ["1", "2"], [AR])
    with pytest.raises(KeyError, match="unknown reward task 'chess'"):
        score("chess", [], [])

# --------------------------------------------------------------------------- adversarial


ADVERSARIAL = [
    "9**9**9", "<answer>9**9**9</answer>", "<answer>9^9^9</answer>",
    "<answer>1" + "0" * 100_000 + "</answer>",                  # 10^100000
    "<answer>10^100000</answer>", "<answer>1/0</answer>", "<answer>(1+2)/(3-3)</answer>",
    "<answer>" + "(" * 100_000 + "1" + ")" * 100_000 + "</answer>",
    "<answer>" + "(" * 100_000 + "</answer>",
    "<answer>٣٤ ۵ １２</answer>", "<answer>ünïcødé ✓ 🤖 \u202e</answer>", "\ud800\udfff\x00",
    "a" * 10**6, "<answer>" * 125_000, "</answer>" * 100_000, "<think>" * 100_000 + "<answer>1</answer>",
    "<answer>" + "x" * 10**6 + "</answer>", "\n" * 10**6, "<answer>" + "1+" * 500_000 + "1</answer>",
    "<think></think><answer>" + "Zoe is a knight " * 60_000 + "</answer>",
    "<think></think><answer>Zoe" + " " * 10**6 + "is a knight</answer>",
    "<think></think><answer>" + "knight " * 140_000 + "</answer>",
    "19" + "9" * 10**6,
]


@pytest.mark.parametrize("task,ex", [("arithmetic", AR), ("countdown", CD), ("gsm8k", GS), ("knights_knaves", KK),
                                     ("arithmetic", {**AR, "template": "answer"})])
def test_adversarial_completions_never_crash_hang_or_score(task, ex):
    # Binary tasks: reward 0. K&K: at best a good format with an unparsable answer, 1 - 2 = -1.
    best_allowed = -1.0 if task == "knights_knaves" else 0.0
    for text in ADVERSARIAL:
        t0 = time.perf_counter()
        r, c, st = score(task, [text], [ex])
        dt = time.perf_counter() - t0
        assert dt < 1.0, (task, text[:30], dt)
        assert st.errors == 0 and st.timeouts == 0, st.last_error
        assert c[1, 0] <= (0.0 if task != "knights_knaves" else -1.5), (task, text[:30])   # never correct
        assert r[0] <= best_allowed


# --------------------------------------------------------------------------- robustness


def _raises(completion, example):
    raise RuntimeError("boom")


def _loops(completion, example):
    while True:
        pass


def _nan(completion, example):
    return (float("nan"), 1.0)


def _slow(completion, example):
    time.sleep(0.15)
    return (1.0, 1.0)


@pytest.fixture
def temp_tasks():
    """Names registered by a test are removed afterwards (the registry is global)."""
    names = []
    yield names
    for n in names:
        rewards.TASKS._fns.pop(n, None)


def test_failing_checkers_score_zero_and_are_counted(temp_tasks):
    temp_tasks += ["test_raises", "test_loops", "test_nan"]
    rewards.register_task("test_raises", _raises)
    rewards.register_task("test_loops", _loops)
    rewards.register_task("test_nan", _nan)
    r, c, st = score("test_raises", ["a", "b"], [{}, {}])
    assert r.tolist() == [0.0, 0.0] and c.tolist() == [[0, 0], [0, 0]]
    assert st.errors == 2 and "boom" in st.last_error and st.n == 2
    t0 = time.perf_counter()
    r, _, st = score("test_loops", ["a"], [{}], time_limit_s=0.2)
    assert time.perf_counter() - t0 < 1.0          # preempted by SIGALRM
    assert r.tolist() == [0.0] and st.timeouts == 1 and st.errors == 0
    r, _, st = score("test_nan", ["a"], [{}])
    assert r.tolist() == [0.0] and st.errors == 1 and "finite" in st.last_error
    r, _, st = score("arithmetic", [None, "19"], [AR, AR])
    assert r.tolist() == [0.0, 1.0] and st.errors == 1
    total = st + st
    assert total.n == 4 and total.errors == 2 and total.as_metrics()["reward/success_rate"] == 0.5


def test_slow_checker_off_the_main_thread(temp_tasks):
    # In a non-main thread SIGALRM is unavailable: `score` runs a picklable checker in a
    # worker process (killed at its deadline); an unpicklable one (a lambda) in-process,
    # where the elapsed time still zeroes the reward after the fact.
    import threading

    temp_tasks.extend(["test_slow", "test_slow_lambda"])
    rewards.register_task("test_slow", _slow)
    rewards.register_task("test_slow_lambda", lambda c, e: _slow(c, e))
    for task in temp_tasks:
        out = {}
        th = threading.Thread(target=lambda: out.update(res=score(task, ["a"], [{}], time_limit_s=0.05)))
        th.start()
        th.join()
        r, _, st = out["res"]
        assert r.tolist() == [0.0] and st.timeouts == 1, (task, st)
