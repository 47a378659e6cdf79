"""Exports that stand alone: a run's policy as an HF model or a PEFT adapter directory.

    python -m rlx.export --run-dir=runs/q [--step=N] [--format=merged|peft] [--out=DIR] [--dtype=bfloat16]

Every export holds what `transformers` needs to use it without rlx: the weights
(`model.safetensors`, or `adapter_model.safetensors` + `adapter_config.json`), a
`config.json` with the tokenizer's bos / eos / pad ids, the tokenizer files
(`tokenizer.json`, `tokenizer_config.json`, ...) and a `generation_config.json` (the
special ids and the run's sampling settings: temperature, top-k, top-p, max_new_tokens).

Formats:
  merged  an HF causal LM (`AutoModelForCausalLM.from_pretrained(out)`); a LoRA policy's
          adapters are folded into its base, W + (alpha / r)·A·B, a quantized base
          dequantized first.
  peft    (LoRA runs) the adapters in PEFT's format (`rlx.models.hf_lora`), loadable with
          `peft.PeftModel.from_pretrained(base, out)`, and — unless the base is an
          untouched HF model on disk (`model.source=hf`, no init_from, no SFT, no
          quantization), which `base_model_name_or_path` then names — the base they were
          trained on in `out/base` (a QLoRA base dequantized: the weights the adapters
          saw), so the pair reproduces the trained policy.
Dtype: the checkpoint's own (master weights in `model.param_dtype`; a LoRA policy's base in
the compute dtype it was held in) unless `--dtype` asks for another. A merged LoRA policy
is computed in float32 (W + s·A·B) and then cast: a bf16 base gives a bf16 model, which —
as PEFT's `merge_and_unload` in bf16 — rounds deltas below 2^-9 of their weight away;
`--dtype=float32` or the peft format keeps them. A LoRA export rebuilds the base in the
dtype the run held it in (recorded in the checkpoint) and checks it against the
checkpoint's fingerprint of that base.

`python -m rlx.export` rebuilds a saved step from the run directory alone: its
`config.json`, tokenizer, the cached SFT warm start and the step's checkpoint (a LoRA
run's checkpoints hold adapters; the base is rebuilt as the run built it).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from rlx import models
from rlx.models import hf_lora, lora

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def special_ids(tokenizer) -> dict:
    out = {}
    for name in ("bos", "eos", "pad"):
        v = getattr(tokenizer, f"{name}_token_id", None)
        if v is not None:
            out[f"{name}_token_id"] = int(v)
    return out


def generation_config(tokenizer, sampler) -> dict:
    """generation_config.json: special ids + the run's sampling settings (`c.sampler`)."""
    t = float(sampler.get("temperature", 1.0))
    g = {**special_ids(tokenizer), "max_new_tokens": int(sampler.get("max_new_tokens", 32))}
    if t > 0:
        g.update(do_sample=True, temperature=t, top_k=int(sampler.get("top_k", 0)),
                 top_p=float(sampler.get("top_p", 1.0)))
    else:
        g["do_sample"] = False
    return g


def _write_common(out: str, tokenizer, sampler) -> None:
    tokenizer.save_pretrained(out)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(generation_config(tokenizer, sampler), f, indent=1)
    for name in os.listdir(out):
        p = os.path.join(out, name)
        if os.path.isfile(p):
            os.chmod(p, 0o644)


def _hf_dtype(params, dtype):
    return jnp.dtype(dtype) if dtype is not None else jnp.dtype(params["embed"].dtype)


def export_policy(params, model_cfg, tokenizer, sampler, out: str, fmt: str = "merged", *,
                  base_hf_path: str | None = None, dtype=None) -> str:
    """Writes the policy `params` (host arrays) to `out` in `fmt`; returns `out`.
    `base_hf_path`: an HF directory that holds exactly the base (peft only)."""
    params = jax.device_get(params)
    base_cfg = lora.base_config(model_cfg)
    os.makedirs(out, exist_ok=True)
    ids = special_ids(tokenizer)
    if fmt == "merged":          # W + s·A·B in float32, then the export's dtype
        merged = lora.merged(params, model_cfg, jnp.float32)
        models.to_hf(merged, base_cfg.replace(param_dtype=_hf_dtype(params, dtype)), out, extra_config=ids)
    elif fmt == "peft":
        if not lora.has_adapters(params):
            raise ValueError("export format 'peft' needs a LoRA policy (model.lora.rank > 0); use 'merged'")
        if base_hf_path:
            base_ref = os.path.abspath(base_hf_path)
        else:
            base_ref = os.path.join(os.path.abspath(out), "base")
            base = lora.merged(lora.base_of(params), model_cfg, jnp.float32)
            models.to_hf(base, base_cfg.replace(param_dtype=_hf_dtype(params, dtype)), base_ref, extra_config=ids)
            _write_common(base_ref, tokenizer, sampler)
        hf_lora.to_peft(lora.trainable(params), model_cfg, out, base_model_name_or_path=base_ref,
                        dtype=None if dtype is None else jnp.dtype(dtype))
    else:
        raise ValueError(f"export format {fmt!r}: expected 'merged' or 'peft'")
    _write_common(out, tokenizer, sampler)
    return out


