"""Paged KV cache: a pool of fixed-size pages per layer, per-row page tables and lengths.

    pool = init_pool(cfg, num_pages, page_size)          # {"k": Ly x [N, pages, ps, Dh], "v": ...}
    pool = write_prompts(pool, k, v, prompt_mask, first_page=1)   # prefill's keys/values, packed
    logits, pool = paged_decode_step(dp, cfg, token_B, table_BM, length_B, pool)

Layout (the one JAX's Pallas TPU `paged_attention` kernel reads): keys and values of
layer i are `[N, num_pages, page_size, Dh]` (under the kernel with Dh < 128: `[N / r,
..., r·Dh]`, r = `lane_pack` heads side by side in a 128-lane row); row b owns the page list
`table[b]` and holds `length[b]` tokens, token j of the row at (page table[b, j // ps],
offset j % ps). Tokens are packed from column 0 (a left-padded prompt is packed when it
is written), so column j of a row is its RoPE position j and `length` alone says what is
live — no key mask. Page 0 is the null page: dead rows write there and unused table
entries point there; it is never read below a row's length.

Sharing: rows whose sequences start with the same prompt point at the same prompt pages
(the G samples of a prompt never copy its cache); a row's own tokens go to pages only it
writes, and the prompt's last, partly filled page is copied into the row's first own
page when the row starts (copy on write: one page, not the prompt).

Attention over a row's live tokens (`paged_attend`): on TPU with `cfg.attention` "auto"
or "splash", the maintained Pallas kernel (`jax.experimental.pallas.ops.tpu.
paged_attention`: reads only the pages below each row's length); elsewhere an XLA path
that gathers the row's table into `[N, B, M·ps, Dh]` and masks columns >= length (it
reads every table entry: on CPU and GPU the cost is bounded by the table width).
"""

from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp

from rlx.models import attention
from rlx.models.cache import K_AXES, V_AXES, attend_decode, decode_layers
from rlx.models.config import ModelConfig
from rlx.models.transformer import NEG_INF
from rlx.parallel import rules
from rlx.parallel.rules import constrain

POOL_AXES = ("cache_kv_heads", None, None, "cache_head_dim")
SHARDED_POOL_AXES = ("cache_batch",) + POOL_AXES


def lane_pack(cfg: ModelConfig) -> int:
    """KV heads stored side by side in one pool row (r): 1 unless the Pallas kernel reads
    the pool and the head dimension is under Mosaic's 128 lanes. Then r = 128 / Dh heads
    share a row — Qwen2.5-0.5B's 2 KV heads of 64 become one 128-lane "head" — instead of
    each head being zero-padded to 128 lanes, which doubled the pool's memory and the
    kernel's reads. r divides N and keeps N / r divisible by the devices the rules
    split the KV heads over (halved until it does; 1: padding as before). How the
    kernel reads a packed row exactly: `_pallas_attend`."""
    N, Dh = cfg.num_kv_heads, cfg.head_dim
    if not use_pallas(cfg) or Dh >= 128 or 128 % Dh:
        return 1
    r, t = 128 // Dh, rules.axis_devices("cache_kv_heads", N)
    while r > 1 and (N % r or (N // r) % t):
        r //= 2
    return r


def pool_heads(cfg: ModelConfig) -> tuple[int, int]:
    """(pool heads, pool head dimension): (N / r, r·Dh rounded up to a multiple of 128,
    zero-padded) when the Pallas kernel reads the pool (`lane_pack` r), else (N, Dh)."""
    if not use_pallas(cfg):
        return cfg.num_kv_heads, cfg.head_dim
    r = lane_pack(cfg)
    return cfg.num_kv_heads // r, -(-(r * cfg.head_dim) // 128) * 128


def pool_head_dim(cfg: ModelConfig) -> int:
    """The pool's head (lane) dimension (`pool_heads`)."""
    return pool_heads(cfg)[1]


def _pad_head(x, Dp: int):
    return x if x.shape[-1] == Dp else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, Dp - x.shape[-1])])


