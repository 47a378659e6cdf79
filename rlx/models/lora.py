"""LoRA and QLoRA: low-rank adapters on a frozen (optionally quantized) base.

Paper: "LoRA: Low-Rank Adaptation of Large Language Models" (Hu et al. 2021): a frozen
weight W [in, out] is used as

    y = x W + (alpha / r) · (x A) B,      A [in, r], B [r, out],  B = 0 at init

so the adapted model equals the base at step 0. QLoRA ("QLoRA: Efficient Finetuning of
Quantized LLMs", Dettmers et al. 2023) stores the frozen W in 4-bit NormalFloat with
block-wise scales (block 64) and dequantizes it where it is used; gradients flow through
the dequantized W into the activations only, never into W.

Layout in rlx's param dict (`rlx.models.transformer`): the adapters of every target are
stacked on the layer axis like the base weights, under `params["layers"]["lora"]`:

    lora/<t>/a  [Ly, *in_t, r]      lora/<t>/b  [Ly, r, *out_t]

with (in, out) of each target t in `TARGETS`: q (D | H, Dh), k and v (D | N, Dh),
o (H, Dh | D), gate and up (D | F), down (F | D) — the base matrix of t is
[Ly, *in_t, *out_t]. A quantized target is a `qwix.QArray` in place of its base array
(`qwix.quantize`: NF4 with per-64 blocks along the last input axis, or int8 with one
scale per output channel (and per input head for o: `quantize`); scales in the compute
dtype, so a dequantized weight is in the compute dtype). Everything outside `lora` is
frozen and kept in the compute dtype (the forward casts every weight to it anyway, so
nothing is lost: no f32 master copy of a frozen weight is needed).

Initialization follows PEFT (the format rlx exports): A ~ U(-1/sqrt(in), 1/sqrt(in))
(torch's kaiming_uniform with a = sqrt(5)), B = 0; scaling alpha / r (PEFT's default,
not rsLoRA's alpha / sqrt(r)).

The trainable part of a LoRA policy is `trainable(params)` = the `lora` subtree; the
optimizer, gradients and checkpoints see only that (`rlx.train.update`); the reference
policy is `base_of(params)` — the same arrays without the adapters, never a copy.

Why not `qwix.apply_lora_to_model` (Tunix's route): qwix's LoRA provider intercepts
`dot_general` / `einsum` calls *inside Flax modules* and finds the weight operand among
the current module's registered params (`flax_util.find_param`), creating the adapter
params as module variables. rlx's model is pure functions over a plain dict whose layers
are stacked and run under `lax.scan` (the weight seen by the einsum is a scan slice, not
a module param), so there is nothing for the provider to intercept. The adapter math is
the two small einsums below; qwix does the part that is hard to get right — quantized
storage (`qwix.quantize`, its NF4 and int8 numerics, `qwix.QArray`). Dequantization is
`qwix.dequantize`, except that NF4's code lookup is redone elementwise so that a sharded
weight stays sharded (`dequantize`: bit-identical to qwix's, tested).

Sampling (`lora_sampler`): "adapters" (default) decodes with the base as stored (a
quantized base stays quantized, dequantized per layer and token) plus x·A·B per token —
the trainer's own arithmetic, no merged copy; "merge" folds s·A·B into the weights once
per sampling call (layer by layer, in float32, then the compute dtype) and decodes with
plain fused matmuls. Decision (measured, README "LoRA and QLoRA"): "adapters" is as fast
as "merge" on CPU (0.95–0.97 of its time, `benchmarks/lora.py`) and needs the same HBM in
the 7B v5e-8 plan (14.51 vs 14.35 GiB; NF4 14.25 vs 14.12), and it is the one that stays
exact in bfloat16: a merged W + s·A·B is rounded to bfloat16's 8-bit mantissa, which
drops every delta smaller than 2^-9 of its weight — early in training, most of them — so
a merged bf16 sampler would sample from a different policy than the trainer scores.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
QUANTS = ("none", "int8", "nf4")
SAMPLERS = ("adapters", "merge")
NF4_BLOCK = 64                      # QLoRA's block size
# PEFT / transformers module names of the targets (adapter_config.json "target_modules")
HF_MODULES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
              "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def validate(cfg) -> None:
    """ModelConfig's LoRA fields (called from `ModelConfig.__post_init__`)."""
    r = cfg.lora_rank
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise ValueError(f"ModelConfig.lora_rank: expected an int >= 0, got {r!r}")
    if cfg.lora_base_quant not in QUANTS:
        raise ValueError(f"ModelConfig.lora_base_quant: expected one of {QUANTS}, got {cfg.lora_base_quant!r}")
    if cfg.lora_sampler not in SAMPLERS:
        raise ValueError(f"ModelConfig.lora_sampler: expected one of {SAMPLERS}, got {cfg.lora_sampler!r}")
    if not r:
        if cfg.lora_base_quant != "none":
            raise ValueError("ModelConfig.lora_base_quant: a quantized frozen base needs adapters (lora_rank > 0)")
        return
    if not isinstance(cfg.lora_targets, tuple) or not cfg.lora_targets:
        raise ValueError("ModelConfig.lora_targets: a non-empty tuple of target names is needed with lora_rank > 0")
    bad = [t for t in cfg.lora_targets if t not in TARGETS]
    if bad or len(set(cfg.lora_targets)) != len(cfg.lora_targets):
        raise ValueError(f"ModelConfig.lora_targets: {bad or list(cfg.lora_targets)} — expected each of "
                         f"{TARGETS} at most once")
    if not (isinstance(cfg.lora_alpha, (int, float)) and cfg.lora_alpha > 0):
        raise ValueError(f"ModelConfig.lora_alpha: must be > 0, got {cfg.lora_alpha!r}")


