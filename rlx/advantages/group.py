"""Group-relative outcome estimators (the GRPO family): one scalar advantage per sample
of a `[P, G]` group, computed from the rewards of the other samples of its prompt.

Shared behaviour (see `rlx.advantages.core`): invalid samples (masked, or with a NaN/Inf
reward) are excluded from every statistic and get 0; a group with fewer than 2 valid
samples gets 0 everywhere and is counted in `metrics["degenerate_groups"]`. Where the
official code handles a one-sample group differently (verl, NGRPO: mean 0, std 1, so
the advantage is the raw reward) rlx deviates on purpose: a lone sample has no
baseline, and its raw reward is not an advantage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.advantages.core import (
    as_float,
    centered,
    check_ddof,
    check_shape,
    constant_groups,
    finish,
    group_extrema,
    inverse_or_zero,
    jitted,
    prepare_groups,
    register,
    safe_ratio,
)

Array = jax.Array


def _normalized(g, mean_P, std_P, eps, zero_P):
    """(r - mean) / (std + eps) per group; 0 where `zero_P` or the group is degenerate."""
    return centered(g, mean_P, inverse_or_zero(std_P + eps, (g.count >= 2) & ~zero_P))


@register()
@jitted("ddof")
def grpo(rewards, valid=None, *, ddof: int = 1, eps: float = 1e-6):
    """GRPO advantage: A = (r - mean_g) / (std_g + eps).

    Paper: "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
    Models" (GRPO, outcome supervision). Statistics over the valid samples of each
    group; std with the given `ddof` (1 = unbiased, what `torch.std` in verl, TRL and
    OpenRLHF computes; 0 = the population std). Defaults ddof=1, eps=1e-6 (verl).
    Peers differ in eps: verl 1e-6, TRL 1e-4, OpenRLHF 1e-9 — pass yours explicitly.

    rlx differences: a group whose valid rewards are all exactly equal gets exactly 0
    (peers divide a rounding residue by eps); a group with < 2 valid samples gets 0
    (verl: the raw reward). Metrics: degenerate_groups, zero_variance_groups,
    invalid_samples, nonfinite_rewards.
    """
    ddof = check_ddof("grpo", ddof)
    g = prepare_groups("grpo", rewards, valid)
    stats = ops.group_stats(g.rewards, g.valid, ddof=ddof)
    zero = constant_groups(g.rewards, g.valid)
    adv = _normalized(g, stats.mean, stats.std, eps, zero)
    metrics = dict(g.metrics, zero_variance_groups=jnp.sum((g.count >= 2) & zero, dtype=jnp.int32))
    return adv, metrics


@register()
@jitted()
def dr_grpo(rewards, valid=None):
    """Dr. GRPO advantage: A = r - mean_g (no division by the group std).

    Paper: "Understanding R1-Zero-Like Training: A Critical Perspective" (Dr. GRPO).
    Pair it with the `seq-mean-token-sum-norm` aggregation (a constant denominator,
    `rlx.losses`), which is the other half of the paper's fix. Groups with < 2 valid
    samples get 0.
    """
    g = prepare_groups("dr_grpo", rewards, valid)
    mean = ops.masked_mean(g.rewards, g.valid, axis=1)
    return centered(g, mean, (g.count >= 2).astype(g.rewards.dtype)), g.metrics


@register()
@jitted()
def rloo(rewards, valid=None):
    """REINFORCE Leave-One-Out: A_i = r_i - mean_{j != i} r_j = n/(n-1) (r_i - mean_g).

    Paper: "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
    Human Feedback in LLMs" (RLOO). n is the number of valid samples of the group; the
    leave-one-out mean is over the other *valid* samples. Groups with n < 2 get 0 (the
    leave-one-out baseline is undefined; verl returns the raw reward).
    """
    g = prepare_groups("rloo", rewards, valid)
    mean = ops.masked_mean(g.rewards, g.valid, axis=1)
    factor = jnp.where(g.count >= 2, safe_ratio(g.count, g.count - 1), 0)
    return centered(g, mean, factor), g.metrics


@register()
@jitted("ddof")
def lite_ppo(rewards, valid=None, *, ddof: int = 1, eps: float = 1e-6):
    """Lite PPO advantage: A = (r - mean_g) / (std_batch + eps).

    Paper: "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning" (Lite PPO =
    group-level mean, batch-level std, used with token-level loss aggregation). The
    formula is rlx's reading of the abstract, cross-checked against the authors'
    framework (ROLL: `norm_mean_type="group"`, `norm_std_type="batch"`), whose batch std
    is `torch.std` (ddof=1) of all the batch's rewards and whose eps is 1e-6: the
    defaults here. std_batch is over every valid sample of the batch, including those
    of degenerate groups; degenerate groups themselves get 0.
    """
    ddof = check_ddof("lite_ppo", ddof)
    g = prepare_groups("lite_ppo", rewards, valid)
    mean = ops.masked_mean(g.rewards, g.valid, axis=1)
    std = ops.masked_std(g.rewards, g.valid, ddof=ddof)
    zero = constant_groups(g.rewards, g.valid)
    factor = inverse_or_zero(jnp.broadcast_to(std + eps, mean.shape), (g.count >= 2) & ~zero)
    return centered(g, mean, factor), dict(g.metrics, batch_std=std)


@register()
@jitted()
def ngrpo(rewards, valid=None, *, r_max: float = 1.0, eps: float = 1e-6):
    """NGRPO advantage calibration: statistics over the group plus one virtual sample
    with the maximum reward, A = (r - mean') / (std' + eps), std' with ddof=1.

    Paper: "NGRPO: Negative-enhanced Group Relative Policy Optimization". Defaults from
    the official code (`compute_ngrpo_outcome_advantage`): r_max=1, one virtual sample,
    `torch.std` (unbiased), eps=1e-6. An all-wrong group thus gets a negative advantage
    instead of 0. The paper pairs it with the asymmetric clip [1 - 0.16, 1 + 0.24]
    (`rlx.losses`).

    With n valid samples: mean' = (sum r + r_max) / (n + 1),
    var' = (sum (r - mean')^2 + (r_max - mean')^2) / n.
    rlx differences: a group with < 2 valid samples gets 0 (official: the raw reward);
    a group whose rewards all equal r_max gets exactly 0.
    """
    g = prepare_groups("ngrpo", rewards, valid)
    n = g.count
    total = jnp.sum(g.rewards, axis=1) + r_max
    mean = total / (n + 1)
    dev = jnp.where(g.valid, g.rewards - mean[:, None], 0)
    sq = jnp.sum(jnp.square(dev), axis=1) + jnp.square(r_max - mean)
    var = safe_ratio(sq, n)
    std = jnp.sqrt(jnp.maximum(var, 0))
    hi, lo = group_extrema(g.rewards, g.valid)
    at_max = (hi <= lo) & (hi == r_max)
    return _normalized(g, mean, std, eps, at_max), g.metrics


@register()
@jitted()
def opo(rewards, lengths, valid=None):
    """On-Policy RL with Optimal reward baseline: A = r - sum_j |y_j| r_j / sum_j |y_j|.

    Paper: "On-Policy RL with Optimal Reward Baseline" (OPO); formula from verl's
    `compute_opo_outcome_advantage` (the length-weighted group mean, lengths = response
    tokens). `lengths` `[P, G]` (e.g. `completion_mask.sum(-1).reshape(P, G)`).
    rlx differences: groups with < 2 valid samples get 0 (verl: baseline 0); if all
    valid lengths are 0 the baseline is the unweighted mean instead of a 0/0.
    """
    g = prepare_groups("opo", rewards, valid)
    L = as_float("opo", "lengths", lengths)
    check_shape("opo", "lengths", L, g.rewards.shape)
    w = jnp.where(g.valid, L, 0)
    wsum = jnp.sum(w, axis=1)
    weighted = safe_ratio(jnp.sum(w * g.rewards, axis=1), wsum)
    plain = ops.masked_mean(g.rewards, g.valid, axis=1)
    base = jnp.where(wsum > 0, weighted, plain)
    return centered(g, base, (g.count >= 2).astype(g.rewards.dtype)), g.metrics


@register()
@jitted("norm_by_std")
def passk(rewards, valid=None, *, norm_by_std: bool = True, eps: float = 1e-6):
    """Pass@k advantage: only the group's best sample gets r_max - r_second; others 0.

    Paper: "Optimizing Language Models for Inference Time Objectives using
    Reinforcement Learning" (arXiv 2503.19595); implementation and defaults from verl's
    `compute_grpo_passk_outcome_advantage`: with `norm_by_std` (verl's
    `norm_adv_by_std_in_grpo`, default True) the difference is divided by
    (std_g + 1e-6), std unbiased. Ties: the first best sample (lowest index) is the
    best; with a tie r_max == r_second the advantage is 0 anyway. Groups with < 2
    valid samples get 0 (verl raises).
    """
    g = prepare_groups("passk", rewards, valid)
    P, G = g.rewards.shape
    masked = jnp.where(g.valid, g.rewards, -jnp.inf)
    best = jnp.argmax(masked, axis=1)
    is_best = jnp.arange(G)[None, :] == best[:, None]
    r_max = jnp.max(masked, axis=1)
    r_second = jnp.max(jnp.where(is_best, -jnp.inf, masked), axis=1)
    ok = g.count >= 2
    diff = jnp.where(ok, r_max - jnp.where(ok, r_second, 0), 0)
    if norm_by_std:
        std = ops.masked_std(g.rewards, g.valid, ddof=1, axis=1)
        diff = safe_ratio(diff, std + eps)
    adv = jnp.where(is_best & g.valid & ok[:, None], diff[:, None], 0).astype(g.rewards.dtype)
    return adv, g.metrics


@register()
@jitted()
def kalman(rewards, valid=None, *, process_var: float = 1e-5, meas_var: float = 1e-2,
           init_mean: float = 0.0, init_var: float = 1.0, eps: float = 1e-8):
    """KRPO: a 1-D Kalman filter over each group's rewards, in sample order, replaces
    the group mean and std: A_i = (r_i - x_i) / (sqrt(P_i) + eps).

    Paper: "Kalman Filter Enhanced Group Relative Policy Optimization for Language
    Model Reasoning" (KRPO). Filter and defaults from the official code
    (`KalmanFilter`, `group_advantages`): x0 = 0, P0 = 1, process noise Q = 1e-5,
    measurement noise R = 1e-2, eps = 1e-8; per sample (predict, then update):
        P- = P + Q;  K = P- / (P- + R);  x = x + K (r - x);  P = (1 - K) P-
    and the advantage uses the *updated* x_i, P_i (which already include r_i).

    The filter restarts for every group (row) and runs over G with `lax.scan`; an
    invalid sample leaves the state unchanged and gets 0. Unlike GRPO, a group of equal
    rewards does not get 0: the estimate starts at x0 = 0 and lags behind (official
    behaviour, kept). rlx difference: groups with < 2 valid samples get 0 (the official
    filter would return ~0.1 r for a lone sample).
    """
    g = prepare_groups("kalman", rewards, valid)
    P = g.rewards.shape[0]
    dtype = g.rewards.dtype

    def step(carry, inp):
        x, var = carry
        r, ok = inp
        var_pred = var + process_var
        gain = var_pred / (var_pred + meas_var)
        x_new = x + gain * (r - x)
        var_new = (1 - gain) * var_pred
        adv = (r - x_new) / (jnp.sqrt(var_new) + eps)
        x = jnp.where(ok, x_new, x)
        var = jnp.where(ok, var_new, var)
        return (x, var), jnp.where(ok, adv, 0)

    init = (jnp.full((P,), init_mean, dtype), jnp.full((P,), init_var, dtype))
    _, adv_GP = jax.lax.scan(step, init, (g.rewards.T, g.valid.T))
    adv = finish(adv_GP.T, g.valid & (g.count >= 2)[:, None])
    return adv, g.metrics
