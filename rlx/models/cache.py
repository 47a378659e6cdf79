"""KV cache: allocation, prompt prefill and the single-token decode step.

The cache is {"k": [k_0, ..., k_{Ly-1}], "v": [v_0, ...]}: one buffer per layer in the
compute dtype, keys `[B, N, Dh, S]` (logical axes `K_AXES`: cache_batch, cache_kv_heads,
cache_head_dim, cache_length) and values `[B, N, S, Dh]` (`V_AXES`). Layout choices,
each measured on CPU in the decode loop (a decode step is bound by reading the cache):
keys with the length axis last make q·K a contiguous pass over the columns and values
with head_dim last make p·V one (together ~1.5x faster than the token-major layout);
and one buffer per layer rather than one stacked `[Ly, ...]` array, because slicing a
layer out of a loop-carried stack made XLA copy it every step.

Column layout: prompts are left-padded into columns [0, Lp); the sampler writes
generated token t at column Lp + t for every row, so one scalar write index serves the
whole batch (`dynamic_update_slice`). A `[B, S]` key mask says which columns hold real
tokens; positions (for RoPE) are per row and count real tokens only — so a row's
numbers do not depend on how much padding it has.

The decode step runs the layers as an unrolled Python loop over a list of per-layer
params (`decode_params`, prepared once per sampling call, outside the decode loop:
weights cast to the compute dtype, unstacked, q/k/v and gate/up fused), writing each
layer's new key and value in place and then attending over the updated buffer.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rlx.models import lora
from rlx.models.config import ModelConfig
from rlx.models.transformer import (
    NEG_INF,
    core,
    embed_tokens,
    finish_layer,
    logits_from_hidden,
    padding_positions,
    param_logical_axes,
    project_qkv,
    rms_norm,
    rope_inv_freq,
)
from rlx.parallel import rules
from rlx.parallel.rules import constrain

K_AXES = ("cache_batch", "cache_kv_heads", "cache_head_dim", "cache_length")
V_AXES = ("cache_batch", "cache_kv_heads", "cache_length", "cache_head_dim")
_AXES = {"k": K_AXES, "v": V_AXES}


def init_cache(cfg: ModelConfig, batch: int, length: int) -> dict:
    """Zeros {"k": Ly x [batch, N, Dh, length], "v": Ly x [batch, N, length, Dh]} in the
    compute dtype."""
    N, Dh = cfg.num_kv_heads, cfg.head_dim
    return {"k": [jnp.zeros((batch, N, Dh, length), cfg.dtype) for _ in range(cfg.num_layers)],
            "v": [jnp.zeros((batch, N, length, Dh), cfg.dtype) for _ in range(cfg.num_layers)]}


def cache_logical_axes(cfg: ModelConfig) -> dict:
    """Logical axis names of the cache (same structure as `init_cache`)."""
    return {n: [a] * cfg.num_layers for n, a in _AXES.items()}


def attend_decode(q_BNGK, kT_BNKS, v_BNSK, key_mask_BS):
    """One query per row against the cache: q [B, N, g, Dh], keys [B, N, Dh, S], values
    [B, N, S, Dh], key mask [B, S]. Scores and softmax in float32; returns [B, N, g, Dh].
    Same math as `attend` (the training path).

    Known CPU inefficiency: with a single KV head (N = 1) XLA duplicates the cache update
    into this read and copies each buffer per step (N >= 2, all Llama-3 / Qwen models,
    updates in place)."""
    scale = 1.0 / math.sqrt(q_BNGK.shape[-1])
    s = jnp.einsum("bngd,bnds->bngs", q_BNGK, kT_BNKS, preferred_element_type=jnp.float32) * scale
    s = jnp.where(key_mask_BS[:, None, None, :], s, NEG_INF)
    p = jax.nn.softmax(s, axis=-1).astype(v_BNSK.dtype)
    return jnp.einsum("bngs,bnsd->bngd", p, v_BNSK)


def decode_params(params, cfg: ModelConfig) -> dict:
    """Params for `decode_step`, prepared once per sampling call (inside its jit, before
    the decode loop): everything cast to the compute dtype, the layer stack split into a
    list (the unrolled decode step never re-slices or re-casts a weight per token), and
    per layer the q/k/v projections fused into one [D, (H + 2N)·Dh] matrix ("qkv",
    "qkv_bias") and gate/up into one [D, 2F] ("gate_up"; `constrain_decode_params` views it
    as [D, 2, F] when it shards F): fewer, larger matmuls per token. Idempotent.

    LoRA / QLoRA params (`rlx.models.lora`): with `cfg.lora_sampler == "merge"` the
    adapters are folded into the weights (and quantized weights dequantized) here, once
    per call, and the rest is as above; with "adapters" the base stays as stored
    (quantized weights dequantized per layer and token, no fusion) and each decode step
    adds the adapters' x·A·B."""
    if isinstance(params["layers"], (list, tuple)):
        return params
    special = lora.has_adapters(params) or any(lora.is_quantized(w) for w in params["layers"].values())
    if special and cfg.lora_sampler == "adapters":
        cast = jax.tree.map(lambda w: w if lora.is_quantized(w) else w.astype(cfg.dtype), params,
                            is_leaf=lora.is_quantized)
        layers = [jax.tree.map(lambda w, i=i: w[i], cast["layers"]) for i in range(cfg.num_layers)]
        return {**cast, "layers": layers}
    if special:
        return _merged_decode_params(params, cfg)
    cast = jax.tree.map(lambda w: w.astype(cfg.dtype), params)
    L = cast["layers"]
    D = cfg.hidden_size
    fused = {"qkv": jnp.concatenate([L[n].reshape(cfg.num_layers, D, -1) for n in ("q", "k", "v")], axis=-1),
             "gate_up": jnp.concatenate([L["gate"], L["up"]], axis=-1)}
    if cfg.qkv_bias:
        fused["qkv_bias"] = jnp.concatenate([L[f"{n}_bias"].reshape(cfg.num_layers, -1) for n in ("q", "k", "v")],
                                            axis=-1)
    keep = {n: w for n, w in L.items() if n not in ("q", "k", "v", "q_bias", "k_bias", "v_bias", "gate", "up")}
    stacked = {**keep, **fused}
    layers = [jax.tree.map(lambda w, i=i: w[i], stacked) for i in range(cfg.num_layers)]
    return {**cast, "layers": layers}


