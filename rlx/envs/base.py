"""The environment protocol of multi-turn rollouts.

An environment is a host-side Python object with two methods:

    reset(task: dict, seed: int) -> str                  the first observation (text)
    step(action: str) -> StepResult                      after the model's action (text)

`StepResult(observation, reward, done, info)`: `info["state_id"]` is an integer
identity of the environment state the step *reached* (equal states, equal ids, across
the episodes of one task — GiGPO's anchor states), `info["valid_action"]` whether the
action parsed as a legal move (GiGPO's invalid-action penalty). `reset` returns the
initial state's id through `initial_state_id` (also an int). Environments are pure
Python; `rlx.envs.pool.EnvPool` steps a batch of them in parallel with a time limit.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class StepResult:
    observation: str
    reward: float
    done: bool
    info: dict


class Env(Protocol):
    def reset(self, task: dict, seed: int) -> str: ...

    def step(self, action: str) -> StepResult: ...

    @property
    def initial_state_id(self) -> int: ...


def check_result(res, where: str) -> StepResult:
    """`res` as a StepResult, or a TypeError naming `where` and what is wrong."""
    if not isinstance(res, StepResult):
        raise TypeError(f"{where}: step() must return rlx.envs.StepResult, got {type(res).__name__}")
    if not isinstance(res.observation, str):
        raise TypeError(f"{where}: observation must be str, got {type(res.observation).__name__}")
    for k, t in (("state_id", int), ("valid_action", bool)):
        if not isinstance(res.info.get(k), t):
            raise TypeError(f"{where}: info[{k!r}] must be {t.__name__}, got {res.info.get(k)!r}")
    return res
