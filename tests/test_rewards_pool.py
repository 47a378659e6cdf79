"""Reward checkers that hang, swallow timeouts, exit or overflow: scored as failures at
the task's minimum and counted, without ending or stalling the run (rlx.rewards.pool)."""

import time

import numpy as np
import pytest

import tests.helpers.checkers  # noqa: F401 - registers the test_* tasks
from rlx import rewards as rw


def test_pool_kills_checkers_that_hang_in_c_and_runs_them_in_parallel():
    # 6 completions whose checker would run for hours in one C call: each worker is
    # killed at its 0.5 s deadline and replaced; 3 workers take them in parallel. That the
    # call returns at all (the bound is generous) shows the kill.
    t0 = time.perf_counter()
    r, comps, st = rw.score("test_hang_in_c", ["x"] * 6, [{}] * 6, time_limit_s=0.5, workers=3)
    assert time.perf_counter() - t0 < 60
    assert st.timeouts == 6 and st.errors == 0 and list(r) == [0.0] * 6
    assert "worker killed" in st.first_error
    # the pool is healthy afterwards: ordinary completions score normally, in order
    r, _, st = rw.score("test_echo", ["1", "2", "3", "4"], [{}] * 4, time_limit_s=5.0, workers=3)
    assert list(r) == [1.0, 2.0, 3.0, 4.0] and st.errors == st.timeouts == 0


def test_only_the_hung_completions_time_out():
    # 24 completions in chunks of 3 per message; two hang. A worker is killed at the hung
    # completion and the rest of its chunk is scored by another: exactly the two time out.
    texts = [str(i) for i in range(24)]
    texts[4] = texts[17] = "hang"
    r, _, st = rw.score("test_echo_or_hang", texts, [{}] * 24, time_limit_s=0.5, workers=2)
    assert st.timeouts == 2 and st.errors == 0
    want = [0.0 if t == "hang" else float(t) for t in texts]
    assert list(r) == want


@pytest.mark.parametrize("workers", [0, 2])
def test_a_checker_that_catches_exceptions_is_still_stopped(workers):
    # In-process the timeout is a BaseException (not caught by `except Exception`); in a
    # worker the process is killed.
    r, _, st = rw.score("test_swallow", ["x", "y"], [{}, {}], time_limit_s=0.3, workers=workers)
    assert st.timeouts == 2 and list(r) == [0.0, 0.0]


@pytest.mark.parametrize("workers", [0, 2])
def test_system_exit_and_float32_overflow_are_failures_not_crashes(workers):
    r, _, st = rw.score("test_exits", ["a", "b"], [{}, {}], workers=workers)
    assert st.errors == 2 and list(r) == [0.0, 0.0] and "SystemExit" in st.first_error
    r, _, st = rw.score("test_huge", ["a"], [{}], workers=workers)
    assert st.errors == 1 and r[0] == 0.0 and np.isfinite(r).all() and "float32" in st.first_error
    r, _, st = rw.score("test_echo", ["2", "x", "3"], [{}] * 3, workers=workers)   # float("x") raises
    assert list(r) == [2.0, 0.0, 3.0] and st.errors == 1 and st.first_error.startswith("completion 1:")


def test_failures_score_the_tasks_minimum():
    # Knights & Knaves: a wrong, well-formatted answer scores +1 - 1.5 = -0.5; a checker
    # failure must not score better than the worst normal reward, -1 + -2 = -3.
    r, comps, st = rw.score("knights_knaves", [None], [{}])          # not a string: a failure
    assert st.errors == 1 and r[0] == -3.0 and list(comps[:, 0]) == [-1.0, -2.0]
    assert rw.get_task("arithmetic").failure == (0.0, 0.0)


def test_worker_start_up_does_not_count_against_the_deadline():
    # Each fresh worker spends 2 s importing the checker's module (tests/helpers/slow_import)
    # before it can score; the deadline is 0.5 s per completion. Start-up is not the
    # completion's time: all 8 score normally. (When the deadline ran from sending, every
    # chunk's first completion timed out, its worker was replaced, and the replacement
    # paid the import again.)
    from rlx.rewards.components import TaskSpec
    from rlx.rewards.pool import CheckerPool
    from tests.helpers import slow_import

    spec = TaskSpec("slow_import", slow_import.echo, ("answer",), (1.0,))
    pool = CheckerPool(2)
    try:
        out = pool.run(spec, [str(i) for i in range(8)], [{}] * 8, time_limit_s=0.5)
    finally:
        pool.close()
    assert out == [("ok", [float(i)]) for i in range(8)]