def enabled(cfg) -> bool:
    return cfg.lora_rank > 0


def scale(cfg) -> float:
    return float(cfg.lora_alpha) / cfg.lora_rank


def base_config(cfg):
    """The ModelConfig of the base model alone (what SFT, the critic and exports use)."""
    return cfg.replace(lora_rank=0, lora_alpha=0.0, lora_targets=(), lora_base_quant="none")


def dims(cfg, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input dims, output dims) of target `name`'s base matrix (without the layer axis)."""
    D, F, H, N, Dh = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    return {"q": ((D,), (H, Dh)), "k": ((D,), (N, Dh)), "v": ((D,), (N, Dh)), "o": ((H, Dh), (D,)),
            "gate": ((D,), (F,)), "up": ((D,), (F,)), "down": ((F,), (D,))}[name]


_AXES_IN = {"q": ("embed",), "k": ("embed",), "v": ("embed",), "o": ("q_heads", "head_dim"),
            "gate": ("embed",), "up": ("embed",), "down": ("mlp",)}
_AXES_OUT = {"q": ("q_heads", "head_dim"), "k": ("kv_heads", "head_dim"), "v": ("kv_heads", "head_dim"),
             "o": ("embed",), "gate": ("mlp",), "up": ("mlp",), "down": ("embed",)}


def logical_axes(cfg) -> dict:
    """Logical axis names of the adapters (same structure as `init_adapters`)."""
    return {t: {"a": ("layers",) + _AXES_IN[t] + (None,), "b": ("layers", None) + _AXES_OUT[t]}
            for t in cfg.lora_targets}


def init_adapters(cfg, key: jax.Array) -> dict:
    """{target: {"a", "b"}} in `cfg.param_dtype`: A uniform in ±1/sqrt(fan_in), B zeros."""
    Ly, r = cfg.num_layers, cfg.lora_rank
    out = {}
    for t, k in zip(cfg.lora_targets, jax.random.split(key, len(cfg.lora_targets))):
        din, dout = dims(cfg, t)
        bound = 1.0 / math.sqrt(math.prod(din))
        out[t] = {"a": jax.random.uniform(k, (Ly, *din, r), jnp.float32, -bound, bound).astype(cfg.param_dtype),
                  "b": jnp.zeros((Ly, r, *dout), cfg.param_dtype)}
    return out


