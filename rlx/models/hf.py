"""HF interop: read and write `config.json` + `*.safetensors` (no torch involved).

`from_hf(path)` accepts a single `model.safetensors` or a sharded checkpoint with
`model.safetensors.index.json`; `to_hf(params, cfg, path)` writes one file (sharded
when larger than `max_shard_bytes`) plus config.json, loadable by
`transformers.AutoModelForCausalLM.from_pretrained(path)`.

HF linear weights are [out, in]; rlx stores [in, out] with heads split:
  q_proj.weight [H*Dh, D]  <->  q [D, H, Dh]      o_proj.weight [D, H*Dh] <-> o [H, Dh, D]
  gate/up_proj.weight [F, D] <-> [D, F]           down_proj.weight [D, F] <-> [F, D]
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.flax import save_file

from rlx.models.config import ModelConfig

_P = "model.layers.{i}."
_LAYER_KEYS = {  # rlx name -> HF suffix
    "attn_norm": "input_layernorm.weight", "mlp_norm": "post_attention_layernorm.weight",
    "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight",
    "o": "self_attn.o_proj.weight", "q_bias": "self_attn.q_proj.bias", "k_bias": "self_attn.k_proj.bias",
    "v_bias": "self_attn.v_proj.bias", "q_norm": "self_attn.q_norm.weight", "k_norm": "self_attn.k_norm.weight",
    "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight",
}


def _files(path: str) -> list[str]:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, n) for n in names]
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return [single]
    found = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    if not found:
        raise FileNotFoundError(f"{path}: no model.safetensors or *.safetensors files")
    return [os.path.join(path, n) for n in found]


def _to_rlx(name: str, w: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    H, N, Dh, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.hidden_size
    if name == "q":
        return w.T.reshape(D, H, Dh)
    if name in ("k", "v"):
        return w.T.reshape(D, N, Dh)
    if name == "o":
        return w.T.reshape(H, Dh, D)
    if name in ("gate", "up", "down"):
        return w.T
    if name == "q_bias":
        return w.reshape(H, Dh)
    if name in ("k_bias", "v_bias"):
        return w.reshape(N, Dh)
    return w


def _to_hf(name: str, w: np.ndarray) -> np.ndarray:
    if name in ("q", "k", "v"):
        return w.reshape(w.shape[0], -1).T
    if name == "o":
        return w.reshape(-1, w.shape[-1]).T
    if name in ("gate", "up", "down"):
        return w.T
    if name in ("q_bias", "k_bias", "v_bias"):
        return w.reshape(-1)
    return w


def read_hf_config(path: str) -> ModelConfig:
    """The ModelConfig of a local HF directory from its `config.json` alone (no weights
    are read: what planning needs)."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(f"{path}: no config.json (expected a local HF model directory)")
    with open(cfg_path) as f:
        return ModelConfig.from_hf_dict(json.load(f))


def from_hf(path: str, *, dtype=None) -> tuple[dict, ModelConfig]:
    """(params, ModelConfig) from a local HF directory; weights keep their stored dtype
    unless `dtype` is given (the config's param_dtype follows)."""
    cfg = read_hf_config(path)
    tensors = {}
    for fn in _files(path):
        with safe_open(fn, framework="flax") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    stored = tensors["model.embed_tokens.weight"].dtype
    dt = jnp.dtype(dtype) if dtype is not None else jnp.dtype(stored)
    cfg = cfg.replace(param_dtype=dt, dtype=dt)

    def take(key):
        if key not in tensors:
            raise KeyError(f"{path}: missing weight {key!r}")
        return np.asarray(tensors.pop(key).astype(jnp.float32))

    layers = {}
    names = ["attn_norm", "mlp_norm", "q", "k", "v", "o", "gate", "up", "down"]
    names += ["q_bias", "k_bias", "v_bias"] if cfg.qkv_bias else []
    names += ["q_norm", "k_norm"] if cfg.qk_norm else []
    for n in names:
        layers[n] = jnp.asarray(np.stack([_to_rlx(n, take(_P.format(i=i) + _LAYER_KEYS[n]), cfg)
                                          for i in range(cfg.num_layers)]), dt)
    params = {"embed": jnp.asarray(take("model.embed_tokens.weight"), dt), "layers": layers,
              "final_norm": jnp.asarray(take("model.norm.weight"), dt)}
    if "lm_head.weight" in tensors and not cfg.tie_embeddings:
        params["lm_head"] = jnp.asarray(take("lm_head.weight").T, dt)
    elif not cfg.tie_embeddings:
        raise KeyError(f"{path}: missing weight 'lm_head.weight' (tie_word_embeddings is false)")
    tensors.pop("lm_head.weight", None)
    extra = [k for k in tensors if "rotary_emb" not in k]
    if extra:
        raise ValueError(f"{path}: unexpected weights {extra[:5]} (is this a {cfg.family} model?)")
    return params, cfg


def to_hf(params: dict, cfg: ModelConfig, path: str, *, max_shard_bytes: int = 2 << 30,
          extra_config: dict | None = None) -> None:
    """Writes config.json (plus `extra_config` keys, e.g. the tokenizer's special ids) and
    safetensors in `cfg.param_dtype` (sharded with an index when large); files are
    world-readable (0644)."""
    os.makedirs(path, exist_ok=True)
    params = jax.device_get(params)
    dt = jnp.dtype(cfg.param_dtype)
    out = {"model.embed_tokens.weight": params["embed"], "model.norm.weight": params["final_norm"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = np.asarray(params["lm_head"]).T
    for n, w in params["layers"].items():
        for i in range(cfg.num_layers):
            out[_P.format(i=i) + _LAYER_KEYS[n]] = _to_hf(n, np.asarray(w[i]))
    out = {k: jnp.asarray(np.ascontiguousarray(v)).astype(dt) for k, v in out.items()}
    shards, cur, size = [], {}, 0
    for k in sorted(out):
        nbytes = out[k].size * out[k].dtype.itemsize
        if cur and size + nbytes > max_shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = out[k]
        size += nbytes
    shards.append(cur)
    for old in os.listdir(path):
        if old.endswith(".safetensors") or old == "model.safetensors.index.json":
            os.remove(os.path.join(path, old))
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for j, sh in enumerate(shards):
            name = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(sh, os.path.join(path, name), metadata={"format": "pt"})
            weight_map.update({k: name for k in sh})
        total = sum(v.size * v.dtype.itemsize for v in out.values())
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": int(total)}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({**cfg.to_hf_dict(), **(extra_config or {})}, f, indent=1)
    for name in os.listdir(path):
        if name.endswith((".safetensors", ".json")):
            os.chmod(os.path.join(path, name), 0o644)
