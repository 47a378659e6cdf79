"""The decoder-only transformer (Llama-3 / Qwen2 / Qwen3) as pure functions of a param pytree.

Params are a plain nested dict of arrays (what crosses every jit boundary, what Orbax
saves, what `param_logical_axes` annotates); layers are stacked on a leading "layers"
axis and run with `lax.scan` (one compiled layer, fast compiles at any depth):

  embed       [V, D]                 ("vocab", "embed")
  layers/
    attn_norm [Ly, D]                ("layers", "norm")
    q         [Ly, D, H, Dh]         ("layers", "embed", "q_heads", "head_dim")
    k, v      [Ly, D, N, Dh]         ("layers", "embed", "kv_heads", "head_dim")
    q_bias    [Ly, H, Dh]; k_bias, v_bias [Ly, N, Dh]      (Qwen2: qkv_bias)
    q_norm, k_norm [Ly, Dh]                                 (Qwen3: qk_norm)
    o         [Ly, H, Dh, D]         ("layers", "q_heads", "head_dim", "embed")
    mlp_norm  [Ly, D]
    gate, up  [Ly, D, F]             ("layers", "embed", "mlp")
    down      [Ly, F, D]             ("layers", "mlp", "embed")
  final_norm  [D]
  lm_head     [D, V]                 (untied models only)

Why functions rather than Flax modules: the same layer code serves the full forward,
the KV-cache prefill and decode, and the block-masked shared-prefix forward; params
need no unboxing at jit boundaries; HF weight names map onto the dict one-to-one.
Numerics follow `transformers`: RMSNorm statistics in float32, RoPE tables in float32,
attention softmax in float32, logits in float32; everything else in `cfg.dtype`.

Attention takes an explicit boolean mask `[B, Lq, Lk]` and explicit positions, which
covers left padding, causal decoding from a cache, and packed prompt + completions
(a token attends to its ancestors only).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlx.models.config import ModelConfig
from rlx.parallel.rules import constrain

_NEG = -1e30  # masked attention logit (finite: a fully masked row stays finite)


def init_params(cfg: ModelConfig, key: jax.Array) -> dict:
    """Random init: normal(0, 0.02) matrices, ones for norms, zeros for biases."""
    D, F, V, Ly = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_layers
    H, N, Dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    ks = iter(jax.random.split(key, 10))

    def normal(shape):
        return (0.02 * jax.random.normal(next(ks), shape, jnp.float32)).astype(cfg.param_dtype)

    def ones(shape):
        return jnp.ones(shape, cfg.param_dtype)

    layers = {"attn_norm": ones((Ly, D)), "q": normal((Ly, D, H, Dh)), "k": normal((Ly, D, N, Dh)),
              "v": normal((Ly, D, N, Dh)), "o": normal((Ly, H, Dh, D)), "mlp_norm": ones((Ly, D)),
              "gate": normal((Ly, D, F)), "up": normal((Ly, D, F)), "down": normal((Ly, F, D))}
    if cfg.qkv_bias:
        for n, heads in (("q", H), ("k", N), ("v", N)):
            layers[f"{n}_bias"] = jnp.zeros((Ly, heads, Dh), cfg.param_dtype)
    if cfg.qk_norm:
        layers["q_norm"], layers["k_norm"] = ones((Ly, Dh)), ones((Ly, Dh))
    params = {"embed": normal((V, D)), "layers": layers, "final_norm": ones((D,))}
    if not cfg.tie_embeddings:
        params["lm_head"] = normal((D, V))
    return params


def param_logical_axes(cfg: ModelConfig) -> dict:
    """Logical axis names of every param (same structure as `init_params`)."""
    layers = {"attn_norm": ("layers", "norm"), "q": ("layers", "embed", "q_heads", "head_dim"),
              "k": ("layers", "embed", "kv_heads", "head_dim"), "v": ("layers", "embed", "kv_heads", "head_dim"),
              "o": ("layers", "q_heads", "head_dim", "embed"), "mlp_norm": ("layers", "norm"),
              "gate": ("layers", "embed", "mlp"), "up": ("layers", "embed", "mlp"),
              "down": ("layers", "mlp", "embed")}
    if cfg.qkv_bias:
        layers.update(q_bias=("layers", "q_heads", "head_dim"), k_bias=("layers", "kv_heads", "head_dim"),
                      v_bias=("layers", "kv_heads", "head_dim"))
    if cfg.qk_norm:
        layers.update(q_norm=("layers", "head_dim"), k_norm=("layers", "head_dim"))
    axes = {"embed": ("vocab", "embed"), "layers": layers, "final_norm": ("norm",)}
    if not cfg.tie_embeddings:
        axes["lm_head"] = ("embed", "vocab")
    return axes


# ------------------------------------------------------------------------------ pieces


def rms_norm(x, w, eps: float):
    """HF RMSNorm: statistics in float32, result cast back, then scaled by the weight."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    w = w.astype(x.dtype).reshape((1,) * (x.ndim - w.ndim) + w.shape)
    return w * y.astype(x.dtype)


