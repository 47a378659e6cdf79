"""Drawing tokens: exact categorical sampling by a two-level inverse CDF, and argmax.

`jax.random.categorical` (Gumbel-max) needs one random number per vocabulary entry and
a variadic argmax reduction; on CPU that costs ~2 ms per step for [64, 1024] logits
(more than a small model's forward). Inverse-CDF sampling needs one uniform per row:
with p = softmax(z) and u ~ U(0, 1], the token is the first index whose cumulative
mass reaches u · sum(p). Two levels (cumulative mass of 128-token blocks, then within
the chosen block) keep the scans short at any vocabulary size. Tokens with probability
exactly 0 (e.g. -inf after top-k / top-p filtering) are never drawn: a zero-mass token
or block never satisfies "cumulative mass before < x <= cumulative mass through".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = 128


def argmax(z_BV):
    """First index of the row maximum (as `jnp.argmax`, via two plain reductions, which
    XLA's CPU backend runs much faster than the variadic argmax reduction)."""
    V = z_BV.shape[-1]
    m = jnp.max(z_BV, axis=-1, keepdims=True)
    idx = jnp.arange(V, dtype=jnp.int32)[None, :]
    return jnp.min(jnp.where(z_BV == m, idx, V), axis=-1).astype(jnp.int32)


def row_uniforms(key, B: int):
    """One U[0, 1) per row: from one key (shape ()), or from a key per row (shape (B,))
    — then row b's number depends on its own key only (chunking never changes it)."""
    if key.shape == ():
        return jax.random.uniform(key, (B, 1), jnp.float32)
    if key.shape != (B,):
        raise ValueError(f"sample_categorical: expected one key or {B} row keys, got keys of shape {key.shape}")
    return jax.vmap(lambda k: jax.random.uniform(k, (1,), jnp.float32))(key)


def sample_categorical(key, z_BV):
    """One token per row from softmax(z) (rows [B, V]; -inf entries have probability 0).
    `key`: one key, or one key per row (`row_uniforms`)."""
    B, V = z_BV.shape
    nb = -(-V // BLOCK)
    p = jax.nn.softmax(z_BV.astype(jnp.float32), axis=-1)
    pb = jnp.pad(p, ((0, 0), (0, nb * BLOCK - V))).reshape(B, nb, BLOCK)
    cum_blocks = jnp.cumsum(jnp.sum(pb, axis=-1), axis=-1)                             # [B, nb]
    u = 1.0 - row_uniforms(key, B)                                                     # (0, 1]
    x = u * cum_blocks[:, -1:]                                                         # [B, 1]
    blk = jnp.minimum(jnp.sum(cum_blocks < x, axis=-1), nb - 1).astype(jnp.int32)      # [B]
    before = jnp.take_along_axis(cum_blocks, jnp.maximum(blk - 1, 0)[:, None], axis=1)
    before = jnp.where(blk[:, None] > 0, before, 0.0)                                  # [B, 1]
    p_in = jnp.take_along_axis(pb, blk[:, None, None], axis=1)[:, 0]                  # [B, BLOCK]
    j = jnp.sum(before + jnp.cumsum(p_in, axis=-1) < x, axis=-1)
    # Rounding may leave x above the block's recomputed total: take its last token with
    # mass (the block has some, since it was chosen).
    last = jnp.max(jnp.where(p_in > 0, jnp.arange(BLOCK)[None, :], 0), axis=-1)
    return (blk * BLOCK + jnp.minimum(j, last)).astype(jnp.int32)
