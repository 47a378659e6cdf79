"""The decoder-only transformer (Llama-3 / Qwen2 / Qwen3) as pure functions of a param pytree.

Params are a plain nested dict of arrays (what crosses every jit boundary, what Orbax
saves, what `param_logical_axes` annotates); layers are stacked on a leading "layers"
axis and run with `lax.scan` (one compiled layer: fast compiles at any depth):

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

Implementation note (a deliberate deviation from "a Flax module"): the model is
written as pure JAX functions over this dict rather than as `flax.linen` modules. One
layer function then serves four call patterns — the full forward (training), the
KV-cache prefill, the unrolled single-token decode step, and the packed shared-prefix
/ tree forward — by taking the attention as an argument; params need no unboxing at
jit boundaries and HF weight names map onto the dict one-to-one. Logical-axis
annotations on activations go through `rlx.parallel.rules.constrain`, which is a no-op
unless a rules table is active (`rlx.parallel.use_rules`).

Numerics follow `transformers`: RMSNorm statistics in float32, RoPE tables in float32,
attention scores and softmax in float32, logits in float32; everything else in
`cfg.dtype` (weights are cast from `cfg.param_dtype` where they are used).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rlx.models import lora
from rlx.models import matmul as mm
from rlx.models.config import ModelConfig
from rlx.parallel.rules import constrain

NEG_INF = -1e30  # masked attention score (finite: a fully masked query row stays finite)

# attention(q [B, L, H, Dh], k [B, L, N, Dh], v [B, L, N, Dh]) -> [B, L, H, Dh]
Attention = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


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
    """Logical axis names of every param (same structure as `init_params`, plus
    `layers/lora` for a LoRA config: `rlx.models.lora.attach`). A quantized weight (a
    qwix QArray) takes its matrix's names for each of its arrays."""
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
    if lora.enabled(cfg):
        layers["lora"] = lora.logical_axes(cfg)
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
    """Inverse frequencies [Dh/2], with Llama-3 scaling when configured (float32).

    Llama-3 scaling (transformers `_compute_llama3_parameters`): wavelengths longer
    than original_max / low_freq_factor are divided by `factor`, shorter than
    original_max / high_freq_factor kept, and those in between interpolated smoothly.
    """
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


def apply_rope(x, positions_BL, inv_freq):
    """x [B, L, n, Dh] rotated by positions [B, L] (HF's rotate-half convention)."""
    freqs = positions_BL.astype(jnp.float32)[..., None] * inv_freq[None, None, :]   # [B, L, Dh/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]                    # [B, L, 1, Dh]
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rot * sin


def attend(q, k, v, mask_BQK):
    """Grouped-query attention over an explicit boolean mask.

    q [B, Lq, H, Dh]; k, v [B, Lk, N, Dh]; mask [B, Lq, Lk] (True: query i may attend
    to key j). Scores and softmax in float32. Heads are laid out [B, N, g, L, Dh]
    before the two batched matmuls (measured ~3x faster than a 5-d einsum on CPU; a
    natural layout on accelerators too).
    """
    B, Lq, H, Dh = q.shape
    N = k.shape[2]
    qg = q.reshape(B, Lq, N, H // N, Dh).transpose(0, 2, 3, 1, 4)            # [B, N, g, Lq, Dh]
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)                # [B, N, Lk, Dh]
    s = mm.einsum("bngqd,bnkd->bngqk", qg, kt, preferred_element_type=jnp.float32) / math.sqrt(Dh)
    s = jnp.where(mask_BQK[:, None, None, :, :], s, NEG_INF)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    out = mm.einsum("bngqk,bnkd->bngqd", p, vt)
    return out.transpose(0, 3, 1, 2, 4).reshape(B, Lq, H, Dh)


def masked_attention(mask_BQK) -> Attention:
    """The plain attention of a forward pass: every query sees the keys `mask` allows."""
    return lambda q, k, v: attend(q, k, v, mask_BQK)


