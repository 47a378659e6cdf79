"""GiGPO: group-in-group advantages for multi-step agent trajectories.

Layout: P tasks (prompts), G trajectories per task, S steps per trajectory, each step
one LLM response. Step arrays are `[P, G, S]` (right-padded, `step_valid` marks real
steps); anchor states are integer ids (equal id = identical environment state; ids are
compared only within the same task p). The per-step advantage `[P, G, S]` reshaped to
`[P * G, S]` feeds `to_tokens` with the step responses as rows ordered (p, g, s).
"""

from __future__ import annotations

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
    safe_ratio,
)

Array = jax.Array


def segment_stats(x_PN: Array, ids_PN: Array, valid_PN: Array, *, ddof: int = 1):
    """Per-entry mean, std (given ddof) and size of its segment: the valid entries of
    the same row with the same id. Invalid entries get (0, 0, 0).

    Sort-based (O(N log N) per row, static shapes): sort each row by (invalid, id),
    number the runs of equal ids, reduce with `segment_sum`, and gather back.
    """
    P, N = x_PN.shape
    order = jnp.lexsort((ids_PN, ~valid_PN), axis=-1)
    ids_s = jnp.take_along_axis(ids_PN, order, axis=-1)
    ok_s = jnp.take_along_axis(valid_PN, order, axis=-1)
    x_s = jnp.where(ok_s, jnp.take_along_axis(x_PN, order, axis=-1), 0)
    new = jnp.concatenate([jnp.ones((P, 1), bool),
                           (ids_s[:, 1:] != ids_s[:, :-1]) | (ok_s[:, 1:] != ok_s[:, :-1])], axis=1)
    seg = jnp.cumsum(new, axis=1) - 1 + (jnp.arange(P) * N)[:, None]
    flat = seg.reshape(-1)
    w = ok_s.astype(x_s.dtype).reshape(-1)
    cnt = jax.ops.segment_sum(w, flat, num_segments=P * N)
    tot = jax.ops.segment_sum(x_s.reshape(-1), flat, num_segments=P * N)
    mean = safe_ratio(tot, cnt)
    dev = jnp.where(ok_s.reshape(-1), x_s.reshape(-1) - mean[flat], 0)
    sq = jax.ops.segment_sum(jnp.square(dev), flat, num_segments=P * N)
    var = safe_ratio(sq, cnt - ddof)
    std = jnp.where(var > 0, jnp.sqrt(jnp.where(var > 0, var, 1)), 0)
    inv = jnp.argsort(order, axis=-1)

    def back(v):
        return jnp.where(valid_PN, jnp.take_along_axis(v[flat].reshape(P, N), inv, axis=-1), 0)

    return back(mean), back(std), back(cnt)


def discounted_returns(rewards_PGS: Array, valid_PGS: Array, gamma) -> Array:
    """R_t = sum_k gamma^k r_{t+k} over the valid steps of each trajectory (invalid
    steps are skipped, not counted as time); 0 at invalid steps."""
    def step(running, inp):
        r, ok = inp
        ret = r + gamma * running
        running = jnp.where(ok, ret, running)
        return running, jnp.where(ok, ret, 0)

    r_SPG = jnp.moveaxis(rewards_PGS, -1, 0)
    ok_SPG = jnp.moveaxis(valid_PGS, -1, 0)
    _, ret = jax.lax.scan(step, jnp.zeros(r_SPG.shape[1:], r_SPG.dtype), (r_SPG, ok_SPG),
                          reverse=True)
    return jnp.moveaxis(ret, 0, -1)


