"""Per-token KL estimators (Schulman's k1 / k2 / k3), as a loss or folded into the reward.

J. Schulman, "Approximating KL divergence" (2020); conventions of verl's `kl_penalty`
and TRL. With Δ = logπ(y_t) − logπ_ref(y_t) for tokens y_t sampled from π:

  k1   Δ                       unbiased for KL(π‖π_ref), high variance, can be < 0
  k2   ½ Δ²                    biased, low variance; its gradient is the KL's gradient
  k3   e^{−Δ} + Δ − 1          unbiased for KL(π‖π_ref), >= 0, low variance
  abs  |Δ|

Sign convention check against verl: verl's k3 ("low_var_kl") computes kl = ref − logp,
ratio = exp(kl), k3 = ratio − kl − 1 = e^{−Δ} + Δ − 1 — the same number as here.

`kind + "+"` ("k1+", "k3+", "abs+"): verl's straight-through variants — the value of
`kind`, the gradient of k2 (k2's gradient is the unbiased KL gradient; k1's and k3's
are not).

Clamping (`clamp=c`): the estimate is clipped to [−c, c]; for k3 the log-ratio inside
the exponential is also clipped to [−20, 20] first, exactly as verl does, so verl's
`low_var_kl` is `kl(logp, ref_logp, "k3", clamp=10.0)`. `clamp=None` (default): no
clipping anywhere (rlx's k3 uses `expm1` for accuracy near Δ = 0; e^{−Δ} overflows to
inf only for Δ < −88 in float32 — pass a clamp if that can happen).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.losses.aggregate import aggregate, check_bt

Array = jax.Array

KL_KINDS = ("k1", "k2", "k3", "abs", "k1+", "k3+", "abs+")
_K3_LOG_RATIO_CLAMP = 20.0  # verl clamps ref − logp to [−20, 20] before exp


def _forward(delta: Array, kind: str, clamp: float | None) -> Array:
    if kind == "k1":
        out = delta
    elif kind == "k2":
        out = 0.5 * jnp.square(delta)
    elif kind == "abs":
        out = jnp.abs(delta)
    else:  # k3
        d = delta if clamp is None else jnp.clip(delta, -_K3_LOG_RATIO_CLAMP, _K3_LOG_RATIO_CLAMP)
        out = jnp.expm1(-d) + d
    if clamp is not None:
        out = jnp.clip(out, -clamp, clamp)
    return out


def kl(logp: Array, ref_logp: Array, kind: str = "k3", *, clamp: float | None = None) -> Array:
    """Per-token KL estimate of π against π_ref; Δ = logp − ref_logp (see module doc).

    Args:
      logp: log-probs of the sampled tokens under π (any shape).
      ref_logp: log-probs of the same tokens under the reference (same shape).
      kind: one of `KL_KINDS`.
      clamp: None, or clip the estimate to [−clamp, clamp] (and, for k3, Δ to ±20).
    Returns an array of the inputs' shape. Masking is the caller's (`kl_loss` masks).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"unknown KL kind {kind!r}; expected one of {', '.join(KL_KINDS)}")
    if clamp is not None and not clamp > 0:
        raise ValueError(f"clamp must be positive or None, got {clamp!r}")
    logp = jnp.asarray(logp)
    ref_logp = jnp.asarray(ref_logp)
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp shape {ref_logp.shape} != logp shape {logp.shape}")
    delta = logp - ref_logp
    if not kind.endswith("+"):
        return _forward(delta, kind, clamp)
    value = _forward(delta, kind[:-1], clamp)
    surrogate = 0.5 * jnp.square(delta)  # k2: carries the gradient
    return surrogate - jax.lax.stop_gradient(surrogate) + jax.lax.stop_gradient(value)


def kl_loss(logp_BT: Array, ref_logp_BT: Array, mask_BT: Array, *, kind: str = "k3",
            coef: float = 1e-3, clamp: float | None = None, agg: str = "token-mean"
            ) -> tuple[Array, dict[str, Array]]:
    """KL as a loss term: coef · agg(kl(logp, ref_logp, kind)).

    Defaults: k3 with coef 1e-3 and token-mean, as in verl's GRPO examples (the
    DeepSeekMath paper used k3 with β = 0.04 and a seq-mean-token-mean objective).
    Masked positions are ignored even when their log-probs are non-finite.
    Returns (loss, {"kl": agg(kl)}).
    """
    check_bt(logp=logp_BT, ref_logp=ref_logp_BT, mask=mask_BT)
    m = jnp.asarray(mask_BT) != 0
    per_tok = kl(jnp.where(m, logp_BT, 0.0), jnp.where(m, ref_logp_BT, 0.0), kind, clamp=clamp)
    value = aggregate(per_tok, mask_BT, agg)
    return coef * value, {"kl": jax.lax.stop_gradient(value)}


def kl_in_reward(token_rewards_BT: Array, logp_BT: Array, ref_logp_BT: Array, mask_BT: Array, *,
                 coef: float, kind: str = "k1", clamp: float | None = None) -> Array:
    """KL folded into token rewards: r_t − coef · kl_t on valid tokens, 0 elsewhere.

    PPO-RLHF / REINFORCE++ style (verl `apply_kl_penalty`, default kind k1). The log-probs
    are treated as data (stop-gradient): a reward carries no gradient.
    """
    check_bt(token_rewards=token_rewards_BT, logp=logp_BT, ref_logp=ref_logp_BT, mask=mask_BT)
    m = jnp.asarray(mask_BT) != 0
    k = kl(jnp.where(m, logp_BT, 0.0), jnp.where(m, ref_logp_BT, 0.0), kind, clamp=clamp)
    return jnp.where(m, token_rewards_BT - coef * jax.lax.stop_gradient(k), 0.0)
