"""Rollout correction: the sampler's policy vs the trainer's, importance weights and masks.

The sampler (bf16 weights, kernels, another program) and the trainer compute the same
policy pi_T with different numerics, so the tokens were drawn from pi_rollout while PPO's
ratio is taken against the trainer's pi_old. The correction ("When Speed Kills
Stability: Demystifying RL Collapse from the Training-Inference Mismatch"; verl
`rollout_corr_helper`, TRL `vllm_importance_sampling_mode`) reweights each token by
w = pi_old / pi_rollout, at one of two levels, and/or masks outliers:

    delta_t = log pi_old(y_t) - log pi_rollout(y_t)           (0 off the mask)
    IS  "token":     w_t = min(exp(delta_t), C)                 truncated IS (TIS), C = 2
        "sequence":  w_t = min(exp(sum_t delta_t), C)           one weight per response
    RS  "token":     keep_t = L <= exp(delta_t) <= U            masked IS (MIS)
        "sequence":  keep_t = L <= exp(sum_t delta_t) <= U      whole responses
        "geometric": keep_t = L <= exp(mean_t delta_t) <= U     length-normalized
    U = 2 and L = 1 / U by default; exponents clamped to +-20 (verl's safety bound).

The weights are constants (stop-gradient). The engine applies them as a term of the
policy loss: the per-token loss L_t becomes w_t * L_t — done by scaling the advantage,
w_t * A_t, which is the same for every loss whose per-token value is A_t times a factor
that depends on A only through its sign (ppo_clip with clip-higher and dual clip, gspo,
cispo: `WEIGHTABLE_LOSSES`) since w > 0; masked tokens leave the loss mask (and so the
aggregation's denominator, as verl's modified response mask does).

TRL's modes are the same four: token_truncate = IS "token", sequence_truncate = IS
"sequence", token_mask = RS "token", sequence_mask = RS "sequence" (TRL's cap = U; its
mask keeps w <= cap only — set `rs_threshold_lower` to a tiny value for that).

Which log-probs. pi_old is the trainer's recomputation at the policy temperature over
the full vocabulary; pi_rollout is the sampler's `logprobs` — the same definition,
log softmax(logits / T)[token], computed by the sampler — never its
`sampling_logprobs` (the top-k / top-p renormalized distribution it drew from).
Comparing a full-vocabulary log-prob with a truncated-and-renormalized one carries
log(surviving mass) into every ratio (TRL #6789, the same bug in verl and SkyRL): it is
a difference of definitions, not of numerics. rlx reports both from the sampler, so
this module only ever sees the full-distribution ones.

`agreement` gives the per-step diagnostics: mean / max |delta|, the mean absolute
difference of the token probabilities, their Pearson correlation, and the k1 / k3
estimates of KL(pi_rollout || pi_old).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops

Array = jax.Array
SAFETY_BOUND = 20.0
IS_LEVELS = ("none", "token", "sequence")
RS_LEVELS = ("none", "token", "sequence", "geometric")
WEIGHTABLE_LOSSES = ("ppo_clip", "gspo", "cispo")


def _level_log_ratio(delta_BT: Array, mask_BT: Array, level: str) -> Array:
    """[B, T]: log of the weight each token gets at `level` (clamped to +-20)."""
    if level == "token":
        lr = delta_BT
    elif level == "sequence":
        lr = jnp.broadcast_to(jnp.sum(delta_BT, axis=1, keepdims=True), delta_BT.shape)
    elif level == "geometric":
        lr = jnp.broadcast_to(ops.masked_mean(delta_BT, mask_BT, axis=1)[:, None], delta_BT.shape)
    else:
        raise ValueError(f"unknown level {level!r}")
    return jnp.clip(lr, -SAFETY_BOUND, SAFETY_BOUND)


def rollout_correction(train_logp: Array, rollout_logp: Array, mask: Array, *, is_level: str = "token",
                       is_threshold: float = 2.0, rs_level: str = "none", rs_threshold: float = 2.0,
                       rs_threshold_lower: float | None = None) -> tuple[Array, Array, dict[str, Array]]:
    """(weights [B, T] float32, 1 where IS is off and 0 off the mask; keep [B, T] bool,
    the mask less the rejected tokens; metrics) — see the module docstring."""
    if is_level not in IS_LEVELS:
        raise ValueError(f"is_level must be one of {IS_LEVELS}, got {is_level!r}")
    if rs_level not in RS_LEVELS:
        raise ValueError(f"rs_level must be one of {RS_LEVELS}, got {rs_level!r}")
    if not is_threshold > 0 or not rs_threshold > 0:
        raise ValueError(f"thresholds must be > 0, got is {is_threshold!r}, rs {rs_threshold!r}")
    train_logp, rollout_logp = jnp.asarray(train_logp, jnp.float32), jnp.asarray(rollout_logp, jnp.float32)
    if train_logp.shape != rollout_logp.shape or train_logp.shape != jnp.shape(mask):
        raise ValueError(f"train_logp {train_logp.shape}, rollout_logp {rollout_logp.shape} and mask "
                         f"{jnp.shape(mask)} must have one [B, T] shape")
    mask = jnp.asarray(mask, bool)
    delta = jax.lax.stop_gradient(jnp.where(mask, train_logp - rollout_logp, 0.0))
    metrics = {}
    if is_level == "none":
        w = jnp.where(mask, 1.0, 0.0)
    else:
        raw = jnp.exp(_level_log_ratio(delta, mask, is_level))
        w = jnp.where(mask, jnp.minimum(raw, is_threshold), 0.0)
        metrics["is_weight_mean"] = ops.masked_mean(w, mask)
        metrics["is_truncated_frac"] = ops.masked_mean((raw > is_threshold).astype(jnp.float32), mask)
    keep = mask
    if rs_level != "none":
        lo = 1.0 / rs_threshold if rs_threshold_lower is None else rs_threshold_lower
        r = jnp.exp(_level_log_ratio(delta, mask, rs_level))
        keep = mask & (r >= lo) & (r <= rs_threshold)
        rows = jnp.any(mask, axis=1)
        metrics["masked_frac"] = ops.masked_mean((~keep).astype(jnp.float32), mask)
        metrics["seq_masked_frac"] = ops.masked_mean(jnp.any(mask & ~keep, axis=1).astype(jnp.float32), rows)
    return w.astype(jnp.float32), keep, metrics


def agreement(train_logp: Array, rollout_logp: Array, mask: Array) -> dict[str, Array]:
    """Sampler-vs-trainer agreement over the masked tokens: abs_dlogp_mean / _max,
    prob_abs_diff_mean, prob_pearson (of exp(logp); 1 when either side is constant over
    the mask and they agree, else NaN-free 0), kl_k1 and kl_k3 of KL(pi_rollout || pi_old)
    from the sampled tokens."""
    mask = jnp.asarray(mask, bool)
    a = jnp.asarray(train_logp, jnp.float32)
    b = jnp.asarray(rollout_logp, jnp.float32)
    d = jnp.where(mask, a - b, 0.0)
    pa, pb = jnp.exp(jnp.where(mask, a, 0.0)), jnp.exp(jnp.where(mask, b, 0.0))
    ma, mb = ops.masked_mean(pa, mask), ops.masked_mean(pb, mask)
    cov = ops.masked_mean((pa - ma) * (pb - mb), mask)
    va, vb = ops.masked_mean(jnp.square(pa - ma), mask), ops.masked_mean(jnp.square(pb - mb), mask)
    den = jnp.sqrt(va * vb)
    same = ops.masked_mean(jnp.abs(pa - pb), mask) == 0
    pearson = jnp.where(den > 0, cov / jnp.where(den > 0, den, 1.0), jnp.where(same, 1.0, 0.0))
    return {"abs_dlogp_mean": ops.masked_mean(jnp.abs(d), mask),
            "abs_dlogp_max": jnp.max(jnp.where(mask, jnp.abs(d), 0.0)),
            "prob_abs_diff_mean": ops.masked_mean(jnp.abs(pa - pb), mask),
            "prob_pearson": pearson,
            "kl_k1": ops.masked_mean(-d, mask),
            "kl_k3": ops.masked_mean(jnp.exp(d) - 1.0 - d, mask)}


__all__ = ["IS_LEVELS", "RS_LEVELS", "WEIGHTABLE_LOSSES", "agreement", "rollout_correction"]