def project_qkv(cfg: ModelConfig, lp: dict, x, positions_BL, inv_freq):
    """Attention-norm, q/k/v projections (+ bias, + QK-norm), RoPE.
    Returns q [B, L, H, Dh], k, v [B, L, N, Dh] in cfg.dtype."""
    dt = cfg.dtype
    h = rms_norm(x, lp["attn_norm"], cfg.rms_norm_eps)
    if "qkv" in lp:                         # fused by `rlx.models.cache.decode_params`
        B, L = h.shape[:2]
        H, N, Dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        qkv = mm.einsum("bld,de->ble", h, lp["qkv"])
        if cfg.qkv_bias:
            qkv = qkv + lp["qkv_bias"][None, None]
        q = qkv[..., :H * Dh].reshape(B, L, H, Dh)
        k = qkv[..., H * Dh:(H + N) * Dh].reshape(B, L, N, Dh)
        v = qkv[..., (H + N) * Dh:].reshape(B, L, N, Dh)
    else:
        q = _linear(cfg, lp, "q", "bld,dhk->blhk", h)
        k = _linear(cfg, lp, "k", "bld,dnk->blnk", h)
        v = _linear(cfg, lp, "v", "bld,dnk->blnk", h)
        if cfg.qkv_bias:
            q = q + lp["q_bias"].astype(dt)[None, None]
            k = k + lp["k_bias"].astype(dt)[None, None]
            v = v + lp["v_bias"].astype(dt)[None, None]
    if cfg.qk_norm:
        q = rms_norm(q, lp["q_norm"], cfg.rms_norm_eps)
        k = rms_norm(k, lp["k_norm"], cfg.rms_norm_eps)
    q = constrain(apply_rope(q, positions_BL, inv_freq), ("batch", "length", "act_heads", None))
    k = constrain(apply_rope(k, positions_BL, inv_freq), ("batch", "length", "act_kv_heads", None))
    v = constrain(v, ("batch", "length", "act_kv_heads", None))
    return q, k, v


def _linear(cfg: ModelConfig, lp: dict, name: str, spec: str, x):
    """x times layer weight `name` (dequantized if stored quantized), plus its LoRA delta
    when the layer carries an adapter for it (`rlx.models.lora`)."""
    y = mm.einsum(spec, x, lora.weight(lp, name, cfg.dtype))
    d = lora.delta(cfg, lp, name, x)
    return y if d is None else y + d


def finish_layer(cfg: ModelConfig, lp: dict, x, att_BLHK):
    """Output projection + residual, then the SwiGLU MLP block + residual."""
    x = x + _linear(cfg, lp, "o", "blhk,hkd->bld", att_BLHK)
    h = rms_norm(x, lp["mlp_norm"], cfg.rms_norm_eps)
    if "gate_up" in lp:                     # fused by `rlx.models.cache.decode_params`
        if lp["gate_up"].ndim == 3:         # [D, 2, F]: sharded over F (`constrain_decode_params`)
            gu = mm.einsum("bld,dkf->blkf", h, lp["gate_up"])
            g, u = gu[..., 0, :], gu[..., 1, :]
        else:                               # [D, 2F]
            gu = mm.einsum("bld,df->blf", h, lp["gate_up"])
            g, u = gu[..., :cfg.intermediate_size], gu[..., cfg.intermediate_size:]
    else:
        g = _linear(cfg, lp, "gate", "bld,df->blf", h)
        u = _linear(cfg, lp, "up", "bld,df->blf", h)
    a = constrain(jax.nn.silu(g) * u, ("batch", "length", "act_mlp"))
    x = x + _linear(cfg, lp, "down", "blf,fd->bld", a)
    return constrain(x, ("batch", "length", "act_embed"))


def embed_tokens(params, cfg: ModelConfig, tokens_BL):
    x = jnp.take(params["embed"], tokens_BL, axis=0).astype(cfg.dtype)
    return constrain(x, ("batch", "length", "act_embed"))


