"""Continuous batching over a paged KV cache (`SamplerConfig.kv_cache = "paged"`).

The P prompts are prefilled once and written into shared prompt pages
(`rlx.models.paged`). The call's P·G requests (request p·G + g = sample g of prompt p)
are decoded by a fixed number of slots (`SamplerConfig.slots`, default all rows): a
slot that finishes (stop token or its length budget) takes the next pending request in
request order, whose first token comes from its prompt's prefill logits — no forward
pass is spent on a refill — until every request is done. Outputs are written at their
request's row, so they come back in request order.

A slot's page table is its request's prompt pages followed by the slot's own pages;
only the prompt's last, partly filled page is copied (copy on write), so the prompt
part of the cache does not grow with G. A slot's own pages are reused by each request
it takes.

Randomness: request r's n-th token is drawn with fold_in(fold_in(call_key, r), n) —
the dense sampler's rule — so the samples do not depend on the slot count, on which
slot serves a request, or on the kv_cache layout (tested: paged == dense, token for
token, for greedy and for sampled outputs).

Cost: the loop runs until the last request ends; with S slots and long-tailed lengths
it takes about sum(lengths) / S steps instead of the dense sampler's max(length) steps
for every row at once.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from rlx.models import paged
from rlx.models.cache import init_cache, prefill_kv, repeat_rows
from rlx.models.config import ModelConfig
from rlx.parallel import rules
from rlx.sampling.config import SampleOutput, SamplerConfig
from rlx.sampling.decode_sharding import decode_scope, decode_weights, rows_sharded
from rlx.types import FinishReason


class Layout(NamedTuple):
    """Page accounting of one paged call (static), per batch shard: `slots` rows,
    `prompt_pages` per prompt, `own_pages` per slot, `table_width` pages per row,
    `num_pages` in the shard's pool (page 0: null); `shards` pools in all."""
    slots: int
    page_size: int
    prompt_pages: int
    own_pages: int
    table_width: int
    num_pages: int
    shards: int = 1
    prompts: int = 0             # prompts per shard


