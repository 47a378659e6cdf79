"""LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors`.

What `peft.PeftModel.from_pretrained(base_model, path)` loads (PEFT's LoRA layout, read
from its `LoraModel` / `save_pretrained`): per adapted linear layer of the HF model,

    base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight   [r, in_features]
    base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight   [out_features, r]

with y = x W^T + (lora_alpha / r) · x A^T B^T. rlx's adapters (`rlx.models.lora`) are
A [in dims..., r] and B [r, out dims...] per layer, with HF's flattening of heads
(q: [D | H·Dh], o: [H·Dh | D]), so A^T and B^T reshaped are PEFT's matrices.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.flax import save_file

from rlx.models import lora

_KEY = "base_model.model.model.layers.{i}.{module}.lora_{ab}.weight"


def peft_tensors(adapters: dict, cfg) -> dict[str, np.ndarray]:
    """PEFT tensor name -> array of rlx adapters {target: {"a": [Ly, *in, r], "b": [Ly, r, *out]}}."""
    out = {}
    for t, ad in jax.device_get(adapters).items():
        a, b = np.asarray(ad["a"]), np.asarray(ad["b"])
        for i in range(cfg.num_layers):
            module = lora.HF_MODULES[t]
            out[_KEY.format(i=i, module=module, ab="A")] = np.ascontiguousarray(
                a[i].reshape(-1, cfg.lora_rank).T)
            out[_KEY.format(i=i, module=module, ab="B")] = np.ascontiguousarray(
                b[i].reshape(cfg.lora_rank, -1).T)
    return out


def adapter_config(cfg, base_model_name_or_path: str) -> dict:
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": cfg.lora_rank,
            "lora_alpha": float(cfg.lora_alpha), "lora_dropout": 0.0, "bias": "none",
            "target_modules": sorted(lora.HF_MODULES[t].split(".")[-1] for t in cfg.lora_targets),
            "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "init_lora_weights": True,
            "modules_to_save": None, "inference_mode": True, "base_model_name_or_path": base_model_name_or_path}


def to_peft(adapters: dict, cfg, path: str, *, base_model_name_or_path: str, dtype=None) -> None:
    """Writes a PEFT adapter directory (adapters in `dtype`, default their own)."""
    os.makedirs(path, exist_ok=True)
    tensors = {k: jnp.asarray(v) if dtype is None else jnp.asarray(v).astype(dtype)
               for k, v in peft_tensors(adapters, cfg).items()}
    save_file(tensors, os.path.join(path, "adapter_model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(adapter_config(cfg, base_model_name_or_path), f, indent=1)
