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
    returned (the renormalized distribution over the kept set); top-p alone never sorts
    the vocabulary: a 32-step bisection on the threshold (`_top_p_key`).
    """
    V = z_BV.shape[-1]
    if top_k and top_k < V:
        vals = jax.lax.top_k(z_BV, top_k)[0]                  # [B, k], descending
        z_BV = jnp.where(z_BV < vals[..., -1:], -jnp.inf, z_BV)
        if top_p < 1.0:
            z_BV = jnp.where(z_BV < _top_p_threshold(vals, top_p), -jnp.inf, z_BV)
        return z_BV
    if top_p < 1.0:
        z_BV = jnp.where(_order_keys(z_BV) < _top_p_key(z_BV, top_p), -jnp.inf, z_BV)
    return z_BV


def _order_keys(z):
    """float32 -> uint32 keys in the same order (-inf lowest; -0.0 just below +0.0)."""
    bits = jax.lax.bitcast_convert_type(z.astype(jnp.float32), jnp.uint32)
    return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(0x80000000))


def _top_p_key(z_BV, top_p: float):
    """The top-p rule without sorting the vocabulary: the order key of each row's smallest
    kept logit, [B, 1]. A token is kept iff the probability mass of the logits strictly
    greater than its own is < top_p — the rule `_top_p_threshold` applies to a sorted row
    (ties count as one value there too: the first of a tied run sees the mass strictly
    above it). That mass, S(v) = Σ_j p_j [z_j > v], only falls as v rises, so the smallest
    kept key is the smallest t with S(t) < top_p: a bisection over the 2^32 keys, 32
    masked sums over the row (S(max) = 0, so it exists). Differs from the sorted rule only
    by float rounding of the masses (a sum over a mask vs a cumulative sum)."""
    probs = jax.nn.softmax(z_BV.astype(jnp.float32), axis=-1)
    keys = _order_keys(z_BV)
    lo = jnp.min(keys, axis=-1, keepdims=True)
    hi = jnp.max(keys, axis=-1, keepdims=True)

    def step(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(jnp.where(keys > mid, probs, 0.0), axis=-1, keepdims=True) < top_p
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 32, step, (lo, hi))
    return hi
