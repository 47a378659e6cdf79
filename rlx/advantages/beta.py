"""BNPO: Beta-normalized policy optimization, with the advantage decomposition."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, xlog1py, xlogy

from rlx import ops
from rlx.advantages.core import as_float, as_mask, count_metric, jitted, register

Array = jax.Array


def beta_fit(p_P: Array, fit_P: Array) -> tuple[Array, Array, Array]:
    """BNPO's Beta parameters from the group means `p_P` of the prompts in `fit_P`.

    m = mean(p), v = unbiased var(p) over the fitted prompts;
    a = (m (1 - m) / v - 1) m,  b = (m (1 - m) / v - 1) (1 - m);
    alpha = max(1 + a / 3, 1),  beta = max(1 + b / 3, 1).
    Falls back to alpha = beta = 1 (a uniform Beta: weight 1, i.e. REINFORCE with the
    group-mean baseline) when fewer than 2 prompts are fitted or v == 0. Returns
    `(alpha, beta, fell_back)` scalars.
    """
    n = jnp.sum(fit_P)
    m = ops.masked_mean(p_P, fit_P)
    v = ops.masked_var(p_P, fit_P, ddof=1)
    fallback = (n < 2) | ~(v > 0)
    k = m * (1 - m) / jnp.where(fallback, 1.0, v) - 1
    alpha = jnp.maximum(1 + k * m / 3, 1.0)
    beta = jnp.maximum(1 + k * (1 - m) / 3, 1.0)
    one = jnp.ones_like(alpha)
    return jnp.where(fallback, one, alpha), jnp.where(fallback, one, beta), fallback


def beta_logpdf(x: Array, alpha: Array, beta: Array) -> Array:
    """log Beta(x; alpha, beta), with 0 * log 0 = 0 (so x = 0 or 1 is finite when the
    matching parameter is 1) and -inf where the density is 0."""
    return xlogy(alpha - 1, x) + xlog1py(beta - 1, -x) - betaln(alpha, beta)


def _bnpo_one(s_PG: Array, ok_PG: Array, max_weight: float):
    """BNPO for one reward component already rescaled to [0, 1]."""
    count = jnp.sum(ok_PG, axis=1)
    p = ops.masked_mean(s_PG, ok_PG, axis=1)
    fit = count >= 2
    alpha, beta, fallback = beta_fit(p, fit)
    logpdf = beta_logpdf(jnp.clip(p, 0.0, 1.0), alpha, beta)
    # weight = clip(1 / pdf, 0, max_weight), computed in log space (pdf may be 0).
    weight = jnp.exp(jnp.minimum(-logpdf, math.log(max_weight)))
    adv = weight[:, None] * (s_PG - p[:, None])
    adv = jnp.where(ok_PG & fit[:, None], adv, 0)
    return adv, alpha, beta, fallback


@register()
@jitted("r_min", "r_max", "max_weight")
def bnpo(rewards, valid=None, *, r_min: float = 0.0, r_max: float = 1.0,
         max_weight: float = 1e6):
    """BNPO advantage: A_i = (r_i - p_q) * clip(1 / Beta_pdf(p_q; alpha, beta), 0, 1e6).

    Paper: "BNPO: Beta Normalization Policy Optimization". Formula and defaults from
    the official code (`compute_bnpo_outcome_advantage`, `recipe/bnpo`):
      1. rescale rewards to [0, 1]: s = (r - r_min) / (r_max - r_min) (defaults 0, 1);
      2. p_q = mean of the group's s (the prompt's estimated success rate);
      3. fit Beta(alpha, beta) to the batch's p_q, refit on every call (`beta_fit`);
      4. A_i = (s_i - p_q) / Beta_pdf(p_q), the weight clipped to [0, 1e6].

    Advantage decomposition: `rewards` may be `[C, P, G]` (C reward components, e.g.
    accuracy and format). Each component gets its own Beta fit and BNPO advantage; the
    C advantages are averaged (the official trainer sums `compute_advantage` over every
    `*reward_tensor` key and divides by the count). A sample invalid in any component
    (masked or NaN/Inf) is invalid in all.

    rlx differences, all guards where the official code breaks:
      * v = 0 (every fitted prompt has the same p; also all-equal rewards) divides by
        zero in the official code; rlx falls back to alpha = beta = 1;
      * a single fitted prompt: the official code sets m = 0, v = 1, which yields
        alpha = beta = 1 as well — rlx reaches the same values through the fallback;
      * groups with < 2 valid samples get 0 and are left out of the Beta fit (official:
        p = 0 for a one-sample group, which enters the fit);
      * rescaled rewards outside [0, 1] (the official code asserts) are counted in
        `out_of_range_samples`; the pdf is evaluated at p clipped to [0, 1].
    Metrics: alpha, beta (averaged over components), fallback (number of components
    that fell back), degenerate_groups, invalid_samples, nonfinite_rewards,
    out_of_range_samples.
    """
    if isinstance(r_min, (int, float)) and isinstance(r_max, (int, float)) and not r_max > r_min:
        raise ValueError(f"bnpo: need r_max > r_min, got r_min={r_min}, r_max={r_max}")
    r = as_float("bnpo", "rewards", rewards)
    if r.ndim not in (2, 3):
        raise ValueError(f"bnpo: rewards must be [P, G] or [C, P, G], got shape {r.shape}")
    r_CPG = r if r.ndim == 3 else r[None]
    PG = r_CPG.shape[1:]
    given = jnp.ones(PG, bool) if valid is None else as_mask("bnpo", "valid", valid, PG)
    ok = given & jnp.all(jnp.isfinite(r_CPG), axis=0)
    s_CPG = (jnp.where(ok[None], r_CPG, r_min) - r_min) / (r_max - r_min)
    # C is small and static: one fit per component, unrolled.
    parts = [_bnpo_one(s_CPG[c], ok, max_weight) for c in range(s_CPG.shape[0])]
    adv = jnp.mean(jnp.stack([a for a, *_ in parts]), axis=0).astype(r.dtype)
    alpha_C, beta_C, fallback_C = (jnp.stack([p[i] for p in parts]) for i in (1, 2, 3))
    count = jnp.sum(ok, axis=1)
    out_of_range = ok[None] & ((s_CPG < 0) | (s_CPG > 1))
    metrics = {
        "alpha": jnp.mean(alpha_C),
        "beta": jnp.mean(beta_C),
        "fallback": count_metric(fallback_C),
        "degenerate_groups": count_metric(count < 2),
        "invalid_samples": count_metric(~ok),
        "nonfinite_rewards": count_metric(given & ~ok),
        "out_of_range_samples": count_metric(jnp.any(out_of_range, axis=0)),
    }
    return adv, metrics
