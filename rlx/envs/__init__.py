"""Environments for multi-turn rollouts: the protocol (`base`), a batch stepped in
parallel with time limits (`pool`), offline environments (`gridworld`, `sokoban`,
`tools`: math problems with a calculator or Python tool), a sandboxed Python tool for
model-written code (`sandbox.run_python`), multi-turn episodes built token-in /
token-out (`episodes.run_episodes`)."""

from rlx.envs.base import Env, StepResult, check_result
from rlx.envs.gridworld import GridWorld
from rlx.envs.pool import EnvPool, PoolStats
from rlx.envs.sandbox import ToolResult, run_python
from rlx.envs.sokoban import Sokoban
from rlx.envs.tools import ToolMath

# Environments a config can name (`env.name`): name -> class. Each has TASK_KEYS (the task
# dict's keys it reads) and SEED_KEY (the key that draws one task of its family).
ENVS = {"gridworld": GridWorld, "sokoban": Sokoban, "tool_math": ToolMath}

__all__ = ["ENVS", "Env", "EnvPool", "GridWorld", "PoolStats", "Sokoban", "StepResult", "ToolMath", "ToolResult",
           "check_result", "run_python"]