def rope_inv_freq(cfg: ModelConfig) -> jax.Array:
    """Inverse frequencies [Dh/2], with Llama-3 scaling when configured (float32)."""
    Dh = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, Dh, 2, dtype=jnp.float32) / Dh))
    if cfg.rope_scaling is None:
        return inv
    rs = dict(cfg.rope_scaling)
    factor, lo, hi = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    old = float(rs["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return jnp.where(medium, smoothed, scaled)


def apply_rope(x, positions, inv_freq):
    """x [B, L, n, Dh] rotated by positions [B, L] (HF's rotate-half convention)."""
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq[None, None, :]     # [B, L, Dh/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]                    # [B, L, 1, Dh]
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def attend(q, k, v, mask_BQK):
    """Grouped-query attention. q [B, Lq, H, Dh]; k, v [B, Lk, N, Dh]; mask [B, Lq, Lk]."""
    B, Lq, H, Dh = q.shape
    N = k.shape[2]
    qg = q.reshape(B, Lq, N, H // N, Dh)
    s = jnp.einsum("bqngd,bknd->bngqk", qg, k, preferred_element_type=jnp.float32) / math.sqrt(Dh)
    s = jnp.where(mask_BQK[:, None, None, :, :], s, _NEG)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    out = jnp.einsum("bngqk,bknd->bqngd", p, v)
    return out.reshape(B, Lq, H, Dh)


def _layer(cfg: ModelConfig, inv_freq, x, lp, positions, mask, cache_kv, col):
    """One block. With `cache_kv` (k, v [B, S, N, Dh]) the new keys/values are written at
    column `col` and attention runs over the whole cache (mask [B, L, S])."""
    eps = cfg.rms_norm_eps
    dt = cfg.dtype
    h = rms_norm(x, lp["attn_norm"], eps)
    q = jnp.einsum("bld,dhk->blhk", h, lp["q"].astype(dt))
    k = jnp.einsum("bld,dnk->blnk", h, lp["k"].astype(dt))
    v = jnp.einsum("bld,dnk->blnk", h, lp["v"].astype(dt))
    if cfg.qkv_bias:
        q = q + lp["q_bias"].astype(dt)[None, None]
        k = k + lp["k_bias"].astype(dt)[None, None]
        v = v + lp["v_bias"].astype(dt)[None, None]
    if cfg.qk_norm:
        q = rms_norm(q, lp["q_norm"], eps)
        k = rms_norm(k, lp["k_norm"], eps)
    q = constrain(apply_rope(q, positions, inv_freq), ("batch", "length", "act_heads", None))
    k = apply_rope(k, positions, inv_freq)
    if cache_kv is not None:
        ck = jax.lax.dynamic_update_slice(cache_kv[0], k.astype(cache_kv[0].dtype), (0, col, 0, 0))
        cv = jax.lax.dynamic_update_slice(cache_kv[1], v.astype(cache_kv[1].dtype), (0, col, 0, 0))
        ck = constrain(ck, ("cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim"))
        cv = constrain(cv, ("cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim"))
        att = attend(q, ck, cv, mask)
        new_cache = (ck, cv)
    else:
        att = attend(q, k, v, mask)
        new_cache = None
    x = x + jnp.einsum("blhk,hkd->bld", att, lp["o"].astype(dt))
    h = rms_norm(x, lp["mlp_norm"], eps)
    g = jnp.einsum("bld,df->blf", h, lp["gate"].astype(dt))
    u = jnp.einsum("bld,df->blf", h, lp["up"].astype(dt))
    a = constrain(jax.nn.silu(g) * u, ("batch", "length", "act_mlp"))
    x = x + jnp.einsum("blf,fd->bld", a, lp["down"].astype(dt))
    return constrain(x, ("batch", "length", "act_embed")), new_cache


def core(params, cfg: ModelConfig, tokens_BL, positions_BL, mask_BLK, cache=None, col=0):
    """Embedding -> layers -> final norm. Returns (hidden [B, L, D] in cfg.dtype, cache).

    cache: None (keys = this call's tokens; mask [B, L, L]) or {"k", "v"} of
    [Ly, B, S, N, Dh] (keys = the cache after writing this call's tokens at `col`;
    mask [B, L, S]).
    """
    inv_freq = rope_inv_freq(cfg)
    x = jnp.take(params["embed"], tokens_BL, axis=0).astype(cfg.dtype)
    x = constrain(x, ("batch", "length", "act_embed"))

    def body(x, inp):
        lp, kv = inp
        return _layer(cfg, inv_freq, x, lp, positions_BL, mask_BLK, kv, col)

    if cfg.remat:
        body = jax.checkpoint(body)
    kv_in = None if cache is None else (cache["k"], cache["v"])
    x, kv_out = jax.lax.scan(body, x, (params["layers"], kv_in))
    new_cache = None if cache is None else {"k": kv_out[0], "v": kv_out[1]}
    return rms_norm(x, params["final_norm"], cfg.rms_norm_eps), new_cache


def unembed_matrix(params, cfg: ModelConfig) -> jax.Array:
    """The output projection [D, V] (the transposed embedding for tied models)."""
    return params["embed"].T if cfg.tie_embeddings else params["lm_head"]


def logits_from_hidden(params, cfg: ModelConfig, h):
    """float32 logits [..., V] (float32 accumulation)."""
    w = unembed_matrix(params, cfg).astype(cfg.dtype)
    return jnp.einsum("...d,dv->...v", h, w, preferred_element_type=jnp.float32)


def padding_positions(mask_BL):
    """Positions of left-padded rows: 0 at the first real token (cumsum of the mask − 1)."""
    return jnp.maximum(jnp.cumsum(mask_BL.astype(jnp.int32), axis=1) - 1, 0)


def causal_mask(attention_mask_BL):
    """[B, L, L]: query i sees key j iff j <= i and key j is a real token."""
    L = attention_mask_BL.shape[1]
    causal = jnp.tril(jnp.ones((L, L), bool))
    return causal[None] & attention_mask_BL.astype(bool)[:, None, :]


def hidden_states(params, cfg: ModelConfig, tokens_BL, *, positions_BL=None, attention_mask_BL=None):
    """Final-norm hidden states [B, L, D]; attention_mask marks real tokens (left padding)."""
    if attention_mask_BL is None:
        attention_mask_BL = jnp.ones(tokens_BL.shape, bool)
    if positions_BL is None:
        positions_BL = padding_positions(attention_mask_BL)
    h, _ = core(params, cfg, tokens_BL, positions_BL, causal_mask(attention_mask_BL))
    return h


def forward(params, cfg: ModelConfig, tokens_BL, *, positions_BL=None, attention_mask_BL=None):
    """float32 logits [B, L, V] of the next token at every position."""
    h = hidden_states(params, cfg, tokens_BL, positions_BL=positions_BL, attention_mask_BL=attention_mask_BL)
    return logits_from_hidden(params, cfg, h)
