"""Multi-turn decoding with the KV cache carried across turns (`rlx.envs.episodes`).

    ds = open_cache(params, cfg, scfg, first_prompts, mask, total_len=S)   # prefill once
    ds, toks, msk, lps = decode_turn(params, cfg, scfg, ds, key, live, col, steps=T_turn)
    ds = append_tokens(params, cfg, scfg, ds, observation_tokens, lengths, col, chunk=32)   # only what is new

The first prompts are prefilled into a cache of S columns; each turn decodes up to
`steps` tokens in lock-step (token t of the turn at column col + t, `sampler.decode`);
the next observation's tokens are then fed through the cache — `chunk` tokens per
forward (a chunked prefill, `rlx.models.cache.extend_step`), or one column at a time
with `chunk=0` (decode steps without sampling) — so a turn computes only its new tokens
instead of re-prefilling the whole history. Rows that stop early, and rows
whose observation is shorter than the longest, leave masked columns behind: the key
mask hides them and positions count real tokens only, so a row's numbers are those of
a forward over its real tokens (tested against the trainer's forward and against the
re-prefill path). Randomness is the sampler's: row r's n-th token of a turn is drawn
with fold_in(fold_in(turn key, r), n), as `sampling.generate` draws it, so both paths
sample the same tokens from the same logits.

Everything is the dense cache's (`rlx.models.cache`); the caller (`run_episodes`)
re-prefills compactly when the next turn would not fit the S columns.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlx.models.cache import decode_step, extend_step
from rlx.models.config import ModelConfig
from rlx.sampling.config import SamplerConfig
from rlx.sampling.decode_sharding import decode_scope, decode_weights
from rlx.sampling.sampler import DecodeState, decode, row_keys, start
from rlx.types import FinishReason


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "total_len"))
def open_cache(params, cfg: ModelConfig, scfg: SamplerConfig, tokens_BL, mask_BL, total_len: int) -> DecodeState:
    """Left-padded histories prefilled into a cache of `total_len` columns."""
    del scfg
    return start(params, cfg, tokens_BL, mask_BL.astype(bool), total_len)


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "steps"))
def decode_turn(params, cfg: ModelConfig, scfg: SamplerConfig, ds: DecodeState, key, live_B, col0, steps: int):
    """One model turn of the `live_B` rows from the cache's current logits: up to `steps`
    tokens each, token t at column `col0 + t`. Returns (state, tokens [B, steps], mask,
    log-probs at `scfg.logprob_temperature`)."""
    B = live_B.shape[0]
    ds = ds.replace(done=~live_B.astype(bool), generated=jnp.zeros((B,), jnp.int32),
                    finish=jnp.full((B,), FinishReason.LENGTH, jnp.int32))
    ds, toks, msk, lps, _ = decode(params, cfg, scfg, ds, row_keys(key, jnp.arange(B, dtype=jnp.int32)), steps,
                                   col0, jnp.full((B,), steps, jnp.int32))
    return ds, toks, msk, lps


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "chunk"))
def append_tokens(params, cfg: ModelConfig, scfg: SamplerConfig, ds: DecodeState, tokens_BO, lengths_B, col0,
                  chunk: int = 0):
    """Feeds row b's first `lengths_B[b]` tokens of `tokens_BO` through the cache, token j
    at column `col0 + j` (max(lengths) columns hold them); a row's logits become those
    after its last fed token (unchanged for a row fed nothing). `chunk` = C > 0 feeds C
    tokens per forward (`rlx.models.cache.extend_step`: ceil(max(lengths) / C) forwards,
    each writing C columns, so the cache needs C - 1 spare columns past the last fed
    one); 0 feeds one token per decode step."""
    dp = decode_weights(params, cfg, scfg)
    lengths = lengths_B.astype(jnp.int32)
    if chunk:
        C = int(chunk)
        tokens_BO = jnp.pad(tokens_BO, ((0, 0), (0, C)), constant_values=scfg.pad_id)

        def chunk_body(n, ds):
            j0 = n * C
            fed = jnp.clip(lengths - j0, 0, C)
            live = jnp.arange(C)[None, :] < fed[:, None]                  # [B, C]
            tok = jax.lax.dynamic_slice_in_dim(tokens_BO, j0, C, axis=1)
            col = col0 + j0
            key_mask = jax.lax.dynamic_update_slice(ds.key_mask, live, (0, col))
            with decode_scope(scfg):
                logits, cache = extend_step(dp, cfg, jnp.where(live, tok, scfg.pad_id), ds.position, fed, ds.cache,
                                            key_mask, col)
            return ds.replace(cache=cache, key_mask=key_mask,
                              logits=jnp.where((fed > 0)[:, None], logits, ds.logits), position=ds.position + fed)

        return jax.lax.fori_loop(0, (jnp.max(lengths) + C - 1) // C, chunk_body, ds)

    def body(j, ds):
        live = j < lengths
        tok = jax.lax.dynamic_index_in_dim(tokens_BO, j, axis=1, keepdims=False)
        col = col0 + j
        key_mask = jax.lax.dynamic_update_slice(ds.key_mask, live[:, None], (0, col))
        with decode_scope(scfg):
            logits, cache = decode_step(dp, cfg, jnp.where(live, tok, scfg.pad_id), ds.position, ds.cache,
                                        key_mask, col)
        return ds.replace(cache=cache, key_mask=key_mask, logits=jnp.where(live[:, None], logits, ds.logits),
                          position=ds.position + live.astype(jnp.int32))

    return jax.lax.fori_loop(0, jnp.max(lengths), body, ds)