_FUSED_AXES = {"qkv": ("embed", None), "qkv_bias": (None,), "gate_up": ("embed", None, "mlp")}


def constrain_decode_params(dp, cfg: ModelConfig) -> dict:
    """Pins every plain array of `decode_params` output to its logical axes under the
    active rules (`rlx.parallel.decode_rules` says where a decode step wants its weights);
    identity outside `use_rules`. Quantized weights and adapters (the "adapters" sampler)
    keep the placement the partitioner gives them."""
    names = {n: a[1:] for n, a in param_logical_axes(cfg)["layers"].items() if n != "lora"} | _FUSED_AXES
    top = {k: v for k, v in param_logical_axes(cfg).items() if k != "layers"}

    def pin(w, axes):
        return constrain(w, axes) if isinstance(w, jax.Array) and axes is not None and len(axes) == w.ndim else w

    def split(n, w):
        # [D, 2F] (gate | up) viewed as [D, 2, F] (a reshape): sharding F keeps each
        # device's gate and up columns together. (Fused as [D, 2, F] throughout, the CPU
        # decode was ~20% slower: benchmarks/sampler.py 1.24 -> 1.16.)
        return w.reshape(w.shape[0], 2, -1) if n == "gate_up" and getattr(w, "ndim", 0) == 2 else w
    layers = [{n: pin(split(n, w), names.get(n)) for n, w in lp.items()} for lp in dp["layers"]]
    return {**{k: pin(v, top.get(k)) for k, v in dp.items() if k != "layers"}, "layers": layers}


