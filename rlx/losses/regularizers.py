"""Regularizers added to a policy loss: entropy bonus, targeted entropy, SPO probability mask.

All take a per-token entropy `[B, T]` (`rlx.ops.entropy_from_logits` or the `with_entropy`
output of `rlx.ops.chunked_logprobs`) and the loss mask, and return (loss_term, metrics);
the trainer adds the term to the policy loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.losses.aggregate import aggregate, check_bt

Array = jax.Array


def _masked_entropy(entropy_BT: Array, mask_BT: Array) -> Array:
    check_bt(entropy=entropy_BT, mask=mask_BT)
    return jnp.where(jnp.asarray(mask_BT) != 0, entropy_BT, 0.0)


def entropy_bonus(entropy_BT: Array, mask_BT: Array, *, coef: float = 1e-3, agg: str = "token-mean"
                  ) -> tuple[Array, dict[str, Array]]:
    """Entropy bonus −c · agg(H): minimizing it raises the policy's entropy.

    The classic PPO regularizer (Schulman et al. 2017; verl's `entropy_coeff`, whose
    default was 1e-3 and is now 0). Linear in H, so with the `aggregate` denominators it
    decomposes over micro-batches like the policy loss.
    Returns (−coef · agg(H), {"entropy": agg(H)}).
    """
    h = aggregate(_masked_entropy(entropy_BT, mask_BT), mask_BT, agg)
    return -coef * h, {"entropy": jax.lax.stop_gradient(h)}


def targeted_entropy(entropy_BT: Array, mask_BT: Array, *, coef: float = 1e-3, target: float = 0.55,
                     agg: str = "token-mean") -> tuple[Array, dict[str, Array]]:
    """Targeted Entropy Regularization: + c · |agg(H) − H_target|.

    Paper: "Confucius3-Math: A Lightweight High-Performance Reasoning LLM for Chinese K-12
    Mathematics Learning" (NetEase Youdao, 2025), §6.1: the term
    |entropy_loss − entropy_target| · entropy_coeff is added to the loss, entropy_loss
    being verl's aggregated token entropy, target 0.55 and coefficient 0.001 (paper;
    the released repository holds no training code). It pushes entropy up when below
    the target and down when above — bounding it on both sides.

    Under gradient accumulation the absolute value is not linear: applied per
    micro-batch (as a verl-based implementation does) it uses that micro-batch's
    entropy, which is what this function computes on the arrays it is given.
    Returns (coef · |agg(H) − target|, {"entropy": agg(H), "entropy_gap": agg(H) − target}).
    """
    h = aggregate(_masked_entropy(entropy_BT, mask_BT), mask_BT, agg)
    gap = h - target
    return coef * jnp.abs(gap), {"entropy": jax.lax.stop_gradient(h),
                                 "entropy_gap": jax.lax.stop_gradient(gap)}


def spo_probability_mask(old_logp_BT: Array, mask_BT: Array, *, threshold: float = 0.9) -> Array:
    """SPO's probability mask: drop tokens the old policy was already sure of.

    Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL
    for Large Language Models"; official code github.com/AIFrameResearch/SPO
    (`ppo_trainer.py`: `prob_mask = exp(old_logprobs) < 0.9`, ANDed into the action
    mask of the policy loss). A token is kept iff it is valid and its old probability
    exp(old_logp) < threshold, i.e. tokens with p_old >= 0.9 are masked out (the
    segment advantage then concentrates on the uncertain tokens).

    Returns a bool `[B, T]` mask (a float mask comes back as bool: kept where its weight
    is nonzero and the probability test passes).
    """
    check_bt(old_logp=old_logp_BT, mask=mask_BT)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    keep = jnp.exp(jnp.asarray(old_logp_BT)) < threshold
    return (jnp.asarray(mask_BT) != 0) & keep

