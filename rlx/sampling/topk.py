"""Top-k and nucleus (top-p) filtering of logits (static k and p; -inf outside the set)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _top_p_threshold(sorted_desc, top_p: float):
    """Smallest kept logit of each row given logits sorted in descending order: a token
    is kept iff the probability mass strictly above it is < top_p (HF's rule: drop the
    tokens whose ascending cumulative mass is <= 1 - top_p); the top token always is."""
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    above = jnp.cumsum(probs, axis=-1) - probs
    keep = above < top_p
    return jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)


def filter_logits(z_BV, top_k: int = 0, top_p: float = 1.0):
    """Keep the top_k largest logits (0 = all), then the smallest set of the largest
    remaining logits whose probability mass reaches top_p (1.0 = all). Everything else
    becomes -inf. Ties at a threshold are all kept (as HF's TopK/TopP warpers do).

    With top_k set, the top-p pass works on the k sorted values `lax.top_k` already
    returned (the renormalized distribution over the kept set) instead of sorting the
    whole vocabulary.
    """
    V = z_BV.shape[-1]
    if top_k and top_k < V:
        vals = jax.lax.top_k(z_BV, top_k)[0]                  # [B, k], descending
        z_BV = jnp.where(z_BV < vals[..., -1:], -jnp.inf, z_BV)
        if top_p < 1.0:
            z_BV = jnp.where(z_BV < _top_p_threshold(vals, top_p), -jnp.inf, z_BV)
        return z_BV
    if top_p < 1.0:
        srt = jnp.sort(z_BV, axis=-1)[..., ::-1]
        z_BV = jnp.where(z_BV < _top_p_threshold(srt, top_p), -jnp.inf, z_BV)
    return z_BV
