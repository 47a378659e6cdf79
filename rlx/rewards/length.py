"""Length rewards, with lengths counted in TOKENS (integer arrays), never characters.

Two pure, jit-compatible functions of `[B]` arrays:

* DAPO soft overlong punishment ("DAPO: An Open-Source LLM Reinforcement Learning
  System at Scale", eq. 13; official code verl `recipe/dapo`, `overlong_buffer`):
      r_len = min(−(L − (L_max − L_cache)) / L_cache · factor, 0)
  i.e. 0 up to L_max − L_cache tokens, then a linear ramp to −factor at L = L_max.
  Defaults of the paper: L_max = 20480, L_cache = 4096, factor = 1. Like the official
  code rlx does not clamp beyond L_max (the paper writes −1 there); with
  max_new_tokens = L_max a completion cannot be longer, so the two agree.

* HAPO's history-aware cosine length reward ("HAPO: Training Language Models to Reason
  Concisely via History-Aware Policy Optimization"; ALGORITHMS.md, code): with h the
  history length of the prompt (the minimum length of its correct answers seen so far),
      c = cos((L / h) · π/2)  if L < 2h,  else −1
      correct answer: max(−0.7, c);   wrong answer: min(0, c)
  and the total reward is correct + w · length_reward (w = 1). Here h is an input: the
  stateful tracker that keeps and updates h lives in rlx/advantages/trackers.py. A
  prompt with no history yet (h <= 0, NaN or inf; rlx's convention) gets length reward 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _token_lengths(lengths, name: str = "lengths") -> Array:
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{name}: lengths are token counts and must be an integer array, got {lengths.dtype}")
    return lengths


def overlong_penalty(lengths_B, *, max_len: int, cache_len: int, factor: float = 1.0) -> Array:
    """DAPO soft overlong punishment `[B]` (<= 0), see the module docstring."""
    L = _token_lengths(lengths_B)
    if not 0 < cache_len <= max_len:
        raise ValueError(f"cache_len must be in (0, max_len={max_len}], got {cache_len}")
    exceed = L.astype(jnp.float32) - float(max_len - cache_len)
    return jnp.minimum(-exceed / float(cache_len) * factor, 0.0)


def apply_overlong(rewards_B, lengths_B, *, max_len: int, cache_len: int, factor: float = 1.0) -> Array:
    """rewards + overlong_penalty(lengths)."""
    rewards_B = jnp.asarray(rewards_B, jnp.float32)
    pen = overlong_penalty(lengths_B, max_len=max_len, cache_len=cache_len, factor=factor)
    if pen.shape != rewards_B.shape:
        raise ValueError(f"rewards shape {rewards_B.shape} != lengths shape {pen.shape}")
    return rewards_B + pen


def hapo_length_reward(lengths_B, history_B, correct_B, *, floor: float = -0.7) -> Array:
    """HAPO cosine length reward `[B]` given each prompt's history length h (tokens)."""
    L = _token_lengths(lengths_B).astype(jnp.float32)
    h = jnp.asarray(history_B, jnp.float32)
    correct = jnp.asarray(correct_B).astype(bool)
    if h.shape != L.shape or correct.shape != L.shape:
        raise ValueError(f"lengths {L.shape}, history {h.shape} and correct {correct.shape} must match")
    has_h = jnp.isfinite(h) & (h > 0)
    h_safe = jnp.where(has_h, h, 1.0)
    c = jnp.where(L < 2 * h_safe, jnp.cos(L / h_safe * (jnp.pi / 2)), -1.0)
    r = jnp.where(correct, jnp.maximum(floor, c), jnp.minimum(0.0, c))
    return jnp.where(has_h, r, 0.0)


def hapo_reward(correct_B, lengths_B, history_B, *, weight: float = 1.0, floor: float = -0.7) -> Array:
    """HAPO total reward: correct (0/1) + weight · hapo_length_reward."""
    correct = jnp.asarray(correct_B).astype(bool)
    c = hapo_length_reward(lengths_B, history_B, correct, floor=floor)
    return correct.astype(jnp.float32) + weight * c