def _merged_decode_params(params, cfg: ModelConfig) -> dict:
    """"merge" sampling of LoRA / QLoRA params, layer by layer: slice layer i (a quantized
    matrix's arrays too), fold its adapters in and dequantize (`lora.merged_layers`, float32
    per matrix), pin each merged matrix to its param sharding, fuse qkv / gate_up. Merging
    the whole [Ly, ...] stack at once would hold every matrix in float32 at the same time,
    and a dequantized stack loses its sharding (an NF4 7B base merged whole needed 28.7 GiB
    per v5e chip; layer by layer the sampler's peak is that of full fine-tuning)."""
    axes = param_logical_axes(cfg)["layers"]
    D = cfg.hidden_size
    layers = []
    for i in range(cfg.num_layers):
        li = lora.merged_layers(jax.tree.map(lambda w, i=i: w[i], params["layers"]), cfg, cfg.dtype)
        li = {n: constrain(w, axes[n][1:]) for n, w in li.items()}
        fused = {"qkv": jnp.concatenate([li[n].reshape(D, -1) for n in ("q", "k", "v")], axis=-1),
                 "gate_up": jnp.concatenate([li["gate"], li["up"]], axis=-1)}
        if cfg.qkv_bias:
            fused["qkv_bias"] = jnp.concatenate([li[f"{n}_bias"].reshape(-1) for n in ("q", "k", "v")])
        keep = {n: w for n, w in li.items() if n not in ("q", "k", "v", "q_bias", "k_bias", "v_bias", "gate", "up")}
        layers.append({**keep, **fused})
    rest = {k: jax.tree.map(lambda w: w.astype(cfg.dtype), v) for k, v in params.items() if k != "layers"}
    return {**rest, "layers": layers}


def prefill_kv(params, cfg: ModelConfig, tokens_BL, mask_BL):
    """The prompt forward of a sampler: (float32 logits of the next token [B, V], keys
    and values [Ly, B, L, N, Dh] of every column, position of the next token [B] =
    number of real prompt tokens). Prompts are left-padded; attention through
    `cfg.attention`'s kernel."""
    from rlx.models import attention

    mask = mask_BL.astype(bool)
    h, (k, v) = core(params, cfg, tokens_BL, padding_positions(mask), attention.causal(cfg, mask), return_kv=True)
    return logits_from_hidden(params, cfg, h[:, -1]), k, v, jnp.sum(mask, axis=1, dtype=jnp.int32)


def prefill(params, cfg: ModelConfig, tokens_BL, mask_BL, cache):
    """Runs the left-padded prompts and writes their keys/values into columns [0, L).

    Returns (float32 logits of the next token [B, V], cache, position of the next
    token [B] = number of real prompt tokens).
    """
    L = tokens_BL.shape[1]
    S = cache["v"][0].shape[2]
    if L > S:
        raise ValueError(f"prefill: {L} prompt columns do not fit a cache of length {S}")
    logits, k, v, pos = prefill_kv(params, cfg, tokens_BL, mask_BL)       # [Ly, B, L, N, Dh]
    k, v = k.transpose(0, 1, 3, 4, 2), v.transpose(0, 1, 3, 2, 4)
    new = {n: [constrain(jax.lax.dynamic_update_slice(c, x[i].astype(c.dtype), (0, 0, 0, 0)), _AXES[n])
               for i, c in enumerate(cache[n])] for n, x in (("k", k), ("v", v))}
    return logits, new, pos


def _mesh_axes(spec, dim: int) -> tuple:
    part = spec[dim] if len(spec) > dim else None
    return () if part is None else (part,) if isinstance(part, str) else tuple(part)