def quantize(w: jax.Array, n_in: int, kind: str, dtype):
    """A base matrix [Ly, *in, *out] (n_in input axes) as a qwix QArray: NF4 with blocks of
    64 along the last input axis (whole axis when 64 does not divide it), or int8 with a
    scale per (layer, output channel, input head); scales in `dtype`."""
    import qwix
    last_in = n_in                                  # axis index of the last input axis (axis 0: layers)
    channelwise = tuple(i for i in range(w.ndim) if i != last_in)
    if kind == "nf4":
        size = w.shape[last_in]
        tiles = {last_in: NF4_BLOCK if size % NF4_BLOCK == 0 else size}
        return qwix.quantize(w, "nf4", channelwise_axes=channelwise, tiled_axes=tiles, scale_dtype=dtype)
    if kind == "int8":
        return qwix.quantize(w, jnp.int8, channelwise_axes=channelwise, scale_dtype=dtype)
    raise ValueError(f"lora.quantize: unknown base quantization {kind!r} (expected one of {QUANTS[1:]})")


def is_quantized(w) -> bool:
    import qwix
    return isinstance(w, qwix.QArray)


def attach(params: dict, cfg, key: jax.Array) -> dict:
    """A LoRA policy from base params: the base frozen in the compute dtype (targets
    quantized when `lora_base_quant` is set) plus fresh adapters (B = 0: the policy
    equals the base)."""
    if not enabled(cfg):
        return params
    if has_adapters(params):
        raise ValueError("lora.attach: params already carry adapters")
    base = jax.tree.map(lambda x: x.astype(cfg.dtype), params)
    layers = dict(base["layers"])
    if cfg.lora_base_quant != "none":
        for t in TARGETS:          # QLoRA quantizes every linear layer of the base, adapted or not
            layers[t] = quantize(params["layers"][t], len(dims(cfg, t)[0]), cfg.lora_base_quant, cfg.dtype)
    layers["lora"] = init_adapters(cfg, key)
    return {**base, "layers": layers}


def has_adapters(params) -> bool:
    layers = params.get("layers") if isinstance(params, dict) else None
    return isinstance(layers, dict) and "lora" in layers


def trainable(params):
    """What the optimizer updates: the adapters of a LoRA policy, else all params."""
    return params["layers"]["lora"] if has_adapters(params) else params


def combine(params, new_trainable):
    """`params` with its trainable part replaced (the inverse of `trainable`)."""
    if not has_adapters(params):
        return new_trainable
    return {**params, "layers": {**params["layers"], "lora": new_trainable}}


def base_of(params):
    """The base model's params: the adapters switched off (the same arrays, no copy)."""
    if not has_adapters(params):
        return params
    return {**params, "layers": {k: v for k, v in params["layers"].items() if k != "lora"}}


def _nf4_codes(dtype) -> jax.Array:
    """The 16 NF4 code values, in `dtype`, read off qwix: `qwix.dequantize` of the codes
    0..15 with a unit scale."""
    import qwix
    return qwix.dequantize(qwix.QArray(qvalue=jnp.arange(16, dtype=jnp.uint4), scale=jnp.ones((1,), dtype),
                                       qtype="nf4"))


