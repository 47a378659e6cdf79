"""Prioritized prompt sampling of Single-stream Policy Optimization.

Paper: "Single-stream Policy Optimization" (SPO; ALGORITHMS.md, read from the official
code, verl `recipe/spo`): each prompt keeps a success-probability estimate p̂ (the mean
α/(α+β) of its Beta tracker, rlx/advantages/trackers.py); prompts are drawn with weight

    w = sqrt(p̂ (1 − p̂)) + ε,   ε = 0.05,

i.e. favouring prompts of maximal uncertainty (p̂ ≈ 1/2, where the binary reward's
std is largest) while the floor ε keeps solved and hopeless prompts in rotation.
Pure, jit-compatible functions of `[Q]` arrays (Q prompts in the pool).
rlx: p̂ is clipped to [0, 1] before the square root (a tracker rounding error must not
give NaN), and masked-out prompts get weight 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def p_from_beta(alpha_Q, beta_Q) -> Array:
    """p̂ = α / (α + β) (0.5 where α + β = 0)."""
    a, b = jnp.asarray(alpha_Q, jnp.float32), jnp.asarray(beta_Q, jnp.float32)
    s = a + b
    return jnp.where(s > 0, a / jnp.where(s > 0, s, 1.0), 0.5)


def weights(p_hat_Q, *, eps: float = 0.05, mask_Q=None) -> Array:
    """Unnormalized weights sqrt(p̂(1−p̂)) + eps; 0 where mask_Q is False."""
    p = jnp.clip(jnp.asarray(p_hat_Q, jnp.float32), 0.0, 1.0)
    w = jnp.sqrt(p * (1.0 - p)) + eps
    if mask_Q is not None:
        m = jnp.asarray(mask_Q).astype(bool)
        if m.shape != p.shape:
            raise ValueError(f"mask_Q shape {m.shape} != p_hat_Q shape {p.shape}")
        w = jnp.where(m, w, 0.0)
    return w


def probs(p_hat_Q, *, eps: float = 0.05, mask_Q=None) -> Array:
    """Sampling probabilities ∝ weights (all zero if every prompt is masked out)."""
    w = weights(p_hat_Q, eps=eps, mask_Q=mask_Q)
    total = jnp.sum(w)
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 0.0)


def sample(key: Array, p_hat_Q, num: int, *, eps: float = 0.05, mask_Q=None, replace: bool = False) -> Array:
    """Draw `num` prompt indices ∝ weights (without replacement by default: a batch of distinct prompts)."""
    p = probs(p_hat_Q, eps=eps, mask_Q=mask_Q)
    return jax.random.choice(key, p.shape[0], shape=(num,), replace=replace, p=p).astype(jnp.int32)