def sharded_embed(params, cfg: ModelConfig, tokens_BL):
    """`embed_tokens`; under `use_rules` with the embedding sharded over its vocabulary, a
    vocabulary-parallel lookup: each device looks the tokens up in its own block of rows
    (zeros for tokens outside it) and the blocks are summed (`psum`: one token's row
    plus zeros, exact). XLA's partitioner instead all-gathers the whole table for a
    gather from a vocabulary-sharded operand — on every decode step (Qwen2.5-0.5B:
    0.27 GB per chip per step)."""
    active = rules.active()
    table = params["embed"]
    if active is None or not isinstance(table, jax.Array) or table.ndim != 2:
        return embed_tokens(params, cfg, tokens_BL)
    mesh, rtable = active
    P = jax.sharding.PartitionSpec
    spec_e = rules.logical_to_spec(("vocab", "embed"), table.shape, mesh, rtable)
    spec_t = rules.logical_to_spec(("batch", "length"), tokens_BL.shape, mesh, rtable)
    vocab_axes = _mesh_axes(spec_e, 0)
    embed_part = spec_e[1] if len(spec_e) > 1 else None
    token_axes = set(_mesh_axes(spec_t, 0) + _mesh_axes(spec_t, 1))
    # Tokens sharded over an axis the table is also sharded over: the partitioner's way.
    if not vocab_axes or token_axes & set(vocab_axes + _mesh_axes(spec_e, 1)):
        return embed_tokens(params, cfg, tokens_BL)
    rows = table.shape[0] // int(np.prod([mesh.shape[a] for a in vocab_axes]))

    def local(e, t):
        block = jax.lax.axis_index(vocab_axes) if len(vocab_axes) > 1 else jax.lax.axis_index(vocab_axes[0])
        i = t - block * rows
        inside = (i >= 0) & (i < rows)
        x = jnp.where(inside[..., None], jnp.take(e, jnp.clip(i, 0, rows - 1), axis=0), 0).astype(cfg.dtype)
        return jax.lax.psum(x, vocab_axes)

    spec_x = P(*(tuple(spec_t) + (None,) * (2 - len(spec_t))), embed_part)
    x = jax.shard_map(local, mesh=mesh, in_specs=(P(*spec_e), P(*spec_t)), out_specs=spec_x,
                      check_vma=False)(table, tokens_BL)
    return constrain(x, ("batch", "length", "act_embed"))


def decode_layers(params, cfg: ModelConfig, token_B, position_B, attend_layer):
    """The single-token decode forward shared by the dense and paged caches: embeds one
    token per row at RoPE position `position`, and per layer i calls
    `attend_layer(i, q [B, N, g, Dh], k [B, 1, N, Dh], v [B, 1, N, Dh])`, which stores
    the new key/value in its cache and returns the attention output [B, N, g, Dh].
    Returns float32 next-token logits [B, V]."""
    dp = decode_params(params, cfg)
    inv_freq = rope_inv_freq(cfg)
    B = token_B.shape[0]
    N, Dh = cfg.num_kv_heads, cfg.head_dim
    g = cfg.num_heads // N
    x = sharded_embed(dp, cfg, token_B[:, None])                              # [B, 1, D]
    pos = position_B[:, None]
    for i, lp in enumerate(dp["layers"]):
        q, k, v = project_qkv(cfg, lp, x, pos, inv_freq)                      # [B, 1, H|N, Dh]
        att = attend_layer(i, q.reshape(B, N, g, Dh), k, v)                   # [B, N, g, Dh]
        x = finish_layer(cfg, lp, x, att.reshape(B, 1, N * g, Dh))
    h = rms_norm(x[:, 0], dp["final_norm"], cfg.rms_norm_eps)
    # Pinned where the rules put the vocabulary: otherwise a caller that wants the logits
    # row-sharded makes the partitioner all-gather the LM head rather than the logits.
    return constrain(logits_from_hidden(dp, cfg, h), ("batch", "act_vocab"))