def core(params, cfg: ModelConfig, tokens_BL, positions_BL, attention: Attention, *, return_kv: bool = False):
    """Embedding -> scanned layers -> final norm.

    Returns (hidden [B, L, D] in cfg.dtype, kv) where kv is None, or with `return_kv`
    the stacked keys and values (k, v) [Ly, B, L, N, Dh] of every layer (the prefill
    writes them into a cache).
    """
    inv_freq = rope_inv_freq(cfg)
    x = embed_tokens(params, cfg, tokens_BL)

    def body(x, lp):
        q, k, v = project_qkv(cfg, lp, x, positions_BL, inv_freq)
        x = finish_layer(cfg, lp, x, attention(q, k, v))
        return x, ((k, v) if return_kv else None)

    if cfg.remat != "none":
        body = jax.checkpoint(body, policy=remat_policy(cfg.remat))
    x, kv = jax.lax.scan(body, x, params["layers"], unroll=cfg.unroll_layers)
    return rms_norm(x, params["final_norm"], cfg.rms_norm_eps), kv


def remat_policy(name: str):
    """The `jax.checkpoint` policy of a `ModelConfig.remat` name ("full": save nothing
    inside the layer; "dots_saveable": save matmul results)."""
    if name == "full":
        return jax.checkpoint_policies.nothing_saveable
    if name == "dots_saveable":
        return jax.checkpoint_policies.dots_saveable
    raise ValueError(f"remat_policy: no policy for {name!r}")


def unembed_matrix(params, cfg: ModelConfig) -> jax.Array:
    """The output projection [D, V] (the transposed embedding for tied models)."""
    return params["embed"].T if cfg.tie_embeddings else params["lm_head"]


def logits_from_hidden(params, cfg: ModelConfig, h):
    """float32 logits [..., V] of final-norm hidden states [..., D] (float32 accumulation)."""
    w = unembed_matrix(params, cfg).astype(cfg.dtype)
    logits = mm.einsum("nd,dv->nv", h.reshape(-1, h.shape[-1]), w, preferred_element_type=jnp.float32)
    return logits.reshape(h.shape[:-1] + (w.shape[1],))


def padding_positions(mask_BL):
    """Positions of left-padded rows: 0 at the first real token (cumsum of the mask − 1,
    clipped at 0 on the padding)."""
    return jnp.maximum(jnp.cumsum(mask_BL.astype(jnp.int32), axis=1) - 1, 0)


def causal_mask(attention_mask_BL):
    """[B, L, L]: query i sees key j iff j <= i and key j is a real token."""
    L = attention_mask_BL.shape[1]
    causal = jnp.tril(jnp.ones((L, L), bool))
    return causal[None] & attention_mask_BL.astype(bool)[:, None, :]


def _check_tokens(name: str, tokens_BL, *others):
    if tokens_BL.ndim != 2:
        raise ValueError(f"{name}: tokens must be [B, L], got shape {tokens_BL.shape}")
    for other_name, x in others:
        if x is not None and x.shape != tokens_BL.shape:
            raise ValueError(f"{name}: {other_name} must have the tokens' shape {tokens_BL.shape}, got {x.shape}")


def hidden_states(params, cfg: ModelConfig, tokens_BL, *, positions_BL=None, attention_mask_BL=None):
    """Final-norm hidden states [B, L, D] (cfg.dtype). `attention_mask` marks real
    tokens (default all); positions default to cumsum(mask) − 1 (left padding).
    Attention: causal among real tokens through `cfg.attention`'s kernel
    (`rlx.models.attention`)."""
    _check_tokens("hidden_states", tokens_BL, ("positions_BL", positions_BL),
                  ("attention_mask_BL", attention_mask_BL))
    if attention_mask_BL is None:
        attention_mask_BL = jnp.ones(tokens_BL.shape, bool)
    if positions_BL is None:
        positions_BL = padding_positions(attention_mask_BL)
    from rlx.models import attention

    h, _ = core(params, cfg, tokens_BL, positions_BL, attention.causal(cfg, attention_mask_BL))
    return h


def forward(params, cfg: ModelConfig, tokens_BL, *, positions_BL=None, attention_mask_BL=None):
    """float32 logits [B, L, V] of the next token at every position (see `hidden_states`)."""
    h = hidden_states(params, cfg, tokens_BL, positions_BL=positions_BL, attention_mask_BL=attention_mask_BL)
    return constrain(logits_from_hidden(params, cfg, h), ("batch", "length", "act_vocab"))
