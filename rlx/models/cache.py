"""KV cache: allocation, prompt prefill and single-token decode.

The cache is {"k", "v"} of `[Ly, B, S, N, Dh]` in the compute dtype (logical axes
layers, cache_batch, cache_length, cache_kv_heads, cache_head_dim). Column layout:
prompts are left-padded into columns [0, Lp); generated token t goes to column
Lp + t for every row, so one scalar write index serves the whole batch
(`dynamic_update_slice`). A `[B, S]` key mask says which columns hold real tokens;
positions (for RoPE) are per row, counting real tokens only — so a row's numbers do
not depend on how much padding it has.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.models.config import ModelConfig
from rlx.models.transformer import core, logits_from_hidden, padding_positions


def init_cache(cfg: ModelConfig, batch: int, length: int) -> dict:
    shape = (cfg.num_layers, batch, length, cfg.num_kv_heads, cfg.head_dim)
    return {"k": jnp.zeros(shape, cfg.dtype), "v": jnp.zeros(shape, cfg.dtype)}


def prefill(params, cfg: ModelConfig, tokens_BL, mask_BL, cache):
    """Writes the left-padded prompts into columns [0, L) of the cache.

    Returns (float32 logits of the next token [B, V], cache, positions of the next
    token [B] = number of real prompt tokens).
    """
    B, L = tokens_BL.shape
    S = cache["k"].shape[2]
    mask = mask_BL.astype(bool)
    causal = jnp.tril(jnp.ones((L, S), bool))                       # key j <= query i (j < L)
    key_ok = jnp.concatenate([mask, jnp.zeros((B, S - L), bool)], axis=1)
    h, cache = core(params, cfg, tokens_BL, padding_positions(mask), causal[None] & key_ok[:, None, :],
                    cache, 0)
    return logits_from_hidden(params, cfg, h[:, -1]), cache, jnp.sum(mask, axis=1, dtype=jnp.int32)


def decode_step(params, cfg: ModelConfig, token_B, position_B, cache, key_mask_BS, col):
    """Feeds one token per row (written at column `col`; key_mask must include it).

    Returns (float32 next-token logits [B, V], cache).
    """
    h, cache = core(params, cfg, token_B[:, None], position_B[:, None], key_mask_BS[:, None, :], cache, col)
    return logits_from_hidden(params, cfg, h[:, 0]), cache


def repeat_rows(tree, n: int, axis_of=lambda x: 0):
    """Repeat every row n times (row r -> rows r*n .. r*n+n-1) — forking a cache or state."""
    return jax.tree.map(lambda x: jnp.repeat(x, n, axis=axis_of(x)), tree)
