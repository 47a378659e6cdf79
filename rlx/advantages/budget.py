"""Estimators over truncation points of one reasoning chain: BRPO (AnytimeReasoner,
token budgets b_1 < ... < b_S) and S-GRPO (serial group of early-exit positions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlx import ops
from rlx.advantages.core import (
    as_float,
    as_mask,
    check_ddof,
    constant_groups,
    count_metric,
    finish,
    jitted,
    register,
    safe_ratio,
)

Array = jax.Array


@register()
def brpo(scores, budget_probs, valid=None):
    """Budget Relative Policy Optimization (AnytimeReasoner).

    Paper: "Optimizing Anytime Reasoning via Budget Relative Policy Optimization".
    Definitions from the official code (`compute_cot_advantage`,
    `compute_summary_advantage` in `verl/trainer/ppo/brpo.py`, variance reduction
    "brpo", summary method "brpo"). The thinking of each of the G samples is cut at
    budgets b_1 < ... < b_S; at each cut A summaries are sampled and scored.
    `scores` `[P, G, S, A]` (budgets past the end of a finished thinking repeat the
    final summaries' scores, as in the official rollout); `budget_probs` `[S]` the
    prior p_j over budgets (normalized here). With rbar_{g,j} = mean_a scores:

      R_{g,s}  = sum_{j>=s} p_j rbar_{g,j}                     (return of chunk s)
      V2_s     = mean_g R_{g,s}                                (group baseline)
      V1_{g,s} = [sum_{j<s} 2^j rbar_{g,j} / sum_{j<s} 2^j] * sum_{j>=s} p_j  (own
                 earlier budgets; 0 for s = 0)
      b_{g,s}  = (s V1_{g,s} + (S - s) V2_s) / S   (s zero-based)
      thinking chunk s (tokens between b_{s-1} and b_s) gets A = R_{g,s} - b_{g,s};
      summary (g, s, a) gets score - mean of the group at that budget: the mean over
      g of scores[:, s, 0] when A == 1, else the mean of the A summaries of the same
      thinking at budget s (the official code's two cases).

    Returns `((thinking_PGS, summary_PGSA), metrics)`. Invalid samples (`valid`
    `[P, G]` False or any non-finite score) get 0 and are left out of every mean.
    rlx differences: with fewer than 2 valid samples V2 = 0 (official: when G == 1)
    and the A == 1 summary advantage is 0 (official: the mean includes the sample).
    """
    try:
        pn = np.asarray(budget_probs, dtype=np.float64)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        pn = None  # traced under the caller's jit: values cannot be checked
    if pn is not None and (np.any(pn < 0) or not pn.sum() > 0):
        raise ValueError(f"brpo: budget_probs must be >= 0 with a positive sum, got {pn}")
    return _brpo(scores, budget_probs, valid)


@jitted()
def _brpo(scores, budget_probs, valid):
    s = as_float("brpo", "scores", scores)
    if s.ndim != 4:
        raise ValueError(f"brpo: scores must be [P, G, S, A], got shape {s.shape}")
    P, G, S, A = s.shape
    probs = as_float("brpo", "budget_probs", budget_probs)
    if probs.shape != (S,):
        raise ValueError(f"brpo: budget_probs has shape {probs.shape}, expected ({S},)")
    probs = probs / jnp.sum(probs)
    given = jnp.ones((P, G), bool) if valid is None else as_mask("brpo", "valid", valid, (P, G))
    finite = jnp.all(jnp.isfinite(s), axis=(2, 3))
    ok = given & finite
    s = jnp.where(ok[:, :, None, None], s, 0)
    n = jnp.sum(ok, axis=1)

    rbar = jnp.mean(s, axis=3)                                       # [P, G, S]
    weighted = rbar * probs[None, None, :]
    R = jnp.flip(jnp.cumsum(jnp.flip(weighted, -1), axis=-1), -1)    # sum_{j>=s}
    tail = jnp.flip(jnp.cumsum(jnp.flip(probs)))                     # [S]
    V2 = ops.masked_mean(R, jnp.broadcast_to(ok[:, :, None], R.shape), axis=1)  # [P, S]
    V2 = jnp.where((n >= 2)[:, None], V2, 0)
    pw = (2.0 ** jnp.arange(S, dtype=s.dtype))[None, None, :]
    prev_num = jnp.cumsum(rbar * pw, axis=-1) - rbar * pw            # sum_{j<s}
    prev_den = jnp.cumsum(pw, axis=-1) - pw                          # 2^s - 1
    V1 = safe_ratio(prev_num, jnp.broadcast_to(prev_den, prev_num.shape)) * tail[None, None, :]
    idx = jnp.arange(S, dtype=s.dtype)[None, None, :]
    base = (idx * V1 + (S - idx) * V2[:, None, :]) / S
    thinking = finish(R - base, jnp.broadcast_to(ok[:, :, None], R.shape))

    if A == 1:
        okA = jnp.broadcast_to(ok[:, :, None, None], s.shape)
        mean = ops.masked_mean(s, okA, axis=1, keepdims=True)
        keep = okA & (n >= 2)[:, None, None, None]
    else:
        mean = jnp.mean(s, axis=3, keepdims=True)
        keep = jnp.broadcast_to(ok[:, :, None, None], s.shape)
    summary = finish(s - mean, keep)
    metrics = {
        "degenerate_groups": count_metric(n < 2),
        "invalid_samples": count_metric(~ok),
        "nonfinite_rewards": count_metric(given & ~finite),
        "mean_return": ops.masked_mean(R[:, :, 0], ok),
    }
    return (thinking, summary), metrics


@register()
@jitted("ddof", "scale_by_std")
def s_grpo(correct, valid=None, *, decay: float = 0.5, scale_by_std: bool = False,
           ddof: int = 1, eps: float = 1e-6):
    """S-GRPO: serial-group decaying rewards over early-exit positions, then group-relative.

    Paper: "S-GRPO: Early Exit via Reinforcement Learning in Reasoning Models". This is
    rlx's reading of the abstract: one chain of thought per prompt is cut at M exit
    positions (ordered front to back) and an answer is forced at each (the serial
    group); "for correct answers ... rewards gradually decrease based on the exit
    positions from front to back". rlx makes this precise as: the k-th correct exit
    (k = 1, 2, ... in position order) gets reward decay^(k-1) (1, 1/2, 1/4, ... with
    decay = 1/2), wrong exits get 0; then A = r - mean over the valid exits of the
    chain (group-relative), divided by (std + eps) when `scale_by_std`.

    `correct` `[P, M]` (bool or 0/1; a float in [0, 1] scales the reward),
    `valid` `[P, M]`. Chains with < 2 valid exits get 0. Returns `(adv_PM, metrics)`
    with the decayed rewards' mean in `metrics["mean_reward"]`.
    """
    ddof = check_ddof("s_grpo", ddof)
    c = as_float("s_grpo", "correct", correct)
    if c.ndim != 2:
        raise ValueError(f"s_grpo: correct must be [P, M], got shape {c.shape}")
    given = jnp.ones(c.shape, bool) if valid is None else as_mask("s_grpo", "valid", valid, c.shape)
    ok = given & jnp.isfinite(c)
    c = jnp.where(ok, c, 0)
    hit = ok & (c > 0)
    before = jnp.cumsum(hit, axis=1) - hit                  # correct exits before this one
    r = c * jnp.power(jnp.asarray(decay, c.dtype), before.astype(c.dtype))
    n = jnp.sum(ok, axis=1)
    mean = ops.masked_mean(r, ok, axis=1)
    adv = r - mean[:, None]
    zero = constant_groups(r, ok)
    if scale_by_std:
        std = ops.masked_std(r, ok, ddof=ddof, axis=1)
        adv = safe_ratio(adv, jnp.broadcast_to((std + eps)[:, None], adv.shape))
    adv = finish(adv, ok & ((n >= 2) & ~zero)[:, None])
    metrics = {
        "degenerate_groups": count_metric(n < 2),
        "invalid_samples": count_metric(~ok),
        "nonfinite_rewards": count_metric(given & ~ok),
        "mean_reward": ops.masked_mean(r, ok),
    }
    return adv, metrics
