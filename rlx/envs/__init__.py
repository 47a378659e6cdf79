"""Environments for multi-turn rollouts: the protocol (`base`), a batch stepped in
parallel with time limits (`pool`), offline environments (`gridworld`, `sokoban`) and a
sandboxed Python tool for model-written code (`sandbox.run_python`); multi-turn episodes
built token-in / token-out (`episodes.run_episodes`)."""

from rlx.envs.base import Env, StepResult, check_result
from rlx.envs.gridworld import GridWorld
from rlx.envs.pool import EnvPool, PoolStats
from rlx.envs.sandbox import ToolResult, run_python
from rlx.envs.sokoban import Sokoban

__all__ = ["Env", "EnvPool", "GridWorld", "PoolStats", "Sokoban", "StepResult", "ToolResult", "check_result",
           "run_python"]
