"""Stateful estimators: state in, state out. The state is a `flax.struct` dataclass of
arrays indexed by prompt id (`[N]` for N prompts in the dataset), so it jits, shards,
and saves with Orbax like any other pytree (`ocp.args.StandardSave(state)`).

  * single_stream (Single-stream Policy Optimization): a per-prompt Beta tracker of the
    success probability replaces the group baseline;
  * history_length (HAPO, History-Aware Policy Optimization): a per-prompt history of
    the shortest correct response drives a length reward.

Samples are flat `[B]` arrays with a `prompt_ids` `[B]` int array (several samples may
share a prompt). Ids outside [0, N) are treated as invalid and counted.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp

from rlx import ops
from rlx.advantages.core import (
    as_float,
    as_ids,
    as_mask,
    check_shape,
    count_metric,
    jitted,
    register,
)

Array = jax.Array


def _flat_inputs(name: str, n_prompts: int, prompt_ids, valid, **arrays):
    ids = jnp.asarray(prompt_ids)
    if ids.ndim != 1:
        raise ValueError(f"{name}: prompt_ids must be [B], got shape {ids.shape}")
    ids = as_ids(name, "prompt_ids", ids, ids.shape)
    (B,) = ids.shape
    given = jnp.ones((B,), bool) if valid is None else as_mask(name, "valid", valid, (B,))
    in_range = (ids >= 0) & (ids < n_prompts)
    ok = given & in_range
    out = {}
    for key, value in arrays.items():
        x = as_float(name, key, value)
        check_shape(name, key, x, (B,))
        ok = ok & jnp.isfinite(x)
        out[key] = x
    out = {k: jnp.where(ok, v, 0) for k, v in out.items()}
    safe_ids = jnp.where(ok, ids, 0)
    metrics = {"invalid_samples": count_metric(~ok),
               "out_of_range_ids": count_metric(given & ~in_range)}
    return safe_ids, ok, out, metrics


# ------------------------------------------------------------------ single-stream PO


@flax.struct.dataclass
class SingleStreamState:
    """Beta(alpha, beta) posterior of each prompt's success probability, `[N]` float32."""
    alpha: Array
    beta: Array

    @property
    def p_hat(self) -> Array:
        return self.alpha / (self.alpha + self.beta)


def single_stream_init(num_prompts: int, offline_successes=None, offline_trials=None, *,
                       rho_min: float = 0.875) -> SingleStreamState:
    """Initial tracker. Official code (verl recipe `spo`): without offline estimates
    alpha = beta = 0.5; with s successes out of n offline samples per prompt,
    alpha = N0 (s + 0.5) / (n + 1), beta = N0 (n - s + 0.5) / (n + 1), N0 = 1 / (1 - rho_min)
    (the effective memory of the tracker at the strongest forgetting)."""
    if offline_successes is None:
        half = jnp.full((num_prompts,), 0.5, jnp.float32)
        return SingleStreamState(alpha=half, beta=half)
    s = jnp.asarray(offline_successes, jnp.float32)
    n = jnp.broadcast_to(jnp.asarray(offline_trials, jnp.float32), s.shape)
    if s.shape != (num_prompts,):
        raise ValueError(f"single_stream_init: offline_successes has shape {s.shape}, "
                         f"expected ({num_prompts},)")
    n0 = 1.0 / (1.0 - rho_min)
    return SingleStreamState(alpha=n0 * (s + 0.5) / (n + 1), beta=n0 * (n - s + 0.5) / (n + 1))


@register()
@jitted()
def single_stream(state: SingleStreamState, prompt_ids, rewards, valid=None, *,
                  eps: float = 1e-8):
    """Single-stream PO advantage: A = r - alpha/(alpha + beta), normalized over the batch.

    Paper: "Single-stream Policy Optimization" (SPO). Formula from the official code
    (verl recipe `spo`, `spo_ray_trainer.py`): the baseline is the tracker's current
    (pre-update) mean p_hat of the sample's prompt; the advantages are then normalized
    over the whole batch, (A - mean) / (std + 1e-8), std unbiased. No groups: every
    sample carries signal even when all samples of a prompt agree. Returns
    `(adv_B, metrics)`; update the state after the policy step with
    `single_stream_update`. rlx: invalid samples (mask, NaN, id out of range) get 0 and
    are left out of the batch statistics; with < 2 valid samples all advantages are 0.
    """
    N = state.alpha.shape[0]
    ids, ok, x, metrics = _flat_inputs("single_stream", N, prompt_ids, valid, rewards=rewards)
    p_hat = state.p_hat[ids]
    raw = jnp.where(ok, x["rewards"] - p_hat, 0)
    n = jnp.sum(ok)
    mean = ops.masked_mean(raw, ok)
    std = ops.masked_std(raw, ok, ddof=1)
    adv = jnp.where(ok & (n >= 2), (raw - mean) / (std + eps), 0).astype(raw.dtype)
    metrics = dict(metrics, p_hat_mean=ops.masked_mean(p_hat, ok),
                   adv_before_norm_mean=mean)
    return adv, metrics


def policy_drift(logp_prev_BT, logp_now_BT, mask_BT) -> Array:
    """D = token-mean |log pi_prev - log pi_now| per row `[B]`: SPO's KL proxy between the
    policy that last saw a prompt and the current policy, on that earlier response."""
    d = jnp.abs(jnp.asarray(logp_prev_BT) - jnp.asarray(logp_now_BT))
    return ops.masked_mean(d, mask_BT, axis=1)