def dequantize(w) -> jax.Array:
    """`qwix.dequantize(w)`, bit for bit, without losing the array's sharding.

    qwix decodes NF4 by a vmapped table lookup over `qvalue.ravel()`; flattening an array
    sharded on a minor axis (FSDP shards the embed axis, the last one of o / down) cannot
    keep the sharding, so XLA gathers every matrix whole (a 7B NF4 sampler needed 19 GiB per
    v5e chip). Here the lookup is an elementwise `take` on the codes (`_nf4_codes`, from
    qwix) and the block scales are repeated along their tiled axes: the same values, in
    the scale's dtype as qwix computes them, and every op keeps the sharding."""
    import qwix
    if w.qtype != "nf4" or w.zero_point is not None:
        return qwix.dequantize(w)
    v = jnp.take(_nf4_codes(w.scale.dtype), w.qvalue.astype(jnp.int32))
    sc = w.scale
    for ax, (n, m) in enumerate(zip(v.shape, sc.shape)):
        if n != m:
            sc = jnp.repeat(sc, n // m, axis=ax)
    return v * sc


def weight(lp: dict, name: str, dtype) -> jax.Array:
    """Layer weight `name` in `dtype` (dequantized when stored quantized)."""
    w = lp[name]
    if is_quantized(w):
        w = dequantize(w)
    return w.astype(dtype)


def delta(cfg, lp: dict, name: str, x: jax.Array):
    """s · (x A) B for target `name` of one layer's params `lp`, or None without an
    adapter. x [B, L, *in] -> [B, L, *out] in x's dtype."""
    ad = lp.get("lora", {}).get(name) if isinstance(lp.get("lora"), dict) else None
    if ad is None:
        return None
    from rlx.models import matmul as mm
    din, dout = dims(cfg, name)
    B, L = x.shape[:2]
    a = ad["a"].astype(x.dtype).reshape(math.prod(din), cfg.lora_rank)
    b = ad["b"].astype(x.dtype).reshape(cfg.lora_rank, math.prod(dout))
    xa = mm.einsum("blp,pr->blr", x.reshape(B, L, -1), a)
    return (mm.einsum("blr,ro->blo", xa, b) * jnp.asarray(scale(cfg), x.dtype)).reshape(B, L, *dout)


def merged_layers(layers: dict, cfg, dtype=None) -> dict:
    """`params["layers"]` (stacked [Ly, ...] or one layer's slice) with every adapter folded
    in, W + s·A·B (computed in float32), and every quantized matrix dequantized, in `dtype`
    (default: each leaf's own dtype; the compute dtype for dequantized ones)."""
    layers = dict(layers)
    adapters = layers.pop("lora", {})
    s = scale(cfg) if adapters else 0.0
    for name in list(layers):
        w = layers[name]
        out_dt = dtype or (cfg.dtype if is_quantized(w) else w.dtype)
        if name not in adapters and not is_quantized(w):
            layers[name] = w.astype(out_dt)
            continue
        w = weight(layers, name, jnp.float32)
        if name in adapters:
            lead = w.shape[:w.ndim - len(sum(dims(cfg, name), ()))]          # (Ly,) when stacked, else ()
            a = adapters[name]["a"].astype(jnp.float32).reshape(*lead, -1, cfg.lora_rank)
            b = adapters[name]["b"].astype(jnp.float32).reshape(*lead, cfg.lora_rank, -1)
            w = w + s * jnp.einsum("...pr,...ro->...po", a, b).reshape(w.shape)
        layers[name] = w.astype(out_dt)
    return layers


def merged(params: dict, cfg, dtype=None) -> dict:
    """Base-structured params with every adapter folded in and every quantized matrix
    dequantized (`merged_layers`), in `dtype`. What merged exports use."""
    if not has_adapters(params) and not any(is_quantized(w) for w in params["layers"].values()):
        return params if dtype is None else jax.tree.map(lambda x: x.astype(dtype), params)
    rest = {k: (v if dtype is None else v.astype(dtype)) for k, v in params.items() if k != "layers"}
    return {**rest, "layers": merged_layers(params["layers"], cfg, dtype)}


def count(tree) -> tuple[int, int]:
    """(number of values, bytes) of a pytree of arrays / ShapeDtypeStructs."""
    leaves = jax.tree.leaves(tree)
    return (sum(math.prod(x.shape) for x in leaves),
            sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in leaves))
