"""Building the pieces of a run from its config: tokenizer, model, params, sampler config."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from rlx import models, sampling

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def build_tokenizer(c, run_dir: str):
    """The run's tokenizer: `model.tokenizer_path`, else the HF model's, else rlx's
    built-in tokenizer (built once into run_dir/tokenizer)."""
    path = c.model.tokenizer_path or (c.model.hf_path if c.model.source == "hf" else "")
    if path:
        return models.load_tokenizer(path)
    return models.build_tokenizer(os.path.join(run_dir, "tokenizer"))


def build_model(c, tokenizer, key: jax.Array):
    """(model_cfg, params) from `c.model`: a random tiny model or a local HF checkpoint."""
    m = c.model
    dtype, param_dtype = _DTYPES[m.dtype], _DTYPES[m.param_dtype]
    if m.source == "hf":
        params, cfg = models.from_hf(m.hf_path)
        cfg = cfg.replace(dtype=dtype, param_dtype=param_dtype, remat=bool(m.remat),
                          unroll_layers=bool(m.unroll_layers))
        params = jax.tree.map(lambda x: x.astype(param_dtype), params)
        if len(tokenizer) > cfg.vocab_size:
            raise ValueError(f"config.model.tokenizer_path: tokenizer has {len(tokenizer)} tokens but the "
                             f"model's vocabulary is {cfg.vocab_size}")
        return cfg, params
    cfg = models.tiny(vocab_size=len(tokenizer), hidden_size=m.hidden_size, num_layers=m.num_layers,
                      num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
                      intermediate_size=m.intermediate_size, dtype=dtype, param_dtype=param_dtype,
                      remat=bool(m.remat), unroll_layers=bool(m.unroll_layers), max_position_embeddings=max(
                          512, c.sampler.max_prompt_len + c.sampler.max_new_tokens))
    return cfg, models.init_params(cfg, key)


def build_sampler_config(c, tokenizer, *, greedy: bool = False) -> sampling.SamplerConfig:
    s = c.sampler
    stop = tuple(sorted({int(tokenizer.eos_token_id)})) if tokenizer.eos_token_id is not None else ()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    return sampling.SamplerConfig(
        max_prompt_len=int(s.max_prompt_len), max_new_tokens=int(s.max_new_tokens),
        temperature=0.0 if greedy else float(s.temperature), top_k=0 if greedy else int(s.top_k),
        top_p=1.0 if greedy else float(s.top_p), stop_ids=stop, pad_id=int(pad))
