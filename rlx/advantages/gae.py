"""Token-level estimators over `[B, T]` arrays with a response mask: GAE (PPO), EGAE
(Truncated PPO) and REINFORCE++ (return-to-go, whitened over the batch).

Masked positions never contribute. A row whose rewards or values are NaN/Inf at a
masked-in position is invalid as a whole: all its advantages are 0, it is excluded
from the whitening statistics, and it is counted in `metrics["invalid_samples"]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.advantages.core import (
    as_float,
    as_mask,
    check_shape,
    count_metric,
    finish,
    jitted,
    prepare_groups,
    register,
    to_tokens,
)

Array = jax.Array


def _token_inputs(name: str, mask_BT, **arrays):
    """Checks `[B, T]` float arrays against the mask; returns cleaned arrays, the
    effective mask (rows with non-finite inputs removed) and the per-row validity."""
    first = next(iter(arrays.values()))
    first = as_float(name, next(iter(arrays)), first)
    if first.ndim != 2:
        raise ValueError(f"{name}: {next(iter(arrays))} must be [B, T], got shape {first.shape}")
    mask = as_mask(name, "mask", mask_BT, first.shape)
    out = {}
    row_ok = jnp.ones(first.shape[:1], bool)
    for key, value in arrays.items():
        x = as_float(name, key, value)
        check_shape(name, key, x, first.shape)
        row_ok = row_ok & jnp.all(jnp.isfinite(x) | ~mask, axis=1)
        out[key] = x
    mask = mask & row_ok[:, None]
    out = {k: jnp.where(mask, v, 0) for k, v in out.items()}
    return out, mask, row_ok


def gae_advantages_and_returns(rewards_BT, values_BT, mask_BT, *, gamma=1.0, lam=1.0,
                               bootstrap_B=None) -> tuple[Array, Array]:
    """Generalized advantage estimation over masked tokens (no whitening).

        delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lam A_{t+1}
    where "t+1" is the next *masked-in* position (masked positions are skipped, as in
    verl's current `compute_gae_advantage_return`, so multi-turn masks with holes
    work); after the last masked-in token V = `bootstrap_B` (0 when None: the
    response finished). Returns `(advantages_BT, returns_BT)`, returns = A + V; both 0
    at masked positions. Inputs must be finite (the registered `gae` cleans them).
    """
    B = rewards_BT.shape[0]
    dtype = jnp.result_type(rewards_BT.dtype, values_BT.dtype)
    boot = jnp.zeros((B,), dtype) if bootstrap_B is None else jnp.asarray(bootstrap_B, dtype)
    mask = jnp.asarray(mask_BT).astype(bool)

    def step(carry, inp):
        next_value, last = carry
        r, v, m = inp
        delta = r + gamma * next_value - v
        adv = delta + gamma * lam * last
        next_value = jnp.where(m, v, next_value)
        last = jnp.where(m, adv, last)
        return (next_value, last), jnp.where(m, adv, 0)

    init = (boot, jnp.zeros((B,), dtype))
    _, adv_TB = jax.lax.scan(step, init, (rewards_BT.T.astype(dtype), values_BT.T.astype(dtype),
                                          mask.T), reverse=True)
    adv = adv_TB.T
    returns = jnp.where(mask, adv + values_BT, 0)
    return adv, returns


def _maybe_whiten(adv, mask, whiten, eps):
    return ops.masked_whiten(adv, mask, ddof=1, eps=eps) if whiten else jnp.where(mask, adv, 0)


@register()
@jitted("whiten")
def gae(rewards, values, mask, *, gamma: float = 1.0, lam: float = 1.0, whiten: bool = True,
        eps: float = 1e-8):
    """GAE advantages of PPO, whitened over the batch's masked tokens.

    Paper: "High-Dimensional Continuous Control Using Generalized Advantage Estimation"
    as used by PPO for LLMs; defaults from verl (`algorithm.gamma = lam = 1.0`,
    `masked_whiten` with the unbiased variance and eps 1e-8). `rewards`, `values`,
    `mask` are `[B, T]` (token rewards: typically the score on the last token minus a
    KL penalty, see `outcome_token_rewards`). See `gae_advantages_and_returns` for the
    recursion and for the critic's returns (computed before whitening).
    Metrics: invalid_samples, returns_mean (masked token mean of the returns).
    """
    x, m, row_ok = _token_inputs("gae", mask, rewards=rewards, values=values)
    adv, ret = gae_advantages_and_returns(x["rewards"], x["values"], m, gamma=gamma, lam=lam)
    out = _maybe_whiten(adv, m, whiten, eps)
    return out, {"invalid_samples": count_metric(~row_ok),
                 "returns_mean": ops.masked_mean(ret, m)}


@register()
@jitted("whiten")
def egae(rewards, values, mask, truncated, *, gamma: float = 1.0, lam: float = 1.0,
         bootstrap=None, whiten: bool = True, eps: float = 1e-8):
    """Extended GAE (EGAE) of Truncated PPO: GAE on responses that may be unfinished.

    Paper: "Truncated Proximal Policy Optimization" (T-PPO). This is rlx's reading of
    the abstract ("advantage estimation derived from incomplete responses"): for a row
    with `truncated[b]` True (generation was cut before the end of the response) the
    recursion bootstraps from the value at the cut instead of 0 —
    `bootstrap[b]` (the critic's value of the state after the last generated token)
    when given, else the value of the last masked-in token (V(s_cut) ~ V(s_{cut-1})).
    Finished rows are plain GAE. Whitening as in `gae`.
    """
    x, m, row_ok = _token_inputs("egae", mask, rewards=rewards, values=values)
    B = x["values"].shape[0]
    trunc = as_mask("egae", "truncated", truncated, (B,))
    T = x["values"].shape[1]
    last_idx = jnp.max(jnp.where(m, jnp.arange(T)[None, :], -1), axis=1)
    last_value = jnp.take_along_axis(x["values"], jnp.maximum(last_idx, 0)[:, None], axis=1)[:, 0]
    if bootstrap is None:
        cut_value = last_value
    else:
        cut_value = as_float("egae", "bootstrap", bootstrap)
        check_shape("egae", "bootstrap", cut_value, (B,))
        cut_value = jnp.where(jnp.isfinite(cut_value), cut_value, last_value)
    boot = jnp.where(trunc & (last_idx >= 0), cut_value, 0)
    adv, ret = gae_advantages_and_returns(x["rewards"], x["values"], m, gamma=gamma, lam=lam,
                                          bootstrap_B=boot)
    out = _maybe_whiten(adv, m, whiten, eps)
    return out, {"invalid_samples": count_metric(~row_ok),
                 "returns_mean": ops.masked_mean(ret, m),
                 "truncated_samples": count_metric(trunc & row_ok)}


def outcome_token_rewards(scores_B, mask_BT, kl_BT=None, *, kl_coef: float = 0.0) -> Array:
    """Token rewards with the outcome score on the last masked-in token and the KL
    penalty folded in: r_t = score [t = last] - kl_coef * kl_t (0 off the mask).

    `kl_BT` is a per-token KL estimate against the reference policy (`rlx.losses.kl`);
    this is how verl's `apply_kl_penalty` feeds REINFORCE++ and GAE.
    """
    mask = jnp.asarray(mask_BT).astype(bool)
    scores = as_float("outcome_token_rewards", "scores", scores_B)
    B, T = mask.shape
    check_shape("outcome_token_rewards", "scores", scores, (B,))
    last_idx = jnp.max(jnp.where(mask, jnp.arange(T)[None, :], -1), axis=1)
    at_last = jnp.arange(T)[None, :] == last_idx[:, None]
    r = jnp.where(at_last & mask, jnp.broadcast_to(scores[:, None], (B, T)), 0)
    if kl_BT is not None:
        kl = as_float("outcome_token_rewards", "kl", kl_BT)
        check_shape("outcome_token_rewards", "kl", kl, (B, T))
        r = r - kl_coef * jnp.where(mask, kl, 0)
    return r


@register()
@jitted()
def reinforce_pp(rewards, mask, *, gamma: float = 1.0, eps: float = 1e-8):
    """REINFORCE++: return-to-go of the token rewards, whitened over the batch.

    Paper: "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
    Models". Recursion from verl's `compute_reinforce_plus_plus_outcome_advantage`:
    G_t = r_t + gamma G_{t+1} over the masked-in tokens; then `masked_whiten` over the
    masked tokens (unbiased variance, eps 1e-8). `rewards` `[B, T]` are token rewards
    with the KL penalty already folded in (`outcome_token_rewards`); gamma defaults to
    1 (verl's `algorithm.gamma`).

    Masked-out positions inside a row (a multi-turn episode's observation / tool tokens)
    pass the return through: there G is not changed — no reward, no discount — and
    "t+1" is the next masked-in token, as in `gae_advantages_and_returns`. verl's loop
    instead resets the running return at every masked-out position, which cuts the
    return at each tool span (the multi-turn bug of verl PR #6376); for a mask that is a
    prefix of the row (single-turn responses, right padding) the two are identical.
    """
    x, m, row_ok = _token_inputs("reinforce_pp", mask, rewards=rewards)
    r = x["rewards"]

    def step(running, inp):
        rt, mt = inp
        g = rt + gamma * running
        return jnp.where(mt, g, running), jnp.where(mt, g, 0)

    _, ret_TB = jax.lax.scan(step, jnp.zeros(r.shape[:1], r.dtype), (r.T, m.T), reverse=True)
    adv = ops.masked_whiten(ret_TB.T, m, ddof=1, eps=eps)
    return adv, {"invalid_samples": count_metric(~row_ok),
                 "returns_mean": ops.masked_mean(ret_TB.T, m)}


@register()
@jitted()
def reinforce_pp_baseline(rewards, mask, valid=None, *, eps: float = 1e-8):
    """REINFORCE++ with the group baseline: A = whiten_batch(r - mean_g) over tokens.

    Paper: "REINFORCE++" (the variant for G > 1 samples per prompt); recipe from verl's
    `compute_reinforce_plus_plus_baseline_outcome_advantage`: subtract the group mean
    from each sequence score, broadcast it to the response tokens, then whiten over
    all masked tokens of the batch (unbiased variance, eps 1e-8). `rewards` `[P, G]`
    are sequence scores (sum of token rewards, KL folded in); `mask` `[P * G, T]`.

    rlx differences: samples of groups with < 2 valid samples get 0 and are left out
    of the whitening statistics, like invalid samples (verl: baseline 0, raw score).
    """
    g = prepare_groups("reinforce_pp_baseline", rewards, valid)
    P, G = g.rewards.shape
    if jnp.ndim(mask) != 2:
        raise ValueError(f"reinforce_pp_baseline: mask must be [P * G, T], got shape {jnp.shape(mask)}")
    mask = as_mask("reinforce_pp_baseline", "mask", mask, (P * G, jnp.shape(mask)[1]))
    mean = ops.masked_mean(g.rewards, g.valid, axis=1)
    keep = g.valid & (g.count >= 2)[:, None]
    seq = finish(g.rewards - mean[:, None], keep)
    tok_mask = mask & keep.reshape(P * G, 1)
    adv = ops.masked_whiten(to_tokens(seq, tok_mask), tok_mask, ddof=1, eps=eps)
    return adv, g.metrics
