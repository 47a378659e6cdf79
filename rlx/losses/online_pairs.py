"""Pairs drawn online: RSO rejection sampling, CoPG and P3O pair policy gradients.

`rso_accept` chooses which sampled candidates to keep (a sampler, not a loss); `copg`
and `p3o` are losses on two responses y1, y2 to one prompt with scalar rewards — the
responses need not be ordered. Losses are registered in
`rlx.losses.preference.PREFERENCE`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.preference import PREFERENCE, check_positive, clean, finish, pair_inputs, sg, vector

Array = jax.Array


def rso_accept(key: Array, rewards_PG: Array, *, beta: float, valid_PG=None,
               max_accept: int | None = None) -> Array:
    """RSO's statistical rejection sampling from π* ∝ π_sft · exp(r/β): bool mask [P, G].

    Paper: "Statistical Rejection Sampling Improves Preference Optimization" (Liu et al.
    2023), Algorithm 1. The G candidates of each prompt were sampled from the SFT policy
    and scored by a reward model; candidate i is accepted with probability

        exp((r_i − max_j r_j) / β)

    so the best candidate is always accepted and β → ∞ accepts everything. The accepted
    responses are then paired and labelled (by the reward model) for DPO or the hinge
    loss. β is required (the paper tunes it). jit-compatible; `key` is a PRNG key.

    With `max_accept = m`, at most m candidates per prompt are kept: the accepted ones
    that come first in a uniformly random order. Deviation: the paper loops over the
    remaining candidates until m are accepted; rlx makes one pass (static shapes), so
    fewer than m may be accepted.
    """
    check_positive(beta, "beta")
    r = jnp.asarray(rewards_PG, jnp.float32)
    if r.ndim != 2:
        raise ValueError(f"rewards_PG: expected shape [P, G], got {tuple(r.shape)}")
    v = jnp.ones(r.shape, bool) if valid_PG is None else jnp.asarray(valid_PG, bool)
    if v.shape != r.shape:
        raise ValueError(f"valid_PG: expected shape {tuple(r.shape)}, got {tuple(v.shape)}")
    k_u, k_order = jax.random.split(key)
    r_max = jnp.max(jnp.where(v, r, -jnp.inf), axis=1, keepdims=True)
    log_p = jnp.where(v, r - jnp.where(jnp.isfinite(r_max), r_max, 0.0), -jnp.inf) / beta
    u = jax.random.uniform(k_u, r.shape)
    accept = v & (u < jnp.exp(log_p))
    if max_accept is not None:
        priority = jnp.where(accept, jax.random.uniform(k_order, r.shape), 2.0)
        position = jnp.argsort(jnp.argsort(priority, axis=1), axis=1)
        accept = accept & (position < max_accept)
    return accept


@PREFERENCE.register()
def copg(policy_logp_1, policy_logp_2, ref_logp_1, ref_logp_2, reward_1, reward_2, *,
         beta: float = 0.1, valid=None):
    """CoPG: contrastive policy gradient on a pair of responses with arbitrary rewards.

    Paper: "Contrastive Policy Gradient: Aligning LLMs on sequence-level scores in a
    supervised-friendly fashion" (Flet-Berliac et al. 2024). rlx's reading of the paper
    (no official code consulted): with the regularized reward R_β(y) = R(y) − β log
    π(y)/π_ref(y), CoPG regresses the contrast of the two regularized rewards to zero,

        ℓ = (R(y1) − R(y2) − β [(log π/π_ref)(y1) − (log π/π_ref)(y2)])²

    whose gradient −2β (R_β(y1) − R_β(y2)) ∇(log π(y1) − log π(y2)) is the contrastive
    policy gradient: the other response's regularized reward is the baseline, no
    importance weights, valid for off-policy pairs. Its optimum is π ∝ π_ref exp(R/β).
    With R(y_w) − R(y_l) = ½ it is β² × IPO (`ipo`). Default β = 0.1 (rlx).
    """
    check_positive(beta, "beta")
    lr_1, lr_2, v = pair_inputs(policy_logp_1, policy_logp_2, ref_logp_1, ref_logp_2, valid,
                                ("policy_logp_1", "policy_logp_2", "ref_logp_1", "ref_logp_2"))
    n = lr_1.shape[0]
    dr = sg(clean(vector(reward_1, "reward_1", n) - vector(reward_2, "reward_2", n), v))
    per = jnp.square(dr - beta * (lr_1 - lr_2))
    return finish(per, lr_1, lr_2, v, beta)


def _clipped(ratio, adv, eps):
    return jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)


@PREFERENCE.register()
def p3o(logp_1, logp_2, old_logp_1, old_logp_2, reward_1, reward_2, *, clip_eps: float = 0.2,
        variant: str = "joint", log_ratio_clamp: float | None = 20.0, valid=None):
    """P3O: pairwise proximal policy optimization on trajectory-level ratios.

    Paper: "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM
    Alignment" (Wu et al. 2023). rlx's reading of the paper (no official code consulted).
    Both responses y1, y2 answer one prompt; A = (r1 − r2)/2 is the pairwise advantage
    (invariant to reward shifts); ρ_i = π(y_i)/π_old(y_i) with sequence log-probs.

        joint:    J = min(ρ A, clip(ρ, 1 ± ε) A),   ρ = ρ_1/ρ_2
        separate: J = Σ_{i=1,2} min(ρ_i A_i, clip(ρ_i, 1 ± ε) A_i),   A_1 = A, A_2 = −A
        ℓ = −mean J

    At π = π_old both have the pairwise policy gradient ½(r1 − r2)∇(log π(y1) −
    log π(y2)). KL regularization, if any, is folded into r by the caller (as in the
    paper). Defaults: ε = 0.2, variant "joint". Deviation: the trajectory log-ratios are
    clamped to ±`log_ratio_clamp` before exp (overflow guard; None disables).
    Metrics: clip_frac, ratio_mean.
    """
    check_positive(clip_eps, "clip_eps")
    if variant not in ("joint", "separate"):
        raise ValueError(f"variant must be 'joint' or 'separate', got {variant!r}")
    lr_1, lr_2, v = pair_inputs(logp_1, logp_2, old_logp_1, old_logp_2, valid,
                                ("logp_1", "logp_2", "old_logp_1", "old_logp_2"))
    n = lr_1.shape[0]
    adv = 0.5 * sg(clean(vector(reward_1, "reward_1", n) - vector(reward_2, "reward_2", n), v))

    def ratio(x):
        return jnp.exp(x if log_ratio_clamp is None else jnp.clip(x, -log_ratio_clamp, log_ratio_clamp))

    if variant == "joint":
        rho = ratio(lr_1 - lr_2)
        obj = _clipped(rho, adv, clip_eps)
        clipped = jnp.abs(rho - 1.0) > clip_eps
        rho_mean = ops.masked_mean(sg(rho), v)
    else:
        rho_1, rho_2 = ratio(lr_1), ratio(lr_2)
        obj = _clipped(rho_1, adv, clip_eps) + _clipped(rho_2, -adv, clip_eps)
        clipped = (jnp.abs(rho_1 - 1.0) > clip_eps) | (jnp.abs(rho_2 - 1.0) > clip_eps)
        rho_mean = ops.masked_mean(sg(0.5 * (rho_1 + rho_2)), v)
    metrics = {"clip_frac": ops.masked_mean(clipped.astype(jnp.float32), v), "ratio_mean": rho_mean}
    return ops.masked_mean(jnp.where(v, -obj, 0.0), v), metrics
