"""A batch of environment episodes stepped in parallel, each step under a time limit.

    pool = EnvPool(GridWorld, workers=4, step_timeout_s=10.0)
    obs = pool.reset(tasks, seeds)                 # one episode per (task, seed)
    results = pool.step(actions)                   # one action per live episode (None: skip)

Environments are host-side Python; a slow one (a tool call, a simulator) is stepped in a
thread pool so the episodes of a batch wait for the slowest step only. An environment
that raises, returns something that is not a `StepResult`, or runs past
`step_timeout_s` ends *that* episode: its result is done with reward 0 and
`info["error"]` saying why, `stats` counts it (errors, timeouts), and the batch goes on.
A timed-out call cannot be stopped inside its thread: its environment is abandoned (its
late result is ignored) and the pool's threads are replaced, so a hung environment
never holds up later steps. Code that must be killed (model-written programs) belongs
in a subprocess sandbox, not here.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
from collections.abc import Callable

from rlx.envs.base import StepResult, check_result

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PoolStats:
    steps: int = 0
    errors: int = 0
    timeouts: int = 0
    first_error: str = ""


def failed(why: str) -> StepResult:
    """The result that ends an episode whose environment failed."""
    return StepResult("", 0.0, True, {"state_id": -1, "valid_action": False, "error": why})


class EnvPool:
    def __init__(self, make_env: Callable, *, workers: int = 4, step_timeout_s: float = 30.0):
        if workers < 1:
            raise ValueError(f"EnvPool: workers must be >= 1, got {workers}")
        if not step_timeout_s > 0:
            raise ValueError(f"EnvPool: step_timeout_s must be > 0, got {step_timeout_s}")
        self.make_env = make_env
        self.workers = workers
        self.timeout = float(step_timeout_s)
        self.stats = PoolStats()
        self._executor = cf.ThreadPoolExecutor(workers)
        self.envs: list = []
        self.done: list[bool] = []

    def _run(self, calls: dict[int, Callable]) -> dict[int, tuple[bool, object]]:
        """{episode: (ok, value or error text)} of calls run in parallel under the limit."""
        futures = {i: self._executor.submit(f) for i, f in calls.items()}
        done, late = cf.wait(futures.values(), timeout=self.timeout)
        out = {}
        for i, fut in futures.items():
            if fut in late:
                out[i] = (False, f"timeout: no result within {self.timeout:g} s")
                continue
            try:
                out[i] = (True, fut.result())
            except Exception as e:  # noqa: BLE001 - an environment's failure ends its episode only
                out[i] = (False, f"{type(e).__name__}: {e}")
        if late:                # their threads may never return: fresh threads for what follows
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = cf.ThreadPoolExecutor(self.workers)
        return out

    def _fail(self, i: int, why: str) -> StepResult:
        self.done[i] = True
        self.envs[i] = None                       # abandoned: never called again
        if why.startswith("timeout"):
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1
        if not self.stats.first_error:
            self.stats.first_error = f"episode {i}: {why}"
            log.warning("environment failed (episode ended with reward 0): episode %d: %s", i, why)
        return failed(why)

    def reset(self, tasks: list[dict], seeds: list[int]) -> list[str | None]:
        """A fresh episode per (task, seed); the first observations (None where reset failed:
        that episode is over before it starts)."""
        if len(tasks) != len(seeds):
            raise ValueError(f"EnvPool.reset: {len(tasks)} tasks but {len(seeds)} seeds")
        self.envs = [self.make_env() for _ in tasks]
        self.done = [False] * len(tasks)

        def call(env, task, seed):
            return lambda: env.reset(task, int(seed))
        res = self._run({i: call(e, t, s) for i, (e, t, s) in enumerate(zip(self.envs, tasks, seeds))})
        obs = []
        for i in range(len(tasks)):
            ok, v = res[i]
            if ok and not isinstance(v, str):
                ok, v = False, f"TypeError: reset() must return str, got {type(v).__name__}"
            if not ok:
                self._fail(i, v)
            obs.append(v if ok else None)
        return obs

    def step(self, actions: list[str | None]) -> list[StepResult | None]:
        """Steps every live episode whose action is not None; None for the others."""
        if len(actions) != len(self.envs):
            raise ValueError(f"EnvPool.step: {len(actions)} actions for {len(self.envs)} episodes")
        calls = {}
        for i, a in enumerate(actions):
            if a is None:
                continue
            if self.done[i]:
                raise ValueError(f"EnvPool.step: episode {i} has ended; give it None")
            calls[i] = (lambda env, act: lambda: env.step(act))(self.envs[i], a)
        res = self._run(calls)
        out: list[StepResult | None] = [None] * len(actions)
        for i, (ok, v) in res.items():
            self.stats.steps += 1
            if ok:
                try:
                    v = check_result(v, f"episode {i}")
                except TypeError as e:
                    ok, v = False, f"TypeError: {e}"
            if not ok:
                out[i] = self._fail(i, v)
                continue
            out[i] = v
            self.done[i] = bool(v.done)
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