def decode_step(params, cfg: ModelConfig, token_B, position_B, cache, key_mask_BS, col):
    """Feeds one token per row, written at cache column `col` (a scalar; `key_mask`
    must already include that column). `params` may be the plain params or, faster in
    a loop, `decode_params(params, cfg)`.

    Returns (float32 next-token logits [B, V], cache).
    """
    ks, vs = list(cache["k"]), list(cache["v"])
    key_mask = key_mask_BS.astype(bool)

    def layer(i, q, k, v):
        ks[i] = constrain(jax.lax.dynamic_update_slice(ks[i], k.transpose(0, 2, 3, 1).astype(ks[i].dtype),
                                                       (0, 0, 0, col)), K_AXES)
        vs[i] = constrain(jax.lax.dynamic_update_slice(vs[i], v.transpose(0, 2, 1, 3).astype(vs[i].dtype),
                                                       (0, 0, col, 0)), V_AXES)
        return attend_decode(q, ks[i], vs[i], key_mask)

    logits = decode_layers(params, cfg, token_B, position_B, layer)
    return logits, {"k": ks, "v": vs}


def extend_step(params, cfg: ModelConfig, tokens_BC, position_B, lengths_B, cache, key_mask_BS, col):
    """Feeds a chunk of up to C given tokens per row in one forward (chunked prefill into
    a filled cache): row b's first `lengths_B[b]` tokens of `tokens_BC`, token j at RoPE
    position `position_B[b] + j`, its key/value written at column `col + j` (all C
    columns are written; `key_mask` must already mark the live ones, and the cache must
    have C columns from `col`). Query j attends the live columns before `col + j + 1`: the
    history and the chunk's tokens up to itself. `params` as for `decode_step`.

    Returns (float32 logits after each row's last fed token [B, V] — meaningless for a
    row fed nothing, which the caller keeps as it was — and the cache)."""
    dp = decode_params(params, cfg)
    inv_freq = rope_inv_freq(cfg)
    B, C = tokens_BC.shape
    N, Dh = cfg.num_kv_heads, cfg.head_dim
    g = cfg.num_heads // N
    S = key_mask_BS.shape[1]
    ks, vs = list(cache["k"]), list(cache["v"])
    j = jnp.arange(C, dtype=jnp.int32)
    sees = key_mask_BS.astype(bool)[:, None, :] & (jnp.arange(S)[None, None, :] <= col + j[None, :, None])
    scale = 1.0 / math.sqrt(Dh)
    x = sharded_embed(dp, cfg, tokens_BC)                                     # [B, C, D]
    pos = position_B[:, None] + j[None]
    for i, lp in enumerate(dp["layers"]):
        q, k, v = project_qkv(cfg, lp, x, pos, inv_freq)                      # [B, C, H|N, Dh]
        ks[i] = constrain(jax.lax.dynamic_update_slice(ks[i], k.transpose(0, 2, 3, 1).astype(ks[i].dtype),
                                                       (0, 0, 0, col)), K_AXES)
        vs[i] = constrain(jax.lax.dynamic_update_slice(vs[i], v.transpose(0, 2, 1, 3).astype(vs[i].dtype),
                                                       (0, 0, col, 0)), V_AXES)
        sc = jnp.einsum("bcngd,bnds->bngcs", q.reshape(B, C, N, g, Dh), ks[i],
                        preferred_element_type=jnp.float32) * scale
        sc = jnp.where(sees[:, None, None], sc, NEG_INF)
        p = jax.nn.softmax(sc, axis=-1).astype(vs[i].dtype)
        att = jnp.einsum("bngcs,bnsd->bcngd", p, vs[i])
        x = finish_layer(cfg, lp, x, att.reshape(B, C, N * g, Dh))
    last = jnp.clip(lengths_B.astype(jnp.int32) - 1, 0, C - 1)
    h = rms_norm(jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0], dp["final_norm"], cfg.rms_norm_eps)
    return constrain(logits_from_hidden(dp, cfg, h), ("batch", "act_vocab")), {"k": ks, "v": vs}


def repeat_rows(tree, n: int, axis: int = 0):
    """Every row becomes n consecutive rows (row r -> rows r*n .. r*n+n-1): forking."""
    return jax.tree.map(lambda x: jnp.repeat(x, n, axis=axis), tree)