@jitted()
def single_stream_update(state: SingleStreamState, prompt_ids, rewards, drift, valid=None, *,
                         d_half: float = 0.06, rho_min: float = 0.875, rho_max: float = 0.96):
    """Tracker update after the policy step: rho = clip(2^(-D / d_half), rho_min, rho_max),
    alpha <- rho alpha + r, beta <- rho beta + (1 - r).

    Defaults from the official code: d_half = 0.06, rho_max = 0.96 and rho_min = 0.875
    (`SPO_RHO_CLIP_LOWER` of the recipe scripts). `drift` `[B]` is D of each sample's
    prompt (`policy_drift` on the prompt's previous response; 0 for a prompt seen for
    the first time, giving rho = rho_max). Rewards are success indicators in [0, 1].

    rlx difference: when a prompt appears several times in the batch the official code
    applies each sample's update to the same old (alpha, beta) and keeps the last; rlx
    applies one batch update per prompt, rho = mean of its samples' rho,
    alpha <- rho alpha + sum r, beta <- rho beta + sum (1 - r). Identical with one sample
    per prompt (the paper's setting). Returns `(new_state, metrics)`.
    """
    N = state.alpha.shape[0]
    ids, ok, x, metrics = _flat_inputs("single_stream_update", N, prompt_ids, valid,
                                       rewards=rewards, drift=drift)
    rho = jnp.clip(jnp.exp2(-x["drift"] / d_half), rho_min, rho_max)
    w = ok.astype(jnp.float32)
    cnt = jax.ops.segment_sum(w, ids, num_segments=N)
    rho_sum = jax.ops.segment_sum(w * rho, ids, num_segments=N)
    succ = jax.ops.segment_sum(w * x["rewards"], ids, num_segments=N)
    seen = cnt > 0
    rho_p = jnp.where(seen, rho_sum / jnp.where(seen, cnt, 1), 1.0)
    alpha = jnp.where(seen, rho_p * state.alpha + succ, state.alpha)
    beta = jnp.where(seen, rho_p * state.beta + (cnt - succ), state.beta)
    metrics = dict(metrics, rho_mean=ops.masked_mean(rho, ok), drift_mean=ops.masked_mean(
        x["drift"], ok))
    return SingleStreamState(alpha=alpha, beta=beta), metrics


def sampling_weights(state: SingleStreamState, *, epsilon: float = 0.05) -> Array:
    """SPO's prioritized sampling weight of each prompt: sqrt(p_hat (1 - p_hat)) + 0.05
    (official `EXPLORATION_EPSILON`); normalize to get sampling probabilities."""
    p = state.p_hat
    return jnp.sqrt(jnp.clip(p * (1 - p), 0.0, None)) + epsilon


# ------------------------------------------------------------------ HAPO


@flax.struct.dataclass
class HistoryState:
    """Shortest correct response length seen per prompt, `[N]` float32; +inf = none yet."""
    min_len: Array


def history_init(num_prompts: int) -> HistoryState:
    return HistoryState(min_len=jnp.full((num_prompts,), jnp.inf, jnp.float32))


@register()
@jitted()
def history_length(state: HistoryState, prompt_ids, lengths, correct, valid=None, *,
                   weight: float = 1.0, correct_floor: float = -0.7):
    """HAPO reward: correctness plus a history-aware cosine length reward.

    Paper: "HAPO: Training Language Models to Reason Concisely via History-Aware Policy
    Optimization". Formula and defaults from the official code (`compute_len_reward`,
    cosine type, history mode "min", w_lr = 1): with h the shortest correct length seen
    so far for the prompt and L the response length in tokens,
        c = cos((L / h) * pi / 2) if L < 2h else -1;
        correct: max(-0.7, c);  wrong: min(0, c);  no history yet: 0;
        reward = correct + weight * c.
    The reward uses the history *before* this batch; then h <- min(h, shortest correct
    L of the batch for that prompt). Returns `(rewards_B, new_state, metrics)`; feed the
    rewards (reshaped `[P, G]`) to a group estimator such as `grpo`.
    rlx: invalid samples get reward 0 and do not update the history.
    """
    N = state.min_len.shape[0]
    ids, ok, x, metrics = _flat_inputs("history_length", N, prompt_ids, valid,
                                       lengths=lengths, correct=correct)
    L = x["lengths"]
    is_corr = x["correct"] > 0.5
    h = state.min_len[ids]
    has = jnp.isfinite(h) & (h > 0)
    ratio = L / jnp.where(has, h, 1.0)
    c = jnp.where(ratio < 2, jnp.cos(ratio * (math.pi / 2)), -1.0)
    c = jnp.where(is_corr, jnp.maximum(correct_floor, c), jnp.minimum(0.0, c))
    c = jnp.where(has, c, 0.0)
    reward = jnp.where(ok, is_corr.astype(L.dtype) + weight * c, 0).astype(L.dtype)
    cand = jnp.where(ok & is_corr, L, jnp.inf)
    batch_min = jax.ops.segment_min(cand, ids, num_segments=N)
    new = HistoryState(min_len=jnp.minimum(state.min_len, batch_min))
    metrics = dict(metrics, length_reward_mean=ops.masked_mean(c, ok),
                   with_history=count_metric(ok & has))
    return reward, new, metrics
