"""Hostile reward checkers for tests/test_rewards_pool.py (module level, so that worker
processes can unpickle them by reference)."""

import re
import time

from rlx.rewards import register_task


def hang_in_c(completion, example):
    # Catastrophic backtracking: one `re.match` call that runs for hours, inside C
    # (SIGALRM cannot interrupt it).
    re.match(r"(a+)+$", "a" * 48 + "b")
    return (1.0,)


def swallow_timeouts(completion, example):
    # Catches every Exception: an Exception-based timeout would never stop it.
    deadline = time.time() + 600
    while time.time() < deadline:
        try:
            time.sleep(0.01)
        except Exception:  # noqa: BLE001, S110 - deliberately hostile
            pass
    return (1.0,)


def exits(completion, example):
    raise SystemExit(3)


def huge(completion, example):
    return (1e39,)                       # finite in float64, inf in float32


def echo(completion, example):
    return (float(completion),)


def echo_or_hang(completion, example):
    if completion == "hang":
        return hang_in_c(completion, example)
    return (float(completion),)


def _parser_hangs(answer):
    while True:                      # a pure-Python hang inside the math parser
        pass


def _parser_crashes(answer):
    raise RecursionError("maximum recursion depth exceeded while parsing")


def math_parser_hangs(completion, example):
    from rlx.rewards import math_answers
    return math_answers.math_checker(completion, example, parse=_parser_hangs)


def math_parser_crashes(completion, example):
    from rlx.rewards import math_answers
    return math_answers.math_checker(completion, example, parse=_parser_crashes)


for _name, _fn in (("test_math_parser_hangs", math_parser_hangs), ("test_math_parser_crashes", math_parser_crashes)):
    if _name not in __import__("rlx.rewards", fromlist=["TASKS"]).TASKS:
        register_task(_name, _fn, warmup=__import__("rlx.rewards.math_answers", fromlist=["warmup"]).warmup)

for _name, _fn in (("test_hang_in_c", hang_in_c), ("test_swallow", swallow_timeouts), ("test_exits", exits),
                   ("test_huge", huge), ("test_echo", echo),
                   ("test_echo_or_hang", echo_or_hang)):
    if _name not in __import__("rlx.rewards", fromlist=["TASKS"]).TASKS:
        register_task(_name, _fn, ("answer",), (1.0,))