@register()
@jitted("mode", "episode_stats_per_step")
def gigpo(step_rewards, anchor_ids, step_valid=None, *, episode_rewards=None, valid=None,
          gamma: float = 0.95, step_weight: float = 1.0, mode: str = "mean_norm",
          eps: float = 1e-6, episode_stats_per_step: bool = True):
    """GiGPO advantage: A = A^E + w * A^S for every step of every trajectory.

    Paper: "Group-in-Group Policy Optimization for LLM Agent Training" (GiGPO).
    Definitions and defaults from the official code (verl-agent `gigpo/core_gigpo.py`,
    `compute_gigpo_outcome_advantage`):
      * episode level (Eq. 3): the trajectory's score R (`episode_rewards` `[P, G]`,
        default: the sum of its valid step rewards) relative to its task group:
        A^E = R - mean ("mean_norm", the default) or (R - mean) / (std + 1e-6)
        ("mean_std_norm", std unbiased). With `episode_stats_per_step` (the official
        default, `compute_mean_std_cross_steps=True`) every *step* of a trajectory
        counts as one sample of the statistics, so long trajectories weigh more;
        False gives the paper's per-trajectory statistics.
      * step level (Eqs. 5-7): discounted step returns R_t = sum_k gamma^k r_{t+k}
        (gamma = 0.95); anchor groups = the valid steps of the same task with the same
        `anchor_ids`; A^S = R_t - mean of its anchor group (or / (std + 1e-6)); a
        singleton anchor group gives A^S = 0.
      * A = A^E + step_weight * A^S, step_weight = 1.

    Inputs: `step_rewards` float `[P, G, S]`, `anchor_ids` int `[P, G, S]`,
    `step_valid` bool `[P, G, S]`, `valid` bool `[P, G]` (trajectory mask). A
    trajectory with a NaN/Inf reward or no valid step is invalid (all its steps 0).
    A task whose statistics have a single row — one valid trajectory of one step, or
    one valid trajectory with `episode_stats_per_step=False` — gets A^E = R (divided by
    1 + 1e-6 in "mean_std_norm"): the official code gives a one-row group mean 0 and
    std 1. One trajectory of several steps (per-step statistics) is several equal rows:
    A^E = 0. rlx differences: the official similarity-based grouping of text
    observations is left to the caller (map similar states to one id).
    Metrics: degenerate_groups, invalid_samples (trajectories), singleton_anchor_steps,
    anchor_groups, nonfinite_rewards.
    """
    if mode not in ("mean_norm", "mean_std_norm"):
        raise ValueError(f"gigpo: mode must be 'mean_norm' or 'mean_std_norm', got {mode!r}")
    r = as_float("gigpo", "step_rewards", step_rewards)
    if r.ndim != 3:
        raise ValueError(f"gigpo: step_rewards must be [P, G, S], got shape {r.shape}")
    P, G, S = r.shape
    ids = as_ids("gigpo", "anchor_ids", anchor_ids, r.shape)
    sv = jnp.ones(r.shape, bool) if step_valid is None else as_mask(
        "gigpo", "step_valid", step_valid, r.shape)
    tv = jnp.ones((P, G), bool) if valid is None else as_mask("gigpo", "valid", valid, (P, G))
    finite_steps = jnp.all(jnp.isfinite(r) | ~sv, axis=2)
    if episode_rewards is None:
        R = jnp.sum(jnp.where(sv, r, 0), axis=2)
    else:
        R = as_float("gigpo", "episode_rewards", episode_rewards)
        check_shape("gigpo", "episode_rewards", R, (P, G))
    finite = finite_steps & jnp.isfinite(R)
    traj_ok = tv & finite & jnp.any(sv, axis=2)
    R = jnp.where(traj_ok, R, 0)
    step_ok = sv & traj_ok[:, :, None]
    r = jnp.where(step_ok, r, 0)
    norm_std = mode == "mean_std_norm"

    # Episode level.
    n_traj = jnp.sum(traj_ok, axis=1)
    weight = jnp.sum(step_ok, axis=2) if episode_stats_per_step else traj_ok
    weight = weight.astype(r.dtype)
    mean_E = ops.masked_mean(R, weight, axis=1)
    adv_E = R - mean_E[:, None]
    if norm_std:
        std_E = ops.masked_std(R, weight, ddof=1, axis=1)
        adv_E = safe_ratio(adv_E, jnp.broadcast_to((std_E + eps)[:, None], adv_E.shape))
    hi = jnp.max(jnp.where(traj_ok, R, -jnp.inf), axis=1)
    lo = jnp.min(jnp.where(traj_ok, R, jnp.inf), axis=1)
    adv_E = jnp.where(traj_ok & ((n_traj >= 2) & (hi > lo))[:, None], adv_E, 0)
    # A group of one row (one trajectory of one step, or one trajectory with per-trajectory
    # statistics): the official statistics are mean 0, std 1, so A^E = R (/ (1 + eps)).
    single = jnp.sum(weight, axis=1) == 1
    adv_E = jnp.where(traj_ok & single[:, None], R / (1.0 + eps) if norm_std else R, adv_E)

    # Step level.
    returns = discounted_returns(r, step_ok, gamma)
    N = G * S
    mean_S, std_S, size_S = segment_stats(returns.reshape(P, N), ids.reshape(P, N),
                                          step_ok.reshape(P, N), ddof=1)
    adv_S = returns.reshape(P, N) - mean_S
    if norm_std:
        adv_S = safe_ratio(adv_S, std_S + eps)
    adv_S = jnp.where(size_S >= 2, adv_S, 0).reshape(P, G, S)

    adv = jnp.where(step_ok, adv_E[:, :, None] + step_weight * adv_S, 0).astype(r.dtype)
    singleton = step_ok.reshape(P, N) & (size_S == 1)
    metrics = {
        "degenerate_groups": count_metric(n_traj < 2),
        "invalid_samples": count_metric(~traj_ok),
        "nonfinite_rewards": count_metric(tv & ~finite),
        "singleton_anchor_steps": count_metric(singleton),
        "anchor_groups": jnp.sum(jnp.where(step_ok.reshape(P, N), 1.0 / jnp.maximum(size_S, 1), 0)),
    }
    return adv, metrics