def layout(scfg: SamplerConfig, num_prompts: int, group_size: int, prompt_len: int, shards: int = 1) -> Layout:
    """The pool of a call: per shard (its P / D prompts and S / D slots) 1 null page +
    (P/D)·ceil(Lp/ps) prompt pages (independent of G) + (S/D)·(ceil(T/ps) + 1) slot pages
    (the + 1: the copied partial prompt page). S = `scfg.slots` (0: all rows)."""
    R = num_prompts * group_size
    S = min(scfg.slots or R, R)
    Pd, Sd = num_prompts // shards, min(-(-S // shards), (R // shards))
    ps = scfg.page_size
    n_p = -(-prompt_len // ps)
    n_o = -(-scfg.max_new_tokens // ps) + 1
    return Layout(Sd, ps, n_p, n_o, n_p + n_o, 1 + Pd * n_p + Sd * n_o, shards, Pd)


def batch_shards(num_prompts: int) -> int:
    """How many pools a call uses: the mesh axes of "cache_batch" that divide the prompts
    (under `rlx.parallel.use_rules`; 1 otherwise), so a shard's slots, prompts and pages
    live on the same devices."""
    return rules.axis_devices("cache_batch", num_prompts)


@flax.struct.dataclass
class Slots:
    """Per-slot decode state (S = shards x slots rows, shard-major)."""
    req: Any          # int32 [S]: the request served (R: none)
    length: Any       # int32 [S]: tokens in the slot's sequence = position of the next token
    generated: Any    # int32 [S]
    logits: Any       # float32 [S, V]: next-token logits
    done: Any         # bool [S]
    finish: Any       # int32 [S]


# ---------------------------------------------------------------- the two KV layouts
# "paged": {"pool": one page pool per shard, "table": int32 [S, M] (shard-local page ids)};
# "ragged": {"prompt": packed prompt keys/values [P, ...], "cache": a dense cache row per slot}.

def _init_kv(kind: str, cfg: ModelConfig, lay: Layout, k, v, mask_PL, T: int) -> dict:
    S = lay.slots * lay.shards
    if kind == "paged":
        pool = paged.init_pool(cfg, lay.num_pages, lay.page_size, shards=lay.shards)
        pool = paged.write_prompts(pool, k, v, mask_PL, first_page=1)
        return {"pool": pool, "table": jnp.zeros((S, lay.table_width), jnp.int32)}
    pack = jax.vmap(paged.pack_left_padded, in_axes=(0, None))
    k, v = pack(k, mask_PL), pack(v, mask_PL)                                  # [Ly, P, L, N, Dh], packed
    prompt = {"k": [x.transpose(0, 2, 3, 1) for x in k], "v": [x.transpose(0, 2, 1, 3) for x in v]}
    return {"prompt": prompt, "cache": init_cache(cfg, S, mask_PL.shape[1] + T)}


def _start_rows(kind: str, lay: Layout, kv: dict, take_DS, p_local_DS, p_DS, plen_DS) -> dict:
    """Points the taking slots ([shards, slots] arrays) at their prompt (`p_local`: its
    index in the shard, `p`: overall): a page table (+ the copied partial page) for
    "paged", a copy of the prompt's columns into the slot's row for "ragged"."""
    D, Sd = take_DS.shape
    if kind == "ragged":
        S = D * Sd
        dst = jnp.where(take_DS.reshape(-1), jnp.arange(S), S)                   # S: dropped
        p = p_DS.reshape(-1)
        Lp = kv["prompt"]["v"][0].shape[2]
        cache = {"k": [c.at[dst, :, :, :Lp].set(x[p], mode="drop") for c, x in zip(kv["cache"]["k"],
                                                                                  kv["prompt"]["k"])],
                 "v": [c.at[dst, :, :Lp, :].set(x[p], mode="drop") for c, x in zip(kv["cache"]["v"],
                                                                                  kv["prompt"]["v"])]}
        return {**kv, "cache": cache}
    ps, n_p, n_o, M = lay.page_size, lay.prompt_pages, lay.own_pages, lay.table_width
    Pd = lay.prompts
    full = (plen_DS // ps)[..., None]                                        # whole prompt pages
    j = jnp.arange(M)[None, None, :]
    own0 = (1 + Pd * n_p + jnp.arange(Sd) * n_o)[None, :, None]              # the slot's first page
    table = jnp.where(j < full, 1 + p_local_DS[..., None] * n_p + j, jnp.where(j - full < n_o, own0 + j - full, 0))
    src = jnp.where(full[..., 0] < n_p, 1 + p_local_DS * n_p + full[..., 0], 0)    # the partial prompt page
    dst = jnp.where(take_DS, own0[..., 0], lay.num_pages)
    pool = paged.copy_pages(kv["pool"], src, dst)
    table = jnp.where(take_DS[..., None], table, kv["table"].reshape(D, Sd, M))
    return {"pool": pool, "table": table.reshape(D * Sd, M)}


def _decode_step(kind: str, dp, cfg: ModelConfig, kv: dict, tok_S, length_S, live_S):
    if kind == "paged":
        logits, pool = paged.paged_decode_step(dp, cfg, tok_S, kv["table"], length_S, kv["pool"], live_S)
        return logits, {**kv, "pool": pool}
    logits, cache = paged.ragged_decode_step(dp, cfg, tok_S, length_S, kv["cache"], live_S)
    return logits, {**kv, "cache": cache}


def _refill(kind: str, lay: Layout, G: int, R: int, plen_P, prompt_logits_PV, budget_R, slots: Slots, kv,
            next_D):
    """Every done slot takes its shard's next pending request (in request order)."""
    D, Sd = lay.shards, lay.slots
    Rd, Pd = R // D, plen_P.shape[0] // D
    done = slots.done.reshape(D, Sd)
    new_local = next_D[:, None] + jnp.cumsum(done.astype(jnp.int32), axis=1) - 1
    take = done & (new_local < Rd)
    p_local = jnp.minimum(new_local // G, Pd - 1)
    p = jnp.arange(D)[:, None] * Pd + p_local
    new_req = (jnp.arange(D)[:, None] * Rd + new_local).reshape(-1)
    L = plen_P[p]
    kv = _start_rows(kind, lay, kv, take, p_local, p, L)
    t = take.reshape(-1)
    slots = Slots(req=jnp.where(t, new_req, slots.req),
                  length=jnp.where(t, L.reshape(-1), slots.length),
                  generated=jnp.where(t, 0, slots.generated),
                  logits=jnp.where(t[:, None], prompt_logits_PV[p.reshape(-1)], slots.logits),
                  done=jnp.where(t, budget_R[jnp.minimum(new_req, R - 1)] <= 0, slots.done),
                  finish=jnp.where(t, FinishReason.LENGTH, slots.finish))
    return slots, kv, next_D + jnp.sum(take, axis=1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "group_size"))
def generate_paged(params, cfg: ModelConfig, scfg: SamplerConfig, group_size: int, key, prompt_tokens,
                   prompt_mask, budget_R, row0):
    """G samples of each left-padded prompt with continuous batching over a paged cache;
    the same contract (and, for the same key, the same samples) as the dense
    `rlx.sampling.sampler._generate`. Rows are numbered from `row0`. Under a mesh the
    requests are split into `batch_shards` contiguous blocks, each served by its own
    slots, queue and pool."""
    from rlx.sampling.sampler import pick, row_keys

    G, T = group_size, scfg.max_new_tokens
    P, Lp = prompt_tokens.shape
    R = P * G
    D = batch_shards(P)
    lay = layout(scfg, P, G, Lp, D)
    S = lay.slots * D
    mask = prompt_mask.astype(bool)
    prompt_logits, k, v, plen = prefill_kv(params, cfg, prompt_tokens, mask)
    kind = scfg.kv_cache
    kv = _init_kv(kind, cfg, lay, k, v, mask, T)
    dp = decode_weights(params, cfg, scfg)
    keys_R = row_keys(key, row0 + jnp.arange(R, dtype=jnp.int32))
    budget = jnp.minimum(budget_R.astype(jnp.int32), T)
    stops = jnp.asarray(scfg.stop_ids or (-1,), jnp.int32)
    slots = Slots(req=jnp.full((S,), R, jnp.int32), length=jnp.zeros((S,), jnp.int32),
                  generated=jnp.zeros((S,), jnp.int32), logits=jnp.zeros((S, cfg.vocab_size), jnp.float32),
                  done=jnp.ones((S,), bool), finish=jnp.full((S,), FinishReason.LENGTH, jnp.int32))
    out = (jnp.full((R, T), scfg.pad_id, jnp.int32), jnp.zeros((R, T), bool), jnp.zeros((R, T), jnp.float32),
           jnp.zeros((R, T), jnp.float32), jnp.full((R,), FinishReason.LENGTH, jnp.int32))
    Rd = R // D

    def cond(c):
        slots, _, next_D, _ = c
        return ~jnp.all(slots.done) | jnp.any(next_D < Rd)

    def body(c):
        slots, kv, next_D, (toks, msk, lps, slps, fin) = c
        slots, kv, next_D = jax.lax.cond(
            jnp.any(slots.done.reshape(D, -1) & (next_D < Rd)[:, None]),
            lambda s, c, n: _refill(kind, lay, G, R, plen, prompt_logits, budget, s, c, n),
            lambda s, c, n: (s, c, n), slots, kv, next_D)
        live = ~slots.done
        req = jnp.minimum(slots.req, R - 1)
        step_keys = jax.vmap(jax.random.fold_in)(keys_R[req], slots.generated.astype(jnp.uint32))
        tok, lp, slp = pick(scfg, slots.logits, step_keys)
        tok = jnp.where(live, tok, scfg.pad_id)
        row = jnp.where(live, slots.req, R)                                   # R: dropped
        toks = toks.at[row, slots.generated].set(tok, mode="drop")
        msk = msk.at[row, slots.generated].set(True, mode="drop")
        lps = lps.at[row, slots.generated].set(lp, mode="drop")
        slps = slps.at[row, slots.generated].set(slp, mode="drop")
        generated = slots.generated + live.astype(jnp.int32)
        is_stop = jnp.any(tok[:, None] == stops[None, :], axis=1) & live
        finish = jnp.where(is_stop, FinishReason.STOP, slots.finish)
        fin = fin.at[row].set(finish, mode="drop")
        done = slots.done | is_stop | (generated >= budget[req])
        with decode_scope(scfg):
            logits, kv = _decode_step(kind, dp, cfg, kv, tok, slots.length, live)
        logits = rows_sharded(scfg, logits)
        slots = slots.replace(length=slots.length + live.astype(jnp.int32), generated=generated, logits=logits,
                              done=done, finish=finish)
        return slots, kv, next_D, (toks, msk, lps, slps, fin)

    init = (slots, kv, jnp.zeros((D,), jnp.int32), out)
    _, _, _, (toks, msk, lps, slps, fin) = jax.lax.while_loop(cond, body, init)
    return SampleOutput(repeat_rows(prompt_tokens, G), repeat_rows(mask, G), toks, msk, lps, slps,
                        jnp.sum(msk, axis=1, dtype=jnp.int32), fin)
