"""Environments for multi-turn rollouts: the protocol (`base`), a batch stepped in
parallel with time limits (`pool`), and offline environments (`gridworld`)."""

from rlx.envs.base import Env, StepResult, check_result
from rlx.envs.gridworld import GridWorld
from rlx.envs.pool import EnvPool, PoolStats

__all__ = ["Env", "EnvPool", "GridWorld", "PoolStats", "StepResult", "check_result"]
