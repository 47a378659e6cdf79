"""Task filtering by baseline success: drop tasks that are always solved or never solved.

Papers: "ARPO: End-to-End Policy Optimization for GUI Agents with Experience Replay"
(task selection by the baseline agent's performance) and "Policy Filtration" (both the
abstracts' reading). Before RL, run the baseline policy K times on each task; a task
with success rate 0 (no signal: every GRPO group is all-fail) or 1 (nothing to learn)
is dropped. The thresholds are parameters: keep iff low < rate < high.
Pure, jit-compatible functions of arrays; `filter_examples` applies a mask to a list.
A task with no baseline rollouts (count 0) is kept: there is no evidence against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlx import ops

Array = jax.Array


def success_rates(success_TK, valid_TK=None) -> tuple[Array, Array]:
    """(rate [T], count [T]): mean success over each task's valid baseline rollouts (0 if none)."""
    s = jnp.asarray(success_TK).astype(jnp.float32)
    if s.ndim != 2:
        raise ValueError(f"success_TK: expected [T, K], got shape {s.shape}")
    if valid_TK is not None and jnp.shape(valid_TK) != s.shape:
        raise ValueError(f"valid_TK shape {jnp.shape(valid_TK)} != success_TK shape {s.shape}")
    valid = None if valid_TK is None else jnp.asarray(valid_TK).astype(bool)
    return ops.masked_mean(s, valid, axis=1), ops.masked_count(s, valid, axis=1)


def keep_tasks(rate_T, count_T=None, *, low: float = 0.0, high: float = 1.0) -> Array:
    """Bool `[T]`: low < rate < high (default: drop rate 0 and rate 1); tasks with count 0 are kept."""
    rate = jnp.asarray(rate_T, jnp.float32)
    keep = (rate > low) & (rate < high)
    if count_T is not None:
        keep = keep | (jnp.asarray(count_T) == 0)
    return keep


def filter_examples(examples: Sequence[dict], keep_T) -> list[dict]:
    """The examples whose keep flag is True (host-side)."""
    keep = np.asarray(keep_T).astype(bool)
    if keep.shape != (len(examples),):
        raise ValueError(f"keep_T: expected shape ({len(examples)},), got {keep.shape}")
    return [ex for ex, k in zip(examples, keep) if k]
