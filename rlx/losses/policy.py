"""Token-level policy losses: PPO-clip (with clip-higher and dual clip), GSPO, CISPO, Reg-GRPO.

Common signature (DESIGN.md principle 1 — no model inside a loss):

    fn(logp, old_logp, adv, mask, *, <parameters>, agg=...) -> (loss, metrics)

  logp      float [B, T]  log π_θ(y_t) of the sampled tokens (carries the gradient)
  old_logp  float [B, T]  log π_old(y_t) (data; no gradient flows into it)
  adv       float [B, T]  token-level advantages (data)
  mask      bool/float [B, T]  loss mask; masked positions may hold anything (NaN, −inf)
  agg       aggregation mode of `rlx.losses.aggregate` (global denominators)
  metrics   dict of scalar float32 arrays (stop-gradient)

ρ = exp(logπ − logπ_old) throughout; the log-ratio is clamped before the exponential
(`log_ratio_clamp`) as verl does. Every loss here is registered in `POLICY_LOSSES`.

Common metrics (over valid tokens): `approx_kl` = token-mean of k3 between π_old and
π_θ, i.e. ρ − 1 − log ρ (CleanRL/TRL's `approx_kl`, an unbiased estimate of
KL(π_old‖π_θ) from π_old's samples); `kl_k1` = token-mean of log π_old − log π_θ (verl's
`ppo_kl`); `ratio_mean`, `ratio_min`, `ratio_max`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.aggregate import aggregate, check_bt, check_mode
from rlx.registry import Registry

Array = jax.Array

POLICY_LOSSES = Registry("policy loss")
sg = jax.lax.stop_gradient


# ------------------------------------------------------------------------------ helpers


def prepare(logp: Array, old_logp: Array, adv: Array, mask: Array, *, log_ratio_clamp: float | None,
            agg: str | None) -> tuple[Array, Array, Array, Array]:
    """Validates `[B, T]` inputs; returns (valid bool, logp, masked log-ratio, masked adv).

    Masked positions get log-ratio 0 and advantage 0 (selected with `where`, so NaN or
    −inf in padding never reaches a value or a gradient).
    """
    check_bt(logp=logp, old_logp=old_logp, adv=adv, mask=mask)
    if agg is not None:
        check_mode(agg)
    if log_ratio_clamp is not None and not log_ratio_clamp > 0:
        raise ValueError(f"log_ratio_clamp must be positive or None, got {log_ratio_clamp!r}")
    valid = jnp.asarray(mask) != 0
    logp = jnp.where(valid, logp, 0.0)
    delta = jnp.where(valid, logp - jnp.where(valid, old_logp, 0.0), 0.0)
    if log_ratio_clamp is not None:
        delta = jnp.clip(delta, -log_ratio_clamp, log_ratio_clamp)
    adv = jnp.where(valid, adv, 0.0)
    return valid, logp, delta, adv


def ratio_metrics(delta_BT: Array, mask_BT: Array) -> dict[str, Array]:
    """approx_kl (k3 of π_old vs π_θ), kl_k1 (verl's ppo_kl) and ratio stats, stop-gradient."""
    delta = sg(delta_BT)
    ratio = jnp.exp(delta)
    valid = jnp.asarray(mask_BT) != 0
    any_valid = jnp.any(valid)
    big = jnp.finfo(ratio.dtype).max
    return {
        "approx_kl": ops.masked_mean(jnp.expm1(delta) - delta, mask_BT),
        "kl_k1": ops.masked_mean(-delta, mask_BT),
        "ratio_mean": ops.masked_mean(ratio, mask_BT),
        "ratio_min": jnp.where(any_valid, jnp.min(jnp.where(valid, ratio, big)), 0.0),
        "ratio_max": jnp.where(any_valid, jnp.max(jnp.where(valid, ratio, -big)), 0.0),
    }


def clipped_surrogate(ratio: Array, adv: Array, eps_low: float, eps_high: float,
                      dual_clip: float | None = None) -> tuple[Array, Array, Array, Array]:
    """Per-token max(−ρA, −clip(ρ, 1−ε_low, 1+ε_high)A), then min(·, −cA) where A < 0.

    Written as an explicit selection, so the gradient is exactly zero wherever a clip is
    active and exactly −A ∂ρ elsewhere. Returns (loss, low_active, high_active,
    dual_active): the lower clip binds for A < 0 and ρ < 1−ε_low, the upper one for A > 0
    and ρ > 1+ε_high, the dual clip for A < 0 and ρ > c.
    """
    low = (adv < 0) & (ratio < 1.0 - eps_low)
    high = (adv > 0) & (ratio > 1.0 + eps_high)
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = jnp.where(low | high, -adv * sg(clipped), -adv * ratio)
    if dual_clip is None:
        return loss, low, high, jnp.zeros_like(low)
    dual = (adv < 0) & (ratio > dual_clip)
    return jnp.where(dual, -adv * dual_clip, loss), low, high, dual


def _check_eps(eps_low: float, eps_high: float) -> None:
    if not 0 <= eps_low <= 1:
        raise ValueError(f"eps_low must be in [0, 1], got {eps_low!r}")
    if not eps_high >= 0:
        raise ValueError(f"eps_high must be >= 0, got {eps_high!r}")


def _frac(cond_BT: Array, mask_BT: Array) -> Array:
    return ops.masked_mean(cond_BT.astype(jnp.float32), mask_BT)


# ------------------------------------------------------------------------------- losses


@POLICY_LOSSES.register()
def ppo_clip(logp: Array, old_logp: Array, adv: Array, mask: Array, *, eps_low: float = 0.2,
             eps_high: float = 0.2, dual_clip: float | None = None, log_ratio_clamp: float | None = 20.0,
             agg: str = "token-mean", max_len: int | None = None,
             agg_denominator: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """PPO clipped surrogate (the GRPO/DAPO policy loss).

    Papers: "Proximal Policy Optimization Algorithms" (Schulman et al. 2017); clip-higher
    from "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (ε_low 0.2,
    ε_high 0.28); dual clip from "Mastering Complex Control in MOBA Games with Deep RL"
    (Ye et al. 2020, c = 3).

        L_t = max(−ρ_t A_t, −clip(ρ_t, 1−ε_low, 1+ε_high) A_t)
        L_t ← min(L_t, −c A_t)            where A_t < 0 and dual_clip = c
        loss = agg(L)

    Defaults: ε_low = ε_high = 0.2 (PPO), no dual clip, log ρ clamped to ±20 (verl),
    token-mean. `dual_clip` must be > 1 (verl asserts the same). At ρ = 1 the loss is
    −agg(A). Gradients are exactly zero on tokens where a clip is active.

    Metrics: clip_frac_low / clip_frac_high / dual_clip_frac (fraction of valid tokens
    where that clip binds), clip_frac (low or high), plus the common ratio metrics.
    `max_len` / `agg_denominator` are passed to `aggregate` (Dr. GRPO constant;
    gradient accumulation).
    """
    _check_eps(eps_low, eps_high)
    if dual_clip is not None and not dual_clip > 1:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip!r}")
    _, _, delta, a = prepare(logp, old_logp, adv, mask, log_ratio_clamp=log_ratio_clamp, agg=agg)
    ratio = jnp.exp(delta)
    per_tok, low, high, dual = clipped_surrogate(ratio, a, eps_low, eps_high, dual_clip)
    loss = aggregate(per_tok, mask, agg, max_len=max_len, denominator=agg_denominator)
    metrics = {"clip_frac_low": _frac(low, mask), "clip_frac_high": _frac(high, mask),
               "clip_frac": _frac(low | high, mask), "dual_clip_frac": _frac(dual, mask),
               **ratio_metrics(delta, mask)}
    return loss, metrics


@POLICY_LOSSES.register()
def gspo(logp: Array, old_logp: Array, adv: Array, mask: Array, *, eps_low: float = 3e-4,
         eps_high: float = 4e-4, variant: str = "seq", log_ratio_clamp: float | None = 10.0,
         agg: str = "seq-mean-token-mean", max_len: int | None = None,
         agg_denominator: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """Group Sequence Policy Optimization: PPO clipping on a length-normalized sequence ratio.

    Paper: "Group Sequence Policy Optimization" (Zheng et al., Qwen, 2025).

        s_i = exp( (1/|y_i|) Σ_t M_it (log π_θ − log π_old)(y_it) )     (variant "seq")
        s_it = sg(s_i) · π_θ(y_it) / sg(π_θ(y_it))                      (variant "token",
                                                                        GSPO-token)
        L_it = max(−s A_it, −clip(s, 1−ε_low, 1+ε_high) A_it),  loss = agg(L)

    With a sequence-level advantage both variants have the same value and gradient;
    GSPO-token differs only when A varies along the sequence. Defaults from the paper
    (ε_low = 3e-4, ε_high = 4e-4, also verl's GSPO recipe) and verl's implementation:
    log s clamped from above at 10 (verl clamps only the maximum), and the
    seq-mean-token-mean aggregation, which verl hard-codes for GSPO and which matches
    the paper's (1/G) Σ_i objective — rlx leaves `agg` selectable. Deviation from verl:
    an empty row gets s = 1 (log-ratio 0) instead of verl's clamp(min=1) length guard,
    which gives the same 0 log-ratio.

    Metrics: clip_frac_low / clip_frac_high (fraction of valid tokens whose sequence
    ratio is clipped), seq_ratio_mean (mean s_i over non-empty rows), common metrics.
    """
    _check_eps(eps_low, eps_high)
    if variant not in ("seq", "token"):
        raise ValueError(f"variant must be 'seq' or 'token', got {variant!r}")
    _, lp, delta, a = prepare(logp, old_logp, adv, mask, log_ratio_clamp=None, agg=agg)
    B, T = delta.shape
    seq_log_ratio_B = ops.masked_mean(delta, mask, axis=1)
    if variant == "seq":
        log_s = jnp.broadcast_to(seq_log_ratio_B[:, None], (B, T))
    else:
        log_s = sg(seq_log_ratio_B)[:, None] + lp - sg(lp)
    if log_ratio_clamp is not None:
        log_s = jnp.minimum(log_s, log_ratio_clamp)
        seq_log_ratio_B = jnp.minimum(seq_log_ratio_B, log_ratio_clamp)
    s = jnp.exp(log_s)
    per_tok, low, high, _ = clipped_surrogate(s, a, eps_low, eps_high)
    loss = aggregate(per_tok, mask, agg, max_len=max_len, denominator=agg_denominator)
    nonempty_B = ops.masked_count(delta, mask, axis=1) > 0
    metrics = {"clip_frac_low": _frac(low, mask), "clip_frac_high": _frac(high, mask),
               "clip_frac": _frac(low | high, mask),
               "seq_ratio_mean": ops.masked_mean(jnp.exp(sg(seq_log_ratio_B)), nonempty_B),
               **ratio_metrics(delta, mask)}
    return loss, metrics


@POLICY_LOSSES.register()
def cispo(logp: Array, old_logp: Array, adv: Array, mask: Array, *, eps_low: float = 1.0,
          eps_high: float = 0.28, log_ratio_clamp: float | None = 20.0, agg: str = "token-mean",
          max_len: int | None = None, agg_denominator: Array | None = None
          ) -> tuple[Array, dict[str, Array]]:
    """CISPO: REINFORCE weighted by a clipped, stop-gradient importance ratio.

    Paper: "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention"
    (MiniMax, 2025).

        L_t = −sg(clip(ρ_t, 1−ε_low, 1+ε_high)) · A_t · log π_θ(y_t),   loss = agg(L)

    (token-mean is the paper's normalization.) Every token keeps a gradient, −ĉ A ∇logπ;
    the clip only bounds its weight. Defaults: the paper imposes no lower bound
    ("ε_low set to a large value": here 1.0, i.e. a lower bound of 0) and tunes ε_high
    without publishing it; rlx uses 0.28 (DAPO's clip-higher, also Trinity-RFT's CISPO
    default). Note the value is −agg(ĉ A log π), not −agg(A) at ρ = 1; its gradient at
    ρ = 1 equals PPO's.

    Metrics: clip_frac_low (ρ < 1−ε_low), clip_frac_high (ρ > 1+ε_high), common metrics.
    """
    _check_eps(eps_low, eps_high)
    _, lp, delta, a = prepare(logp, old_logp, adv, mask, log_ratio_clamp=log_ratio_clamp, agg=agg)
    ratio = jnp.exp(delta)
    weight = sg(jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high))
    per_tok = -weight * a * lp
    loss = aggregate(per_tok, mask, agg, max_len=max_len, denominator=agg_denominator)
    low, high = ratio < 1.0 - eps_low, ratio > 1.0 + eps_high
    metrics = {"clip_frac_low": _frac(low, mask), "clip_frac_high": _frac(high, mask),
               "clip_frac": _frac(low | high, mask), **ratio_metrics(delta, mask)}
    return loss, metrics


@POLICY_LOSSES.register()
def reg_grpo(logp: Array, old_logp: Array, adv: Array, mask: Array, *, beta: float = 1.0,
             reduce: str = "mean", log_ratio_clamp: float | None = 20.0,
             agg: str = "seq-mean-token-mean", max_len: int | None = None,
             agg_denominator: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """Reg-GRPO: regress the policy's implied advantage onto the GRPO advantage.

    Paper: "DeepVideo-R1: Video Reinforcement Fine-Tuning via Difficulty-aware Regressive
    GRPO". The ABSTRACT'S READING (no official code used): the GRPO objective is recast as
    a regression that directly predicts the advantage, with no clipping or min:

        Â_i = β · r_i,  r_i = mean_t (or Σ_t, `reduce="sum"`) M_it (log π_θ − log π_old)(y_it)
        A_i = mean_t M_it adv_it   (the sequence advantage; constant rows give it exactly)
        L_i = (Â_i − sg(A_i))²,   loss = agg(L_i broadcast over row i's tokens)

    The default agg (seq-mean-token-mean) makes the loss the plain mean over non-empty
    rows of the squared error. β = 1 and reduce = "mean" are rlx's choices (the abstract
    gives no values). log ρ is clamped to ±20 per token before the reduction.

    Metrics: implied_adv_mean, target_adv_mean, mse (mean over non-empty rows), common.
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    _, _, delta, a = prepare(logp, old_logp, adv, mask, log_ratio_clamp=log_ratio_clamp, agg=agg)
    B, T = delta.shape
    red = ops.masked_mean if reduce == "mean" else ops.masked_sum
    implied_B = beta * red(delta, mask, axis=1)
    target_B = sg(ops.masked_mean(a, mask, axis=1))
    sq_B = jnp.square(implied_B - target_B)
    loss = aggregate(jnp.broadcast_to(sq_B[:, None], (B, T)), mask, agg, max_len=max_len,
                     denominator=agg_denominator)
    nonempty_B = ops.masked_count(delta, mask, axis=1) > 0
    metrics = {"implied_adv_mean": ops.masked_mean(sg(implied_B), nonempty_B),
               "target_adv_mean": ops.masked_mean(target_B, nonempty_B),
               "mse": ops.masked_mean(sg(sq_B), nonempty_B), **ratio_metrics(delta, mask)}
    return loss, metrics