def lora_base_meta(params, model_cfg) -> dict:
    """What a LoRA checkpoint records of its frozen base (the checkpoint holds adapters
    only): the compute dtype it was held in and a fingerprint of its arrays
    (`checkpoint.fingerprint`: per array, the uint32 sum of its raw bits)."""
    from rlx.train.checkpoint import fingerprint
    return {"dtype": jnp.dtype(model_cfg.dtype).name, "fingerprint": fingerprint(lora.base_of(params))}


def check_lora_base(meta, base_meta: dict, what: str) -> None:
    """Raises RestoreError when a checkpoint's adapters were trained on another base than
    the one rebuilt now (a changed model.hf_path / init_from / SFT cache, another compute
    dtype). Checkpoints without the record (none so far) pass."""
    saved = (meta or {}).get("lora_base")
    if not saved or saved == base_meta:
        return
    from rlx.train.checkpoint import RestoreError
    step = (meta or {}).get("step")
    extra = (f" (held in {saved['dtype']} then, {base_meta['dtype']} now: set --config.model.dtype="
             f"{saved['dtype']})" if saved.get("dtype") != base_meta["dtype"] else
             " (model.hf_path, model.init_from or the SFT cache changed?)")
    raise RestoreError(f"{what}: the frozen base rebuilt for this LoRA run differs from the one the adapters of "
                       f"checkpoint step {step} were trained on{extra}")


def base_is_hf_model(c) -> bool:
    """Whether a run's base is an HF model on disk as it is (nothing warm-started or quantized)."""
    return (c.model.source == "hf" and not c.model.init_from and not c.sft.steps
            and c.model.lora.base_quant == "none")


# ------------------------------------------------------------------ from a run directory
def _run_config(run_dir: str):
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--run-dir: {run_dir!r} has no config.json (not an rlx run directory)")
    with open(path) as f:
        saved = json.load(f)
    from rlx.train.config import base_config
    c = base_config()

    def fill(node, values, where):
        for k, v in values.items():
            if k in node and isinstance(node[k], ml_collections.ConfigDict) and isinstance(v, dict):
                fill(node[k], v, f"{where}{k}.")
            else:
                with node.unlocked() if hasattr(node, "unlocked") else _Null():
                    node[k] = tuple(v) if isinstance(v, list) else v
    fill(c, saved, "")
    return c


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def load_run_policy(run_dir: str, step: int | None = None):
    """(config, model_cfg, tokenizer, host params of the policy at `step` (default: the
    newest checkpoint), step) rebuilt from a run directory."""
    import orbax.checkpoint as ocp

    from rlx.train import resume as rresume
    from rlx.train.build import build_model, build_tokenizer
    from rlx.train.config import init_seed
    from rlx.train.init_from import load_params

    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    c = _run_config(run_dir)
    steps = rresume.checkpoint_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"--run-dir: {run_dir} has no checkpoints")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
        raise FileNotFoundError(f"--step: {run_dir} has no checkpoint {step} (saved: {steps})")
    tokenizer = build_tokenizer(c, run_dir)
    meta = {}
    if c.model.lora.rank > 0:          # the base's compute dtype as the run held it (not this host's "auto")
        from rlx.train.checkpoint import Checkpointer
        ck = Checkpointer(os.path.join(run_dir, "checkpoints"), keep=max(len(steps), 1), async_save=False)
        try:
            meta = ck.read_meta(step)
        finally:
            ck.close()
        if (meta.get("lora_base") or {}).get("dtype"):
            c.model.dtype = meta["lora_base"]["dtype"]
    k_init = jax.random.split(jax.random.key(init_seed(c)), 4)[0]        # as the engine derives it
    model_cfg, params = build_model(c, tokenizer, k_init)
    tree = ocp.StandardCheckpointer().restore(os.path.join(run_dir, "checkpoints", str(step), "state"))
    saved = tree["train"]["params"]
    if not lora.enabled(model_cfg):
        return c, model_cfg, tokenizer, jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), params, saved), step
    # A LoRA run: rebuild the base as the engine did, then put the step's adapters on it.
    if c.model.init_from:
        params = load_params(c.model.init_from, params)
    if c.sft.steps:
        cache = os.path.join(run_dir, "sft")
        if not os.path.exists(os.path.join(cache, "model.safetensors")):
            raise FileNotFoundError(f"{run_dir}: the SFT warm start the adapters were trained on (sft/) is missing")
        cached, _ = models.from_hf(cache)
        params = jax.tree.map(lambda x, p: x.astype(p.dtype), cached, params)
    policy = jax.jit(lambda p, k: lora.attach(p, model_cfg, k))(params, jax.random.fold_in(k_init, 1))  # as the engine
    check_lora_base(meta, lora_base_meta(policy, model_cfg), f"export of {run_dir} step {step}")
    adapters = jax.tree.map(lambda t, x: jnp.asarray(x, t.dtype), lora.trainable(policy), saved)
    return c, model_cfg, tokenizer, lora.combine(policy, adapters), step


def export_run(run_dir: str, *, step: int | None = None, fmt: str = "merged", out: str | None = None,
               dtype: str | None = None) -> str:
    c, model_cfg, tokenizer, params, step = load_run_policy(run_dir, step)
    out = out or os.path.join(run_dir, "hf" if fmt == "merged" else "peft", str(step))
    from rlx.train.build import hf_path
    return export_policy(params, model_cfg, tokenizer, dict(c.sampler), out, fmt,
                         base_hf_path=hf_path(c) if base_is_hf_model(c) else None,
                         dtype=_DTYPES[dtype] if dtype else None)
