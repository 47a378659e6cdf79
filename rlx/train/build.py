"""Building the pieces of a run from its config: tokenizer, model, params, sampler config.

`model_config(c, ...)` describes the model from the config alone — the architecture
fields of `config.model`, or the `config.json` of `model.hf_path` — so a run can be
planned (`python -m rlx.plan`) without weights. Dtypes: `model.dtype = "auto"` is
bfloat16 compute (activations, KV cache) on TPU and GPU and float32 on CPU (so CPU
tests stay exact); master weights are `model.param_dtype` (float32 by default); an
explicit setting always wins. Log-probs are float32 whatever the compute dtype.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from rlx import models, sampling
from rlx.train.config import ConfigError, policy_temperature

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Architecture fields of `config.model` and the ModelConfig field each one sets.
ARCH_FIELDS = {"hidden_size": "hidden_size", "num_layers": "num_layers", "num_heads": "num_heads",
               "num_kv_heads": "num_kv_heads", "intermediate_size": "intermediate_size",
               "vocab_size": "vocab_size", "head_dim": "head_dim", "family": "family",
               "rope_theta": "rope_theta", "rms_norm_eps": "rms_norm_eps",
               "tie_embeddings": "tie_embeddings", "max_position_embeddings": "max_position_embeddings"}


def resolve_dtype(name: str, platform: str | None = None):
    """The compute dtype for `model.dtype` on `platform` (default: JAX's default backend)."""
    if name == "auto":
        platform = platform or jax.default_backend()
        return jnp.float32 if platform == "cpu" else jnp.bfloat16
    return _DTYPES[name]


def _numerics(c, cfg: models.ModelConfig, platform: str | None) -> models.ModelConfig:
    m = c.model
    from rlx.train.config import lora_targets
    lo = m.lora
    return cfg.replace(dtype=resolve_dtype(m.dtype, platform), param_dtype=_DTYPES[m.param_dtype],
                       remat=m.remat, unroll_layers=bool(m.unroll_layers),
                       lora_rank=int(lo.rank), lora_alpha=float(lo.alpha) if lo.rank else 0.0,
                       lora_targets=lora_targets(lo.targets) if lo.rank else (),
                       lora_base_quant=lo.base_quant, lora_sampler=lo.sampler, attention=m.attention)


def _from_fields(c, vocab_size: int) -> models.ModelConfig:
    m = c.model
    need = c.sampler.max_prompt_len + c.sampler.max_new_tokens
    if c.env.name:                 # multi-turn episodes: the whole history plus a turn
        need = max(need, c.env.max_prompt_tokens + c.env.max_total_tokens + c.env.max_turn_tokens)
    max_pos = m.max_position_embeddings or max(512, need)
    return models.tiny(vocab_size=vocab_size, hidden_size=m.hidden_size, num_layers=m.num_layers,
                       num_heads=m.num_heads, num_kv_heads=m.num_kv_heads, intermediate_size=m.intermediate_size,
                       head_dim=m.head_dim or None, family=m.family, rope_theta=float(m.rope_theta),
                       rms_norm_eps=float(m.rms_norm_eps), tie_embeddings=bool(m.tie_embeddings),
                       max_position_embeddings=max_pos)


def hf_path(c) -> str:
    """`model.hf_path` with a leading ~ expanded (paths staged on TPU workers)."""
    return os.path.expanduser(c.model.hf_path) if c.model.hf_path else ""


def check_declared_architecture(c, hf_cfg: models.ModelConfig) -> None:
    """Every architecture field the config sets (differs from configs/base.py) must agree
    with the HF `config.json`; raises ConfigError naming each disagreeing key."""
    from rlx.train.config import base_config
    base = base_config().model
    bad = []
    for key, field in ARCH_FIELDS.items():
        declared = c.model[key]
        if declared == base[key] or (key in ("vocab_size", "head_dim", "max_position_embeddings") and not declared):
            continue
        actual = getattr(hf_cfg, field)
        if declared != actual:
            bad.append(f"config.model.{key}={declared!r} but {c.model.hf_path}/config.json has {actual!r}")
    if bad:
        raise ConfigError("model architecture disagrees with the HF checkpoint:\n  " + "\n  ".join(bad))


def model_config(c, *, vocab_size: int | None = None, platform: str | None = None) -> models.ModelConfig:
    """The run's ModelConfig without loading weights. source="hf": from `hf_path`'s
    config.json when it exists here (checked against any declared architecture field),
    else from the architecture fields; source="tiny": from the fields. `vocab_size`
    (the tokenizer's) fills `model.vocab_size = 0`. `platform` resolves dtype "auto"."""
    m = c.model
    hf_json = os.path.join(hf_path(c), "config.json") if m.hf_path else ""
    if m.source == "hf" and hf_json and os.path.exists(hf_json):
        cfg = models.read_hf_config(hf_path(c))
        check_declared_architecture(c, cfg)
    else:
        V = m.vocab_size or vocab_size
        if not V:
            raise ConfigError("config.model.vocab_size: needed to describe the model without a tokenizer "
                              "or an HF config.json")
        cfg = _from_fields(c, int(V))
    return _numerics(c, cfg, platform)


def build_tokenizer(c, run_dir: str):
    """The run's tokenizer: `model.tokenizer_path`, else the HF model's, else rlx's
    built-in tokenizer (built once into run_dir/tokenizer)."""
    path = c.model.tokenizer_path or (hf_path(c) if c.model.source == "hf" else "")
    if path:
        return models.load_tokenizer(os.path.expanduser(path))
    return models.build_tokenizer(os.path.join(run_dir, "tokenizer"))


def build_model(c, tokenizer, key: jax.Array):
    """(model_cfg, params) from `c.model`: a random tiny model or a local HF checkpoint."""
    m = c.model
    if m.source == "hf":
        if not os.path.exists(os.path.join(hf_path(c), "config.json")):
            raise FileNotFoundError(f"config.model.hf_path: {m.hf_path!r} has no config.json (a local HF "
                                    "model directory is needed to run; planning needs only the config)")
        cfg = model_config(c)
        params, _ = models.from_hf(hf_path(c))
        params = jax.tree.map(lambda x: x.astype(cfg.param_dtype), params)
        if len(tokenizer) > cfg.vocab_size:
            raise ValueError(f"config.model.tokenizer_path: tokenizer has {len(tokenizer)} tokens but the "
                             f"model's vocabulary is {cfg.vocab_size}")
        return cfg, params
    cfg = model_config(c, vocab_size=len(tokenizer))
    if cfg.vocab_size < len(tokenizer):
        raise ConfigError(f"config.model.vocab_size: {cfg.vocab_size} is smaller than the tokenizer's "
                          f"{len(tokenizer)} tokens")
    return cfg, models.init_params(cfg, key)


def build_sampler_config(c, tokenizer, *, greedy: bool = False) -> sampling.SamplerConfig:
    stop = tuple(sorted({int(tokenizer.eos_token_id)})) if tokenizer.eos_token_id is not None else ()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    return sampler_config(c, stop_ids=stop, pad_id=int(pad), greedy=greedy)


def sampler_config(c, *, stop_ids=(), pad_id: int = 0, greedy: bool = False) -> sampling.SamplerConfig:
    """The SamplerConfig of `c.sampler` (stop and pad ids from the tokenizer)."""
    s = c.sampler
    return sampling.SamplerConfig(
        max_prompt_len=int(s.max_prompt_len), max_new_tokens=int(s.max_new_tokens),
        temperature=0.0 if greedy else float(s.temperature), top_k=0 if greedy else int(s.top_k),
        top_p=1.0 if greedy else float(s.top_p), stop_ids=tuple(stop_ids), pad_id=int(pad_id),
        rows_per_call=int(s.rows_per_call), kv_cache=str(s.kv_cache), slots=int(s.slots),
        page_size=int(s.page_size), decode_sharding=str(s.decode_sharding),
        logprob_temperature=policy_temperature(c))
