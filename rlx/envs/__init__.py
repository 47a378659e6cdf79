"""Environments for multi-turn rollouts: the protocol (`base`), a batch stepped in
parallel with time limits (`pool`), and offline environments (`gridworld`, `sokoban`)."""

from rlx.envs.base import Env, StepResult, check_result
from rlx.envs.gridworld import GridWorld
from rlx.envs.pool import EnvPool, PoolStats
from rlx.envs.sokoban import Sokoban

__all__ = ["Env", "EnvPool", "GridWorld", "PoolStats", "Sokoban", "StepResult", "check_result"]
