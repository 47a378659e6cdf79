"""Top-k and nucleus (top-p) filtering of logits (static k and p; -inf outside the set)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def filter_logits(z_BV, top_k: int = 0, top_p: float = 1.0):
    """Keep the top_k largest logits (0 = all), then the smallest set of the largest
    logits whose probability mass reaches top_p (1.0 = all; the most likely token is
    always kept). Ties at the k-th value are all kept (as in HF's TopKLogitsWarper)."""
    if top_k and top_k < z_BV.shape[-1]:
        kth = jax.lax.top_k(z_BV, top_k)[0][..., -1:]
        z_BV = jnp.where(z_BV < kth, -jnp.inf, z_BV)
    if top_p < 1.0:
        srt = jnp.sort(z_BV, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(srt, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs          # mass strictly above each token
        keep = before < top_p
        # The smallest kept logit is the threshold; everything below it is dropped.
        thresh = jnp.min(jnp.where(keep, srt, jnp.inf), axis=-1, keepdims=True)
        z_BV = jnp.where(z_BV < thresh, -jnp.inf, z_BV)
    return z_BV
