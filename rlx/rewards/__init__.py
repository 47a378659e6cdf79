"""Verifiable rewards: per-task answer checkers, format and length rewards, components.

Batch API: `score(task, completions, examples) -> (rewards [N], components [C, N] | None,
RewardStats)`. Tasks: "countdown", "arithmetic", "gsm8k", "math" (math-verify),
"knights_knaves", "exact";
add one with `register_task`. Length rewards (`overlong_penalty`, `hapo_length_reward`)
are jit-compatible functions of token-length arrays, applied by the engine.
"""

from rlx.rewards import checkers, components, format, kk, length, math_answers, safe_eval
from rlx.rewards.checkers import (
    CheckerTimeout,
    RewardStats,
    check_countdown,
    check_exact,
    check_numeric,
    final_answer,
    score,
)
from rlx.rewards.components import TASKS, TaskSpec, combine, get_task, register_task
from rlx.rewards.format import extract_plain, extract_tagged, format_reward, strict_format_ok
from rlx.rewards.kk import kk_components, kk_reward
from rlx.rewards.length import apply_overlong, hapo_length_reward, hapo_reward, overlong_penalty
from rlx.rewards.safe_eval import SafeEvalError, evaluate, parse_number

__all__ = [
    "TASKS", "CheckerTimeout", "RewardStats", "SafeEvalError", "TaskSpec", "apply_overlong",
    "check_countdown", "check_exact", "check_numeric", "checkers", "combine", "components",
    "evaluate", "extract_plain", "final_answer", "extract_tagged", "format", "format_reward", "get_task",
    "hapo_length_reward", "hapo_reward", "kk", "kk_components", "kk_reward", "length", "math_answers",
    "overlong_penalty", "parse_number", "register_task", "safe_eval", "score", "strict_format_ok",
]
