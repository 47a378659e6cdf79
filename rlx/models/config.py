"""Model configuration: one frozen, hashable dataclass for the Llama-3 / Qwen2 / Qwen3 family.

The families differ in three switches: `qkv_bias` (Qwen2/2.5: biases on q, k, v),
`qk_norm` (Qwen3: RMSNorm over head_dim on q and k before RoPE) and `rope_scaling`
(Llama-3.1+: "llama3" frequency scaling). `ModelConfig.from_hf_dict` reads a
`config.json` of any of them (old `rope_theta`/`rope_scaling` keys or transformers 5's
`rope_parameters`); `to_hf_dict` writes one `transformers` loads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

_DTYPE_NAMES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
REMAT_POLICIES = ("none", "full", "dots_saveable")
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def _dtype_name(d) -> str:
    for k, v in _DTYPE_NAMES.items():
        if jnp.dtype(d) == jnp.dtype(v):
            return k
    raise ValueError(f"unsupported dtype {d!r}; expected one of {sorted(_DTYPE_NAMES)}")

ATTENTION_IMPLS = ("auto", "xla", "cudnn", "splash")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and numerics of a decoder-only transformer.

    rope_scaling: None or a tuple of (key, value) pairs, e.g. (("factor", 8.0),
      ("high_freq_factor", 4.0), ("low_freq_factor", 1.0),
      ("original_max_position_embeddings", 8192), ("rope_type", "llama3")) — a tuple so
      the config stays hashable (it is a static argument of jitted functions).
    dtype: compute dtype of activations and the KV cache; param_dtype: of the weights.
      Logits, softmax, norms' statistics and log-probs are always float32.
    remat: what the backward pass recomputes of each layer (`jax.checkpoint` policies,
      `REMAT_POLICIES`): "none" (keep every activation: fastest, most memory), "full"
      (save only the layer's input: least memory, one extra forward), "dots_saveable"
      (save the matmul outputs, recompute the elementwise work between them). A bool is
      accepted for "full" / "none".
    unroll_layers: unroll the `lax.scan` over layers. The rolled scan (default) compiles
      one layer whatever the depth — what large models on accelerators want. On XLA:CPU
      the loop costs the backward pass ~20% (the stacked residuals are read and written
      through dynamic slices and nothing fuses across layers: 1.13 s vs 0.90 s fwd+bwd
      for `benchmarks/rl_step.py`'s 4-layer model), so the CPU-scale configs unroll.
    lora_rank, lora_alpha, lora_targets, lora_base_quant, lora_sampler: LoRA / QLoRA
      adapters on a frozen base (`rlx.models.lora`; rank 0 = none). Targets are names of
      `lora.TARGETS`; the deltas are scaled by alpha / rank; `lora_base_quant` ("none",
      "int8", "nf4") stores the frozen target matrices quantized (qwix); `lora_sampler`
      ("adapters", the default, or "merge") says how the decoder applies the adapters.
    attention: the attention kernels (`ATTENTION_IMPLS`; `rlx.models.attention`): "xla"
      (the reference einsum with an explicit mask; every backend), "cudnn" (GPU flash
      attention through `jax.nn.dot_product_attention`), "splash" (TPU: Pallas splash
      attention for training / prefill and the Pallas paged-attention kernel for paged
      decode), or "auto" (the default: splash on TPU, cudnn on GPU, xla on CPU). Layouts
      no kernel mask expresses (shared-prefix, tree) always use "xla".
    """
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: tuple | None = None
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    max_position_embeddings: int = 4096
    family: str = "qwen2"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: str = "none"
    unroll_layers: bool = False
    lora_rank: int = 0
    lora_alpha: float = 0.0
    lora_targets: tuple = ()
    lora_base_quant: str = "none"
    lora_sampler: str = "adapters"
    attention: str = "auto"

    def __post_init__(self):
        for f in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                  "num_kv_heads", "head_dim", "max_position_embeddings"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ModelConfig.{f}: expected a positive int, got {v!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"ModelConfig.num_kv_heads: {self.num_kv_heads} does not divide "
                             f"num_heads={self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig.head_dim: RoPE needs an even head_dim, got {self.head_dim}")
        if self.family not in ARCHITECTURES:
            raise ValueError(f"ModelConfig.family: expected one of {sorted(ARCHITECTURES)}, got {self.family!r}")
        if not self.rms_norm_eps > 0:
            raise ValueError(f"ModelConfig.rms_norm_eps: must be > 0, got {self.rms_norm_eps!r}")
        if self.rope_scaling is not None:
            rs = dict(self.rope_scaling)
            if rs.get("rope_type") != "llama3":
                raise ValueError(f"ModelConfig.rope_scaling: only rope_type 'llama3' is supported, got {rs!r}")
            for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
                if k not in rs:
                    raise ValueError(f"ModelConfig.rope_scaling: missing {k!r}")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 0):
            raise ValueError(f"ModelConfig.rope_theta: must be > 0, got {self.rope_theta!r}")
        for f in ("dtype", "param_dtype"):
            try:
                _dtype_name(getattr(self, f))
            except (ValueError, TypeError) as e:
                raise ValueError(f"ModelConfig.{f}: {e}") from None
        if isinstance(self.remat, bool):
            object.__setattr__(self, "remat", "full" if self.remat else "none")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"ModelConfig.remat: expected one of {REMAT_POLICIES}, got {self.remat!r}")
        for f in ("tie_embeddings", "qkv_bias", "qk_norm", "unroll_layers"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"ModelConfig.{f}: expected a bool, got {getattr(self, f)!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"ModelConfig.attention: expected one of {ATTENTION_IMPLS}, got {self.attention!r}")
        from rlx.models.lora import validate
        validate(self)

    def replace(self, **kw) -> ModelConfig:
        return dataclasses.replace(self, **kw)

    @property
    def num_params(self) -> int:
        D, F, V, L = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        H, N, Dh = self.num_heads, self.num_kv_heads, self.head_dim
        per_layer = D * (H + 2 * N) * Dh + H * Dh * D + 3 * D * F + 2 * D
        per_layer += (H + 2 * N) * Dh if self.qkv_bias else 0
        per_layer += 2 * Dh if self.qk_norm else 0
        return L * per_layer + V * D * (1 if self.tie_embeddings else 2) + D

    # ------------------------------------------------------------------ HF config.json
    @classmethod
    def from_hf_dict(cls, d: dict) -> ModelConfig:
        family = d.get("model_type", "llama")
        if family not in ARCHITECTURES:
            raise ValueError(f"config.json: model_type {family!r} is not supported "
                             f"(supported: {sorted(ARCHITECTURES)})")
        rope = dict(d.get("rope_parameters") or {})
        theta = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
        scaling = d.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        if scaling:
            scaling = dict(scaling)
            scaling.setdefault("rope_type", scaling.pop("type", None))
            if scaling["rope_type"] in (None, "default"):
                scaling = None
            else:
                scaling.pop("rope_theta", None)
                scaling = tuple(sorted(scaling.items()))
        H = int(d["num_attention_heads"])
        head_dim = d.get("head_dim") or int(d["hidden_size"]) // H
        if family == "qwen2":
            bias = True
        else:
            bias = bool(d.get("attention_bias", False))
        if d.get("use_sliding_window"):
            raise ValueError("config.json: sliding-window attention is not supported")
        if d.get("mlp_bias"):
            raise ValueError("config.json: mlp_bias is not supported")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"config.json: hidden_act {d.get('hidden_act')!r} is not supported (silu only)")
        return cls(
            vocab_size=int(d["vocab_size"]), hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]), num_layers=int(d["num_hidden_layers"]),
            num_heads=H, num_kv_heads=int(d.get("num_key_value_heads") or H), head_dim=int(head_dim),
            rope_theta=theta, rope_scaling=scaling, rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(d.get("tie_word_embeddings", False)), qkv_bias=bias,
            qk_norm=family == "qwen3", max_position_embeddings=int(d.get("max_position_embeddings", 4096)),
            family=family)

    def to_hf_dict(self) -> dict:
        d = {
            "architectures": [ARCHITECTURES[self.family]], "model_type": self.family,
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim, "rope_theta": self.rope_theta, "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_embeddings, "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu", "torch_dtype": _dtype_name(self.param_dtype),
        }
        if self.family != "qwen2":
            d["attention_bias"] = self.qkv_bias
        if self.family != "llama":
            d["use_sliding_window"] = False
        if self.rope_scaling is not None:
            d["rope_scaling"] = dict(self.rope_scaling)
        return d


def tiny(vocab_size: int, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
         num_kv_heads: int = 2, intermediate_size: int = 128, head_dim: int | None = None,
         family: str = "qwen2", **kw) -> ModelConfig:
    """A small random-init model for tests and the CPU demo (Qwen2 layout by default)."""
    return ModelConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                       num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
                       head_dim=head_dim or hidden_size // num_heads, family=family,
                       qkv_bias=kw.pop("qkv_bias", family == "qwen2"), qk_norm=kw.pop("qk_norm", family == "qwen3"),
                       tie_embeddings=kw.pop("tie_embeddings", True), **kw)
