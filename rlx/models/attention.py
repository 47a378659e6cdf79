"""Causal self-attention of padded rows through the backend's kernel (`ModelConfig.attention`).

    attention = causal(cfg, mask_BL)      # an `Attention`: (q, k, v) -> out, [B, L, H|N, Dh]

rlx's rows are [left padding | prompt | completion | right padding]: the real tokens
(`mask`) must see the real tokens at or before them, nothing else; RoPE positions are
passed separately, so what the kernel must express is "causal among real tokens".

  "xla"     `transformer.attend` with the explicit [B, L, L] mask: the reference, every
            backend (float32 scores).
  "cudnn"   GPU flash attention, `jax.nn.dot_product_attention(implementation="cudnn")`.
            cuDNN masks by lengths only (right padding), so each row's real tokens are
            first packed to the front in order (a stable argsort of the mask: any
            padding pattern, holes included), attended with `is_causal` and
            `query/key_value_seq_lengths` = real-token count, and moved back; padding rows
            return 0.
  "splash"  TPU Pallas splash attention (`jax.experimental.pallas.ops.tpu.
            splash_attention`), one MQA kernel per KV head (GQA) with a causal mask and
            segment ids (1 real, 0 padding: padding attends padding, never a real token,
            so no row is empty); rows are padded to a multiple of the 128-token block
            (padding: segment 0).
            q is pre-scaled by 1/sqrt(Dh) (the kernel applies no scale). Under an active
            mesh (`rlx.parallel.use_rules`) it runs in `shard_map` over batch and KV
            heads. Off TPU it runs in Pallas interpret mode (slow; tests).
  "auto"    splash on TPU, cudnn on GPU, xla elsewhere (`platform()`).

Layouts whose mask is not causal-among-real-tokens (the shared-prefix / Prefix Grouper
and tree forwards of `rlx.models.shared_prefix`) keep the XLA path on every backend.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp

from rlx.models.config import ModelConfig
from rlx.models.transformer import Attention, causal_mask, masked_attention

_PLATFORM: list[str] = []


@contextlib.contextmanager
def target_platform(name: str):
    """Resolve "auto" (and interpret mode) for `name` ("tpu", "gpu", "cpu") instead of the
    default backend: ahead-of-time compilation for a TPU from a CPU host (`rlx.plan`)."""
    _PLATFORM.append(name)
    try:
        yield
    finally:
        _PLATFORM.pop()


def platform() -> str:
    """The platform programs are traced for: `target_platform`'s, else the default backend."""
    return _PLATFORM[-1] if _PLATFORM else jax.default_backend()


def resolve(cfg: ModelConfig) -> str:
    """`cfg.attention` with "auto" resolved for `platform()`."""
    if cfg.attention != "auto":
        return cfg.attention
    return {"tpu": "splash", "gpu": "cudnn", "cuda": "cudnn"}.get(platform(), "xla")


def causal(cfg: ModelConfig, mask_BL) -> Attention:
    """The attention of a forward over padded rows (`mask` True on real tokens)."""
    impl = resolve(cfg)
    mask_BL = mask_BL.astype(bool)
    if impl == "xla":
        return masked_attention(causal_mask(mask_BL))
    if impl == "cudnn":
        return lambda q, k, v: packed_attention(q, k, v, mask_BL, implementation="cudnn")
    return lambda q, k, v: splash_attention(q, k, v, mask_BL)


# ------------------------------------------------------------------------------ cudnn


def packed_attention(q, k, v, mask_BL, *, implementation: str | None = "cudnn"):
    """Real tokens packed to the front, `jax.nn.dot_product_attention` with causal +
    length masking, unpacked. `implementation` None / "xla" runs the same program through
    XLA (how the packing is tested on CPU)."""
    perm = jnp.argsort(~mask_BL, axis=1, stable=True)                       # real tokens first, in order
    inv = jnp.argsort(perm, axis=1)
    n = jnp.sum(mask_BL, axis=1, dtype=jnp.int32)

    def take(x, idx):
        return jnp.take_along_axis(x, idx[:, :, None, None], axis=1)

    out = jax.nn.dot_product_attention(take(q, perm), take(k, perm), take(v, perm), is_causal=True,
                                       query_seq_lengths=n, key_value_seq_lengths=n,
                                       implementation=None if implementation == "xla" else implementation)
    return jnp.where(mask_BL[:, :, None, None], take(out, inv), 0).astype(q.dtype)


# ------------------------------------------------------------------------------ splash

BLOCK = 128


@functools.lru_cache(maxsize=32)
def _splash_kernel(L: int, g: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    mask = sm.MultiHeadMask([sm.CausalMask((L, L)) for _ in range(g)])
    b = BLOCK
    sizes = sk.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
                          block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
    # Built eagerly even when first asked for inside a trace: the kernel holds its mask's
    # block tables as arrays, and a cached kernel made of one trace's tracers fails every
    # later trace that uses it (UnexpectedTracerError on the second program with splash).
    with jax.ensure_compile_time_eval():
        return sk.make_splash_mqa_single_device(mask, block_sizes=sizes, interpret=interpret)


def _splash_local(q, k, v, seg_BL):
    """q [B, L, H, Dh], k/v [B, L, N, Dh], segment ids [B, L] (L a multiple of the block)."""
    from jax.experimental.pallas.ops.tpu.splash_attention.splash_attention_kernel import SegmentIds

    B, L, H, Dh = q.shape
    N = k.shape[2]
    g = H // N
    kernel = _splash_kernel(L, g, platform() != "tpu")
    qh = (q.astype(jnp.float32) / math.sqrt(Dh)).astype(q.dtype)
    qh = qh.reshape(B, L, N, g, Dh).transpose(0, 2, 3, 1, 4)                  # [B, N, g, L, Dh]
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)                 # [B, N, L, Dh]

    def one(q_gLD, k_LD, v_LD, seg_L):
        return kernel(q_gLD, k_LD, v_LD, segment_ids=SegmentIds(q=seg_L, kv=seg_L))

    per_head = jax.vmap(one, in_axes=(0, 0, 0, None))                          # over KV heads
    out = jax.vmap(per_head)(qh, kh, vh, seg_BL)                               # [B, N, g, L, Dh]
    return out.transpose(0, 3, 1, 2, 4).reshape(B, L, H, Dh).astype(q.dtype)


def splash_attention(q, k, v, mask_BL):
    """Causal attention among each row's real tokens through the splash kernel."""
    from rlx.parallel import rules

    B, L = mask_BL.shape
    Lb = -(-L // BLOCK) * BLOCK
    seg = mask_BL.astype(jnp.int32)
    if Lb != L:
        pad = ((0, 0), (0, Lb - L), (0, 0), (0, 0))
        q, k, v = jnp.pad(q, pad), jnp.pad(k, pad), jnp.pad(v, pad)
        seg = jnp.pad(seg, ((0, 0), (0, Lb - L)))
    fn = _splash_local
    active = rules.active()
    if active is not None:
        mesh, table = active
        spec_q = rules.logical_to_spec(("batch", None, "act_kv_heads", None), (B, Lb, k.shape[2], q.shape[3]),
                                       mesh, table)
        spec_s = jax.sharding.PartitionSpec(spec_q[0] if len(spec_q) else None)
        fn = jax.shard_map(_splash_local, mesh=mesh, in_specs=(spec_q, spec_q, spec_q, spec_s), out_specs=spec_q,
                           check_vma=False)
    out = fn(q, k, v, seg)
    return out[:, :L]