def _to_pool_heads(x_ND, Np: int, Dp: int):
    """[..., N, Dh] keys or values in the pool's head layout [..., Np, Dp]: r = N / Np
    consecutive heads side by side (head n at lanes (n % r)·Dh ...), zero-padded to Dp."""
    N, Dh = x_ND.shape[-2:]
    return _pad_head(x_ND.reshape(x_ND.shape[:-2] + (Np, (N // Np) * Dh)), Dp)


def init_pool(cfg: ModelConfig, num_pages: int, page_size: int, shards: int = 0) -> dict:
    """Zero pages {"k": Ly x [Np, num_pages, page_size, Dp], "v": same} in the compute
    dtype ((Np, Dp) = `pool_heads`: (N, Dh) off the Pallas kernel); with `shards` > 0,
    one pool per batch shard: Ly x [shards, Np, num_pages, ps, Dp]
    (leading axis on the mesh's batch axes: a shard's rows use only its own pages)."""
    Np, Dp = pool_heads(cfg)
    shape = (Np, num_pages, page_size, Dp)
    axes = POOL_AXES
    if shards:
        shape, axes = (shards,) + shape, SHARDED_POOL_AXES
    return {n: [constrain(jnp.zeros(shape, cfg.dtype), axes) for _ in range(cfg.num_layers)] for n in ("k", "v")}


def pack_left_padded(x_BL, mask_BL):
    """Moves each row's real entries (a contiguous run ending at the last column: left
    padding) to the front, keeping their order; the tail holds copies of the last entry.
    `x` is [B, L, ...]."""
    L = mask_BL.shape[1]
    pad = L - jnp.sum(mask_BL.astype(jnp.int32), axis=1)                       # [B]
    idx = jnp.minimum(pad[:, None] + jnp.arange(L)[None, :], L - 1)            # [B, L]
    return jnp.take_along_axis(x_BL, idx.reshape(idx.shape + (1,) * (x_BL.ndim - 2)), axis=1)


def write_prompts(pool, k_LyBLND, v_LyBLND, mask_BL, first_page: int):
    """Writes left-padded prompts' keys/values (prefill's [Ly, B, L, N, Dh]) packed into
    pages: prompt b occupies pages first_page + b·n .. first_page + (b+1)·n − 1, with
    n = ceil(L / page_size). A sharded pool [D, ...] takes the prompts as D contiguous
    blocks of B / D, each numbered from 0 in its own pool. Returns the pool."""
    sharded = pool["k"][0].ndim == 5
    N, _, ps, Dh = pool["k"][0].shape[-4:]
    Ly, B, L = k_LyBLND.shape[:3]
    k_LyBLND, v_LyBLND = _to_pool_heads(k_LyBLND, N, Dh), _to_pool_heads(v_LyBLND, N, Dh)
    D = pool["k"][0].shape[0] if sharded else 1
    n = -(-L // ps)

    def pages(x):
        x = jax.vmap(pack_left_padded, in_axes=(0, None))(x, mask_BL)              # [Ly, B, L, N, Dh]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, n * ps - L), (0, 0), (0, 0)))
        x = x.reshape(Ly, D, (B // D) * n, ps, N, Dh).transpose(0, 1, 4, 2, 3, 5)  # [Ly, D, N, B/D·n, ps, Dh]
        return x if sharded else x[:, 0]

    out = {}
    for name, x in (("k", k_LyBLND), ("v", v_LyBLND)):
        x = pages(x)
        start = (0, 0, first_page, 0, 0) if sharded else (0, first_page, 0, 0)
        out[name] = [constrain(jax.lax.dynamic_update_slice(p, x[i].astype(p.dtype), start),
                               SHARDED_POOL_AXES if sharded else POOL_AXES) for i, p in enumerate(pool[name])]
    return out


def copy_pages(pool, src_B, dst_B):
    """Copies page src[b] to page dst[b] in every layer (dst out of range: skipped). With
    a sharded pool [D, ...], `src` / `dst` are [D, B / D] page ids local to each shard."""
    def one(p, src, dst):
        return p.at[:, dst].set(p[:, src], mode="drop")

    def copy(p):
        if p.ndim == 5:
            return constrain(jax.vmap(one)(p, src_B, dst_B), SHARDED_POOL_AXES)
        return constrain(one(p, src_B, dst_B), POOL_AXES)

    return {n: [copy(p) for p in pool[n]] for n in ("k", "v")}


def _xla_attend(q_BNGK, k_pages, v_pages, table_BM, length_B):
    """Gather-based paged attention: every table entry of each row, columns >= length
    masked. Scores and softmax in float32 (the dense sampler's math)."""
    Dq = q_BNGK.shape[-1]
    q_BNGK = _pad_head(q_BNGK, k_pages.shape[-1])
    N, _, ps, Dh = k_pages.shape
    B, M = table_BM.shape
    k = k_pages[:, table_BM].reshape(N, B, M * ps, Dh)
    v = v_pages[:, table_BM].reshape(N, B, M * ps, Dh)
    s = jnp.einsum("bngd,nbsd->bngs", q_BNGK, k, preferred_element_type=jnp.float32) / math.sqrt(Dq)
    live = jnp.arange(M * ps)[None, :] < length_B[:, None]
    s = jnp.where(live[:, None, None, :], s, NEG_INF)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bngs,nbsd->bngd", p, v)[..., :Dq]


def pages_per_block(table_width: int, page_size: int, target: int = 512) -> int:
    """The Pallas kernel's pages per compute block: the largest divisor of the table
    width covering at most `target` tokens."""
    best = 1
    for d in range(1, table_width + 1):
        if table_width % d == 0 and d * page_size <= max(target, page_size):
            best = d
    return best


def _pallas_attend(q_BNGK, k_pages, v_pages, table_BM, length_B):
    """JAX's Pallas TPU paged-attention kernel (reads the pages below each row's length).
    The kernel applies no softmax scale: q is scaled first.

    Lane-packed pools (`lane_pack` r > 1: pool head j holds KV heads j·r .. j·r + r − 1
    side by side): the kernel sees Np = N / r heads of r·Dh lanes, each serving the r·g
    query heads of its KV heads. Query head (n = j·r + s, i) is placed in lanes
    s·Dh .. (s + 1)·Dh of its row, zeros elsewhere, so q·k over the row is q·k of KV head
    n alone; p·v returns every packed head's values weighted by that query's p, and the
    query keeps lanes s·Dh .. of its own head: the same attention, each page read once
    for all its heads."""
    from jax.experimental.pallas import tpu as pltpu
    from jax.experimental.pallas.ops.tpu.paged_attention import paged_attention

    B, N, g, Dq = q_BNGK.shape
    Np, Dh = k_pages.shape[0], k_pages.shape[-1]
    r = N // Np
    q = (q_BNGK.astype(jnp.float32) / math.sqrt(Dq)).astype(q_BNGK.dtype)
    if r > 1:
        eye = jnp.eye(r, dtype=q.dtype)
        q = jnp.einsum("bjsgd,st->bjsgtd", q.reshape(B, Np, r, g, Dq), eye).reshape(B, Np, r * g, r * Dq)
    q = _pad_head(q, Dh)                                                    # [B, Np, r·g, Dh]
    G = r * g
    # Mosaic tiles the query group in 8s: pad it with zero queries (outputs dropped).
    gp = G if G % 8 == 0 or G == 1 else -(-G // 8) * 8
    if gp != G:
        q = jnp.pad(q, ((0, 0), (0, 0), (0, gp - G), (0, 0)))
    ctx = contextlib.nullcontext() if attention.platform() == "tpu" else pltpu.force_tpu_interpret_mode()
    with ctx:
        out = paged_attention(q.reshape(B, Np * gp, Dh), k_pages, v_pages, length_B.astype(jnp.int32),
                              table_BM.astype(jnp.int32),
                              pages_per_compute_block=pages_per_block(table_BM.shape[1], k_pages.shape[2]))
    out = out.reshape(B, Np, gp, Dh)[:, :, :G]
    if r > 1:
        out = jnp.einsum("bjsgtd,st->bjsgd", out[..., :r * Dq].reshape(B, Np, r, g, r, Dq), eye)
    return out.reshape(B, N, g, -1)[..., :Dq].astype(q_BNGK.dtype)


def use_pallas(cfg: ModelConfig) -> bool:
    """Whether paged decode runs the Pallas TPU kernel: `cfg.attention` resolves to
    "splash" (`rlx.models.attention.resolve`; off TPU the kernel runs interpreted)."""
    return attention.resolve(cfg) == "splash"


def paged_attend(cfg: ModelConfig, q_BNGK, k_pages, v_pages, table_BM, length_B):
    """One query per row against its live tokens: q [B, N, g, Dh] -> [B, N, g, Dh]."""
    fn = _pallas_attend if use_pallas(cfg) else _xla_attend
    return fn(q_BNGK, k_pages, v_pages, table_BM, length_B)


def paged_decode_step(params, cfg: ModelConfig, token_B, table_BM, length_B, pool, live_B=None):
    """Feeds one token per row at column (= position) `length[b]` of its sequence: writes
    its key/value into page table[b, length // ps] at offset length % ps (rows not
    `live` write to the null page), then attends over length + 1 tokens. `params` may be
    plain or `decode_params`. Returns (float32 next-token logits [B, V], pool).

    Sharded pools (`init_pool(shards=D)`): rows are D contiguous blocks of B / D, block d
    using pool d with page ids local to it; writes and attention run per shard (`vmap`
    over the pool's leading axis: no page crosses shards)."""
    sharded = pool["k"][0].ndim == 5
    D = pool["k"][0].shape[0] if sharded else 1
    ps = pool["k"][0].shape[-2]
    B = token_B.shape[0]
    page = jnp.take_along_axis(table_BM, (length_B // ps)[:, None], axis=1, mode="clip")[:, 0]
    if live_B is not None:
        page = jnp.where(live_B, page, 0)
    off = length_B % ps
    ks, vs = list(pool["k"]), list(pool["v"])

    def per_shard(x):
        return x.reshape((D, B // D) + x.shape[1:])

    def write(p, x_BND):                                      # p [(D,) Np, pages, ps, Dp]
        x_BND = _to_pool_heads(x_BND, p.shape[-4], p.shape[-1])

        def one(p, pg, of, x):
            # One scatter per KV head into its flattened (page, offset) rows, each row Dh
            # contiguous: the pool keeps the kernel's [N, pages, ps, Dh] layout and is
            # written in place. (One scatter of [N, B, Dh] made XLA:TPU relayout every
            # layer's pool to put N inside the row and back, each step: `rlx.plan` decode
            # step of configs/scale/qwen05b_v5e8.py, 22.1 -> 4.4 GB accessed per chip.)
            N, pages, ps_, Dh = p.shape
            rows, at = p.reshape(N, pages * ps_, Dh), pg * ps_ + of
            for n in range(N):
                rows = rows.at[n, at].set(x[:, n].astype(p.dtype))
            return rows.reshape(p.shape)
        if not sharded:
            return constrain(one(p, page, off, x_BND), POOL_AXES)
        return constrain(jax.vmap(one)(p, per_shard(page), per_shard(off), per_shard(x_BND)), SHARDED_POOL_AXES)

    def layer(i, q_BNGK, k_B1ND, v_B1ND):
        ks[i], vs[i] = write(ks[i], k_B1ND[:, 0]), write(vs[i], v_B1ND[:, 0])
        if not sharded:
            return paged_attend(cfg, q_BNGK, ks[i], vs[i], table_BM, length_B + 1)
        out = sharded_attend(cfg, per_shard(q_BNGK), ks[i], vs[i], per_shard(table_BM), per_shard(length_B + 1))
        return out.reshape(q_BNGK.shape)

    logits = decode_layers(params, cfg, token_B, length_B, layer)
    return logits, {"k": ks, "v": vs}


def sharded_attend(cfg: ModelConfig, q_DBNGK, k_pages, v_pages, table_DBM, length_DB):
    """`paged_attend` per shard of a sharded pool. The Pallas kernel runs inside
    `shard_map` over the mesh's batch axes (a custom call the partitioner cannot split);
    the XLA path is a `vmap` the partitioner splits along the shard axis."""
    fn = jax.vmap(lambda q, k, v, t, n: paged_attend(cfg, q, k, v, t, n))
    active = rules.active()
    if not use_pallas(cfg) or active is None:
        return fn(q_DBNGK, k_pages, v_pages, table_DBM, length_DB)
    mesh, table = active
    spec_pool = rules.logical_to_spec(SHARDED_POOL_AXES, k_pages.shape, mesh, table)
    lead = spec_pool[0] if len(spec_pool) else None
    P = jax.sharding.PartitionSpec
    heads = spec_pool[1] if len(spec_pool) > 1 else None
    spec_q = P(lead, None, heads, None, None)
    return jax.shard_map(fn, mesh=mesh, in_specs=(spec_q, spec_pool, spec_pool, P(lead), P(lead)), out_specs=spec_q,
                         check_vma=False)(q_DBNGK, k_pages, v_pages, table_DBM, length_DB)


def ragged_decode_step(params, cfg: ModelConfig, token_B, length_B, cache, live_B=None, block: int = 128):
    """The ragged (slot-contiguous) variant: row b's tokens are columns [0, length[b]) of
    its own row of a dense cache (`rlx.models.cache` layout: keys [B, N, Dh, C], values
    [B, N, C, Dh]); the new token is written at column length[b] (rows not `live`: not
    written) and attention reads, in place, the first multiple of `block` columns that
    covers the longest live row (columns >= a row's length + 1 masked). Returns
    (logits, cache)."""
    B = token_B.shape[0]
    C = cache["v"][0].shape[2]
    rows = jnp.arange(B)
    col = length_B if live_B is None else jnp.where(live_B, length_B, C)        # C: dropped
    key_mask = jnp.arange(C)[None, :] < (length_B + 1)[:, None]
    ks, vs = list(cache["k"]), list(cache["v"])
    # Read only the columns below the longest live row, in blocks: one static-width
    # branch per block count (`lax.switch`), so a step costs what is live, not C.
    widths = sorted({min(C, n * block) for n in range(1, -(-C // block) + 1)})
    longest = jnp.max(jnp.where(live_B, length_B + 1, 1)) if live_B is not None else jnp.max(length_B + 1)
    branch = jnp.searchsorted(jnp.asarray(widths), longest, side="left")

    def prefix(w):
        return lambda q, k, v, m: attend_decode(q, k[..., :w], v[:, :, :w], m[:, :w])

    def layer(i, q_BNGK, k_B1ND, v_B1ND):
        ks[i] = constrain(ks[i].at[rows, :, :, col].set(k_B1ND[:, 0].astype(ks[i].dtype), mode="drop"), K_AXES)
        vs[i] = constrain(vs[i].at[rows, :, col, :].set(v_B1ND[:, 0].astype(vs[i].dtype), mode="drop"), V_AXES)
        if len(widths) == 1:
            return attend_decode(q_BNGK, ks[i], vs[i], key_mask)
        return jax.lax.switch(branch, [prefix(w) for w in widths], q_BNGK, ks[i], vs[i], key_mask)

    logits = decode_layers(params, cfg, token_B, length_B, layer)
    return logits, {"k": ks, "v": vs}
