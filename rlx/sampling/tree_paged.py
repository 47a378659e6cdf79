"""SPO-tree levels over a paged KV cache: a fork is a page-table copy.

`rlx.sampling.tree` with `SamplerConfig.kv_cache = "paged"` calls `paged_levels`
instead of forking dense caches. The prompts are prefilled once into shared prompt
pages (`rlx.models.paged`); level d's P·n_d nodes decode together, each with a page
table that is its parent's table up to the parent's length followed by the node's own
pages, so a node never copies its ancestors' cache — only the parent's last, partly
filled page (copy on write: one page per node). The pool holds, per batch shard,

    1 (null) + (P/D)·ceil(Lp / ps) + sum_d (P/D)·n_d·(ceil(M_d / ps) + 1)   pages

where the dense fork keeps P·n_D rows of Lp + T columns at the last level alone.

The samples are the dense tree's, token for token: the same per-level keys, the same
per-row draw fold_in(fold_in(level key, row), generated count), the same segment
budgets and stop rule; log-probs agree up to float reassociation (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx.models import paged
from rlx.models.cache import prefill_kv
from rlx.models.config import ModelConfig
from rlx.sampling.config import SamplerConfig
from rlx.sampling.decode_sharding import decode_scope, decode_weights, rows_sharded
from rlx.types import FinishReason


def pool_pages(num_prompts: int, prompt_len: int, branching, segment_lens, page_size: int,
               shards: int = 1) -> tuple[int, int, list[int]]:
    """(pages in each shard's pool, pages per prompt, first page of each level's nodes)."""
    Pd = num_prompts // shards
    n_p = -(-prompt_len // page_size)
    first, nodes, at = [], 1, 1 + Pd * n_p
    for b, m in zip(branching, segment_lens):
        nodes *= b
        first.append(at)
        at += Pd * nodes * (-(-m // page_size) + 1)
    return at, n_p, first


def paged_levels(params, cfg: ModelConfig, scfg: SamplerConfig, branching, segment_lens, key, prompts, mask):
    """The per-level outputs of `rlx.sampling.tree._sample_tree` (level d: P·n_d rows of
    tokens / mask / log-probs [., M_d], and the exists / stopped flags) from paged decode."""
    from rlx.sampling.continuous import batch_shards
    from rlx.sampling.sampler import emit_token, row_keys

    P, Lp = prompts.shape
    T, ps = scfg.max_new_tokens, scfg.page_size
    D = batch_shards(P)
    num_pages, n_p, first_page = pool_pages(P, Lp, branching, segment_lens, ps, D)
    W = -(-(Lp + T) // ps)                                   # table entries cover every column
    logits, k, v, length = prefill_kv(params, cfg, prompts, mask.astype(bool))
    pool = paged.write_prompts(paged.init_pool(cfg, num_pages, ps, shards=D), k, v, mask.astype(bool), first_page=1)
    j = jnp.arange(W)[None, :]
    p_local = (jnp.arange(P) % (P // D))[:, None]
    table = jnp.where(j < n_p, 1 + p_local * n_p + j, 0).astype(jnp.int32)
    dp = decode_weights(params, cfg, scfg)
    stops = jnp.asarray(scfg.stop_ids or (-1,), jnp.int32)
    done = jnp.zeros((P,), bool)
    generated = jnp.zeros((P,), jnp.int32)
    finish = jnp.full((P,), FinishReason.LENGTH, jnp.int32)        # carried: a stopped parent's children stay done
    levels = []
    for d, (b, m) in enumerate(zip(branching, segment_lens)):
        table, length, logits, done, generated, finish = (
            jnp.repeat(x, b, axis=0) for x in (table, length, logits, done, generated, finish))
        B = table.shape[0]
        exists = ~done
        # Own pages: the node's m tokens start at column `length`, inside table entry
        # `length // ps`; that page (the parent's, partly filled) is copied into the
        # node's first own page.
        own = -(-m // ps) + 1
        at = length // ps
        own0 = first_page[d] + (jnp.arange(B) % (B // D)) * own                          # the node's first page
        mine = own0[:, None] + (j - at[:, None])
        src = jnp.take_along_axis(table, at[:, None], axis=1, mode="clip")[:, 0]
        table = jnp.where(j < at[:, None], table, jnp.where(j < at[:, None] + own, mine, 0)).astype(jnp.int32)
        dst = jnp.where(exists, own0, num_pages)                                     # out of range: skipped
        pool = paged.copy_pages(pool, src.reshape(D, -1), dst.reshape(D, -1))
        key, sub = jax.random.split(key)
        keys = row_keys(sub, jnp.arange(B, dtype=jnp.int32))
        budget = generated + m
        buf = (jnp.full((B, m), scfg.pad_id, jnp.int32), jnp.zeros((B, m), bool), jnp.zeros((B, m), jnp.float32),
               jnp.zeros((B, m), jnp.float32))

        def cond(c):
            return (c[0] < m) & ~jnp.all(c[4])

        def body(c, table=table, keys=keys, budget=budget):
            t, pool, length, logits, done, generated, finish, buf = c
            tok, live, generated, done, finish, buf = emit_token(scfg, stops, t, logits, keys, generated, done, finish,
                                                                 budget, buf)
            with decode_scope(scfg):
                logits, pool = paged.paged_decode_step(dp, cfg, tok, table, length, pool, live)
            logits = rows_sharded(scfg, logits)
            return t + 1, pool, length + live.astype(jnp.int32), logits, done, generated, finish, buf

        init = (jnp.int32(0), pool, length, logits, done, generated, finish, buf)
        _, pool, length, logits, done, generated, finish, (toks, msk, lps, slps) = jax.lax.while_loop(cond, body, init)
        stopped = finish == FinishReason.STOP
        levels.append(dict(tokens=toks, mask=msk, logprobs=lps, sampling_logprobs=slps, exists=exists,
                           stopped=stopped))
        done = stopped                      # rows stopped by the segment budget go on at the next level
    return levels
