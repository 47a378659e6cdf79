"""Group-relative estimators that reshape rewards or rescale advantages per sample or
per prompt: hardness weighting (Confucius3-Math), the unlikeliness reward (Rewarding
the Unlikely) and semantic-entropy scaling (SEED-GRPO).

Same conventions as `rlx.advantages.group`: invalid samples get 0 and are excluded from
statistics; groups with < 2 valid samples get 0 and are counted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.advantages.core import (
    as_float,
    as_ids,
    centered,
    check_ddof,
    check_shape,
    finish,
    jitted,
    prepare_groups,
    register,
    safe_ratio,
)
from rlx.advantages.group import grpo

Array = jax.Array


@register()
@jitted()
def hardness_weighted(rewards, valid=None, *, slope: float = -0.256, intercept: float = 1.256):
    """Policy-specific hardness weighting: A = (R - mu_g) * (slope * mu_g + intercept).

    Paper: "Confucius3-Math: A Lightweight High-Performance Reasoning LLM for Chinese
    K-12 Mathematics Learning" (Policy-Specific Hardness Weighting). Rewards are
    R in {+1, -1} in the paper, so mu_g in [-1, 1] and the weight runs from 1.512 on
    the hardest prompts (mu = -1) to 1.0 on the easiest (mu = 1); the coefficients
    -0.256 and 1.256 are the paper's (no official training code is published). No
    division by the group std. Groups with < 2 valid samples get 0.
    """
    g = prepare_groups("hardness_weighted", rewards, valid)
    mu = ops.masked_mean(g.rewards, g.valid, axis=1)
    weight = jnp.where(g.count >= 2, slope * mu + intercept, 0)
    return centered(g, mu, weight), g.metrics


def _stable_ranks(x_PG: Array, valid_PG: Array) -> Array:
    """Rank of each valid entry among the valid entries of its row, ascending, ties
    broken by position (the rank a stable argsort gives); invalid entries get 0."""
    xi = x_PG[:, :, None]
    xj = x_PG[:, None, :]
    G = x_PG.shape[1]
    idx = jnp.arange(G)
    before = (xj < xi) | ((xj == xi) & (idx[None, None, :] < idx[None, :, None]))
    before = before & valid_PG[:, None, :]
    return jnp.where(valid_PG, jnp.sum(before, axis=2), 0)


@register()
@jitted("ddof")
def unlikeliness(rewards, seq_logp, valid=None, *, beta: float = 0.25, ddof: int = 1,
                 eps: float = 1e-6):
    """Unlikeliness reward, then GRPO: r' = r (1 - beta * rank / n), A = grpo(r').

    Paper: "Rewarding the Unlikely: Lifting GRPO Beyond Distribution Sharpening".
    Definition and defaults from the official code (`_compute_advantages` of the Lean
    trainer, `rank_penalty=0.25` in `examples/lean/grpo.sh`): samples are ranked
    within their group by `seq_logp`, the mean token log-probability under pi_old,
    ascending — the least likely sample has rank 0 and keeps its full reward, the most
    likely is scaled by 1 - beta (n - 1)/n. Ties are ranked by position (stable
    argsort). Then (r' - mean) / (std + 1e-6) with the unbiased std.

    `seq_logp` `[P, G]`, e.g. `ops.masked_mean(old_logp_BT, mask_BT, axis=1)` reshaped.
    rlx: ranks and n count only the valid samples of the group (the official code has
    no invalid samples); groups with < 2 valid samples get 0 (official: raw r').
    """
    ddof = check_ddof("unlikeliness", ddof)
    g = prepare_groups("unlikeliness", rewards, valid)
    lp = as_float("unlikeliness", "seq_logp", seq_logp)
    check_shape("unlikeliness", "seq_logp", lp, g.rewards.shape)
    ok = g.valid & jnp.isfinite(lp)
    lp = jnp.where(ok, lp, 0)
    n = jnp.sum(ok, axis=1)
    ranks = _stable_ranks(lp, ok).astype(g.rewards.dtype)
    frac = safe_ratio(ranks, jnp.broadcast_to(n[:, None], ranks.shape).astype(ranks.dtype))
    shaped = g.rewards * (1 - beta * frac)
    adv, metrics = grpo(shaped, ok, ddof=ddof, eps=eps)
    metrics = dict(metrics, invalid_samples=g.metrics["invalid_samples"]
                   + jnp.sum(g.valid & ~ok, dtype=jnp.int32),
                   nonfinite_rewards=g.metrics["nonfinite_rewards"])
    return adv, metrics


def semantic_entropy(cluster_ids_PG, valid_PG) -> tuple[Array, Array]:
    """Frequency estimate of the semantic entropy of each group and its maximum.

    With n valid answers falling into clusters of sizes n_k (equal `cluster_ids` =
    same meaning), SE = -sum_k (n_k / n) log(n_k / n) and SE_max = log n (every answer
    its own cluster). Returns `(se_P, se_max_P)`; both 0 for groups with n < 2.
    """
    same = (cluster_ids_PG[:, :, None] == cluster_ids_PG[:, None, :])
    same = same & valid_PG[:, :, None] & valid_PG[:, None, :]
    size = jnp.sum(same, axis=2).astype(jnp.float32)  # cluster size of each valid answer
    n = jnp.sum(valid_PG, axis=1).astype(jnp.float32)
    logp = jnp.log(jnp.where(valid_PG, size, 1.0)) - jnp.log(jnp.maximum(n, 1.0))[:, None]
    se = -safe_ratio(jnp.sum(jnp.where(valid_PG, logp, 0), axis=1), n)
    se_max = jnp.where(n >= 2, jnp.log(jnp.maximum(n, 1.0)), 0.0)
    return jnp.where(n >= 2, se, 0.0), se_max


@register()
@jitted("ddof")
def seed_grpo(rewards, cluster_ids, valid=None, *, alpha: float = 1.0, ddof: int = 1,
              eps: float = 1e-6):
    """SEED-GRPO: A = grpo(r) * f(alpha * SE(q) / SE_max(q)), f(x) = 1 - x (linear).

    Paper: "SEED-GRPO: Semantic Entropy Enhanced GRPO for Uncertainty-Aware Policy
    Optimization". This is rlx's reading of the abstract (no official code was
    available to cross-check): the semantic entropy SE(q) of a prompt's G answers
    modulates the update size, "more conservative updates on high-uncertainty
    questions", hence the decreasing linear f(x) = 1 - x, clipped at 0 so that
    alpha > 1 cannot flip signs. The paper also studies exponential and focal f;
    those are not implemented. alpha = 1 (rlx's default) means a prompt whose answers
    all differ gets no update.

    SE is the frequency estimate over answer clusters (for verifiable tasks: equal
    normalized final answers share a `cluster_ids` value, `[P, G]` int), SE_max = log n
    (see `semantic_entropy`); the paper weights clusters by sequence probability
    instead. Invalid samples are excluded from the clusters. Metric: mean_semantic_entropy.
    """
    ddof = check_ddof("seed_grpo", ddof)
    g = prepare_groups("seed_grpo", rewards, valid)
    ids = as_ids("seed_grpo", "cluster_ids", cluster_ids, g.rewards.shape)
    base, metrics = grpo(rewards, valid, ddof=ddof, eps=eps)
    se, se_max = semantic_entropy(ids, g.valid)
    scale = jnp.clip(1.0 - alpha * safe_ratio(se, se_max), 0.0, None)
    adv = finish(base * scale[:, None].astype(base.dtype), g.valid)
    nondeg = g.count >= 2
    mean_se = safe_ratio(jnp.sum(jnp.where(nondeg, se, 0)), jnp.sum(nondeg).astype(se.dtype))
    return adv, dict(metrics, mean_semantic_entropy=mean_se)
