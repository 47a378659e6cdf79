"""Config files, command-line overrides and validation.

    python -m rlx.train --config=configs/grpo.py --config.rl.group_size=8 [--resume]

A config file defines `get_config() -> ml_collections.ConfigDict`, normally by forking
configs/base.py. Validation runs before anything is built and reports every problem
at once, each naming its key:
  * keys: every key must exist in configs/base.py (a typo is "unknown key ... did you
    mean ...?"), except inside the free-form `*_kwargs` dicts, whose keys must be
    keyword parameters of the estimator / loss they configure;
  * types: a value has the type of the base default (ints are accepted for floats);
  * values: ranges and names (estimator, loss, aggregation, KL kind, rules preset,
    task, ...), and cross-field rules (e.g. minibatches must divide the prompts).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import ml_collections

_BASE_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "base.py")


class ConfigError(ValueError):
    """Raised for an invalid config; the message lists every offending key."""


def load_config(path: str) -> ml_collections.ConfigDict:
    """Imports a config file by path and returns its `get_config()`."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such config file {path!r}")
    # Config files import their base as `from configs import base`: put the directory
    # holding `configs/` on the path (the nearest ancestor named `configs`, so that
    # configs/scale/x.py works too; else the file's parent's parent, as before).
    root = os.path.dirname(os.path.dirname(path))
    d = os.path.dirname(path)
    while os.path.dirname(d) != d:
        if os.path.basename(d) == "configs":
            root = os.path.dirname(d)
            break
        d = os.path.dirname(d)
    if root not in sys.path:
        sys.path.insert(0, root)
    name = "rlx_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "get_config"):
        raise ConfigError(f"config file {path} defines no get_config()")
    return mod.get_config()


def lora_targets(text) -> tuple[str, ...]:
    """`model.lora.targets` ("q,k,v" or a list) as a tuple of names."""
    if isinstance(text, (list, tuple)):
        return tuple(str(t).strip() for t in text)
    return tuple(t.strip() for t in str(text).split(",") if t.strip())


def policy_temperature(c) -> float:
    """The temperature T of the policy the trainer trains, pi_T = softmax(logits / T):
    `rl.policy_temperature`, or with 0 the sampling temperature (1 for a greedy sampler).
    With T = the sampling temperature the sampler's log-probs are pi_old's and the
    first update is on-policy (verl `compute_log_prob`, TRL `logits / temperature`)."""
    t = float(c.rl.get("policy_temperature", 0.0))
    return t if t > 0 else (float(c.sampler.temperature) or 1.0)


def base_config() -> ml_collections.ConfigDict:
    return load_config(_BASE_PATH)


def _parse_value(key: str, text: str, current: Any):
    """Parses an override string into the type of the current value."""
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"config.{key}: expected a bool, got {text!r}")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, (list, int, float)):
        value = tuple(value) if isinstance(value, list) else (value,)
    return value


_KWARGS_OF = {"rl.loss": "rl.loss_kwargs", "rl.estimator": "rl.estimator_kwargs"}


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Applies `key.path=value` overrides (a leading `--config.` is optional) in place.

    Keyword arguments belong to the function they configure: overriding `rl.loss` (or
    `rl.estimator`) to a different name resets `rl.loss_kwargs` (`rl.estimator_kwargs`)
    to empty — the new function's defaults — before the command line's own
    `rl.loss_kwargs.<name>=...` overrides apply.
    """
    keys = [o[len("--config."):] if o.startswith("--config.") else o for o in overrides]
    for fn_key, kw_key in _KWARGS_OF.items():
        new = [k.split("=", 1)[1] for k in keys if k.split("=", 1)[0] == fn_key]
        if new and new[-1] != _get(config, fn_key):
            section, leaf = kw_key.split(".")
            with config.unlocked() if hasattr(config, "unlocked") else _null():
                config[section][leaf] = ml_collections.ConfigDict()
    for item in overrides:
        text = item[len("--config."):] if item.startswith("--config.") else item
        if "=" not in text:
            raise ConfigError(f"override {item!r}: expected --config.<key>=<value>")
        key, raw = text.split("=", 1)
        parts = key.split(".")
        node = config
        for i, p in enumerate(parts[:-1]):
            if p not in node:
                raise ConfigError(_unknown(".".join(parts[:i + 1]), list(node.keys())))
            node = node[p]
        leaf = parts[-1]
        free_form = parts[-2].endswith("_kwargs") if len(parts) > 1 else False
        if leaf not in node and not free_form:
            raise ConfigError(_unknown(key, list(node.keys())))
        current = node[leaf] if leaf in node else None
        value = _parse_value(key, raw, current)
        with config.unlocked() if hasattr(config, "unlocked") else _null():
            try:
                node[leaf] = value
            except (TypeError, ValueError):
                want = type(current).__name__ if current is not None else "another type"
                raise ConfigError(f"config.{key}: expected {want}, got {raw!r}") from None


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _unknown(key: str, known: list[str]) -> str:
    leaf = key.split(".")[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key config.{key}{hint}; known here: {', '.join(sorted(known))}"


def _walk(cfg, base, prefix, errors):
    for key in cfg.keys():
        path = f"{prefix}{key}"
        if key not in base:
            errors.append(_unknown(path, list(base.keys())))
            continue
        v, b = cfg[key], base[key]
        if key.endswith("_kwargs"):
            if not isinstance(v, (dict, ml_collections.ConfigDict)):
                errors.append(f"config.{path}: expected a dict of keyword arguments, got {v!r}")
            continue
        if isinstance(b, ml_collections.ConfigDict):
            if not isinstance(v, ml_collections.ConfigDict):
                errors.append(f"config.{path}: expected a section, got {v!r}")
            else:
                _walk(v, b, path + ".", errors)
            continue
        ok = (isinstance(v, type(b)) or (isinstance(b, float) and isinstance(v, int)
                                         and not isinstance(v, bool)))
        if isinstance(b, (int, float)) and isinstance(v, bool) and not isinstance(b, bool):
            ok = False
        if not ok:
            errors.append(f"config.{path}: expected {type(b).__name__}, got {v!r} "
                          f"({type(v).__name__})")


def _kwargs_check(errors, path, fn: Callable, kwargs, what: str):
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY]
    for k in kwargs.keys():
        if k not in allowed:
            errors.append(f"config.{path}.{k}: not a keyword parameter of {what} "
                          f"(parameters: {', '.join(allowed) or 'none'})")


PAIRWISE_INPUTS = ("policy_chosen_logp", "policy_rejected_logp", "ref_chosen_logp", "ref_rejected_logp")
# Estimators whose advantage compares a sample with its group (a group of 1 has nothing to compare).
GROUP_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "lite_ppo", "ngrpo", "bnpo", "hardness_weighted", "kalman", "opo",
                    "passk", "unlikeliness", "seed_grpo", "reinforce_pp_baseline")


def _trial_call(errors, key: str, what: str, call) -> None:
    """Runs `call` (the function on tiny arrays with the config's keyword values) so that a
    bad value fails at start-up, naming the key, not at the first trace."""
    try:
        call()
    except Exception as ex:  # noqa: BLE001 - reported as a config error
        errors.append(f"config.{key}: {what} rejects these values: {type(ex).__name__}: "
                      + " ".join(str(ex).split())[:300])


def _trial_policy_loss(r):
    import inspect as _inspect

    from rlx import losses
    fn = losses.get(r.loss)
    sig = _inspect.signature(fn).parameters
    G = max(int(r.group_size), 1)
    B, T = 2 * G, 3
    z = jnp.zeros((B, T), jnp.float32)
    kw = dict(r.loss_kwargs)
    extras = {"agg": r.agg, "group_size": G, "rewards": jnp.arange(B, dtype=jnp.float32),
              "valid": jnp.ones((B,), bool), "levels": jnp.zeros((B,), jnp.int32), "ref_logp": z}
    for k, v in extras.items():
        if k in sig:
            kw.setdefault(k, v)
    if "max_len" in sig and r.agg == "seq-mean-token-sum-norm":
        kw.setdefault("max_len", T)
    fn(z, z, z + 1.0, jnp.ones((B, T), bool), **kw)


AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
TASKS = ("arithmetic", "countdown", "knights_knaves", "kk_files", "gsm8k", "math", "jsonl")


def _value_checks(c, for_plan: bool = False) -> list[str]:
    e: list[str] = []

    def need(cond, key, msg):
        if not cond:
            e.append(f"config.{key}: {msg}, got {_get(c, key)!r}")

    need(c.init_seed >= -1, "init_seed", "must be >= 0, or -1 (= seed)")
    need(c.model.source in ("tiny", "hf"), "model.source", "must be 'tiny' or 'hf'")
    if c.model.source == "hf" and not for_plan:
        need(bool(c.model.hf_path), "model.hf_path", "required to run with model.source='hf' (a local HF "
             "model directory; `python -m rlx.plan` needs only the architecture fields)")
    for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size"):
        need(c.model[k] >= 1, f"model.{k}", "must be >= 1")
    for k in ("vocab_size", "head_dim", "max_position_embeddings"):
        need(c.model[k] >= 0, f"model.{k}", "must be >= 0 (0 = derived)")
    need(c.model.num_heads % max(c.model.num_kv_heads, 1) == 0, "model.num_kv_heads",
         "must divide model.num_heads")
    if not c.model.head_dim:
        need(c.model.hidden_size % max(c.model.num_heads, 1) == 0, "model.hidden_size",
             "must be divisible by model.num_heads (or set model.head_dim)")
    else:
        need(c.model.head_dim % 2 == 0, "model.head_dim", "must be even (RoPE)")
    need(c.model.family in ("qwen2", "qwen3", "llama"), "model.family", "must be qwen2, qwen3 or llama")
    need(c.model.rope_theta > 0, "model.rope_theta", "must be > 0")
    need(c.model.rms_norm_eps > 0, "model.rms_norm_eps", "must be > 0")
    need(c.model.dtype in ("auto", "float32", "bfloat16", "float16"), "model.dtype",
         "must be auto, float32, bfloat16 or float16")
    need(c.model.param_dtype in ("float32", "bfloat16", "float16"), "model.param_dtype",
         "must be float32, bfloat16 or float16")
    from rlx.models.config import REMAT_POLICIES
    need(c.model.remat in REMAT_POLICIES, "model.remat", f"must be one of {REMAT_POLICIES}")
    from rlx.models.config import ATTENTION_IMPLS
    from rlx.parallel.rules import DECODE_SHARDINGS
    from rlx.sampling.config import KV_CACHES
    need(c.model.attention in ATTENTION_IMPLS, "model.attention", f"must be one of {ATTENTION_IMPLS}")
    need(c.sampler.kv_cache in KV_CACHES, "sampler.kv_cache", f"must be one of {KV_CACHES}")
    need(c.sampler.slots >= 0, "sampler.slots", "must be >= 0")
    need(c.sampler.slots == 0 or c.sampler.kv_cache != "dense", "sampler.slots",
         "continuous batching needs sampler.kv_cache=paged or ragged")
    need(c.sampler.page_size >= 1, "sampler.page_size", "must be >= 1")
    need(c.sampler.decode_sharding in DECODE_SHARDINGS, "sampler.decode_sharding",
         f"must be one of {DECODE_SHARDINGS}, got {c.sampler.decode_sharding!r}")
    lo = c.model.lora
    need(isinstance(lo.rank, int) and lo.rank >= 0, "model.lora.rank", "must be an int >= 0 (0 = no LoRA)")
    need(isinstance(lo.alpha, (int, float)) and not isinstance(lo.alpha, bool) and lo.alpha > 0,
         "model.lora.alpha", f"must be a number > 0 (got {lo.alpha!r})")
    from rlx.models import lora as _lora
    if lo.rank > 0:
        targets = lora_targets(lo.targets)
        bad = [t for t in targets if t not in _lora.TARGETS]
        need(targets and not bad and len(set(targets)) == len(targets), "model.lora.targets",
             f"must be comma-separated names from {','.join(_lora.TARGETS)}, each once "
             f"(got {lo.targets!r}{f'; unknown: {bad}' if bad else ''})")
    need(lo.base_quant in _lora.QUANTS, "model.lora.base_quant", f"must be one of {_lora.QUANTS}")
    need(lo.base_quant == "none" or lo.rank > 0, "model.lora.base_quant",
         "a quantized (frozen) base needs adapters to train: set model.lora.rank > 0")
    need(lo.sampler in _lora.SAMPLERS, "model.lora.sampler", f"must be one of {_lora.SAMPLERS}")
    need(c.checkpoint.export_format in ("merged", "peft"), "checkpoint.export_format", "must be merged or peft")
    need(c.checkpoint.export_format == "merged" or lo.rank > 0, "checkpoint.export_format",
         "peft exports LoRA adapters: set model.lora.rank > 0 (or export_format=merged)")
    need(c.model.vocab_chunk >= -1, "model.vocab_chunk", "must be -1 (auto), 0 (off) or a chunk size")
    need(c.sampler.rows_per_call >= 0 and c.sampler.rows_per_call % max(c.rl.group_size, 1) == 0,
         "sampler.rows_per_call", f"must be 0 or a multiple of rl.group_size={c.rl.group_size} "
         "(rollouts are chunked by whole prompts)")
    need(c.train.forward_rows >= 0, "train.forward_rows", "must be >= 0 (0 = whole batch)")
    need(c.train.max_nonfinite_steps >= 0, "train.max_nonfinite_steps", "must be >= 0 (0 = never stop)")
    need(c.sampler.max_prompt_len >= 1, "sampler.max_prompt_len", "must be >= 1")
    need(c.sampler.max_new_tokens >= 1, "sampler.max_new_tokens", "must be >= 1")
    need(c.sampler.temperature >= 0, "sampler.temperature", "must be >= 0")
    need(c.sampler.top_k >= 0, "sampler.top_k", "must be >= 0")
    need(0 < c.sampler.top_p <= 1, "sampler.top_p", "must be in (0, 1]")

    r = c.rl
    from rlx import advantages, losses  # late import: the registries
    from rlx.train.estimate import ENGINE_ESTIMATORS, EPISODE_ESTIMATORS
    if r.estimator not in advantages.names():
        e.append(f"config.rl.estimator: unknown estimator {r.estimator!r}; known: "
                 f"{', '.join(advantages.names())}")
    elif c.env.name and r.estimator not in EPISODE_ESTIMATORS:
        e.append(f"config.rl.estimator: multi-turn episodes (env.name={c.env.name!r}) drive "
                 f"{', '.join(EPISODE_ESTIMATORS)}; got {r.estimator!r}")
    elif r.estimator not in ENGINE_ESTIMATORS and not (c.env.name and r.estimator in EPISODE_ESTIMATORS):
        if r.estimator == "gigpo":
            e.append("config.rl.estimator: gigpo needs multi-step episodes: set env.name (an environment of "
                     "rlx.envs.ENVS) to train on them")
        else:
            e.append(f"config.rl.estimator: {r.estimator!r} needs inputs an RL batch of completions does not "
                     f"have (use it as a function); the engine drives: {', '.join(ENGINE_ESTIMATORS)}")
    else:
        _kwargs_check(e, "rl.estimator_kwargs", advantages.get(r.estimator), r.estimator_kwargs,
                      f"estimator {r.estimator!r}")
        if r.estimator == "egae" and "bootstrap" in r.estimator_kwargs:
            e.append("config.rl.estimator_kwargs.bootstrap: set by the engine (the critic's value at the cut)")
    pref = r.loss in losses.preference_names()
    if not pref and r.loss not in losses.names():
        e.append(f"config.rl.loss: unknown loss {r.loss!r}; known: "
                 f"{', '.join(losses.names() + losses.preference_names())}")
    elif pref:
        fn = losses.preference_get(r.loss)
        ps = list(inspect.signature(fn).parameters.values())
        required = [p.name for p in ps[4:] if p.default is p.empty and p.kind != p.VAR_KEYWORD]
        if tuple(p.name for p in ps[:4]) != PAIRWISE_INPUTS or required:
            e.append(f"config.rl.loss: the engine trains pairwise preference losses of ({', '.join(PAIRWISE_INPUTS)}) "
                     f"only; {r.loss!r} takes ({', '.join(p.name for p in ps if p.default is p.empty)}) — "
                     "use it as a function (rlx.losses)")
            return e
        _kwargs_check(e, "rl.loss_kwargs", fn, r.loss_kwargs, f"loss {r.loss!r}")
        _trial_call(e, "rl.loss_kwargs", f"loss {r.loss!r}", lambda: fn(
            *(jnp.zeros((2,), jnp.float32) for _ in range(4)), **dict(r.loss_kwargs)))
        need(c.pref.source in ("online", "offline"), "pref.source", "must be 'online' or 'offline'")
        if c.pref.source == "offline" and not c.pref.path:
            need(c.data.task in ("arithmetic", "knights_knaves", "kk_files", "gsm8k"), "data.task",
                 "offline preference pairs are generated for arithmetic, knights_knaves, kk_files and gsm8k "
                 "(give pref.path for other tasks)")
        need(r.minibatches == 1 and r.micro_batches == 1, "rl.minibatches",
             "preference training takes one minibatch per epoch (minibatches = micro_batches = 1)")
        if c.pref.source == "online":
            need(r.group_size >= 2, "rl.group_size", "online preference pairs need group_size >= 2")
    else:
        _kwargs_check(e, "rl.loss_kwargs", losses.get(r.loss), r.loss_kwargs, f"loss {r.loss!r}")
        if not any(x.startswith("config.rl.loss_kwargs.") for x in e):
            _trial_call(e, "rl.loss_kwargs", f"loss {r.loss!r}", lambda: _trial_policy_loss(r))
    if r.estimator in GROUP_ESTIMATORS and r.group_size < 2 and not pref:
        e.append(f"config.rl.group_size: estimator {r.estimator!r} compares the samples of a group, so "
                 f"group_size=1 makes every advantage 0; use group_size >= 2 (or a critic: rl.estimator=gae)")
    need(r.agg in AGG_MODES, "rl.agg", f"must be one of {AGG_MODES}")
    need(r.kl_agg in ("",) + AGG_MODES, "rl.kl_agg", f"must be '' (= rl.agg) or one of {AGG_MODES}")
    need(r.whiten_scope in ("batch", "minibatch", "micro_batch"), "rl.whiten_scope",
         "must be batch, minibatch or micro_batch")
    need(r.whiten_scope == "batch" or r.estimator in ("spo_chain", "spo_tree"), "rl.whiten_scope",
         f"minibatch / micro_batch whitening is for the SPO estimators (their estimator then does not "
         f"whiten); rl.estimator={r.estimator!r} whitens (or not) in the estimator: keep 'batch'")
    sp = c.spo
    need(0 < sp.threshold <= 1, "spo.threshold", "must be in (0, 1]")
    need(sp.cutpoint_interval >= 1, "spo.cutpoint_interval", "must be >= 1")
    need(sp.num_cuts >= 0, "spo.num_cuts", "must be >= 0 (0 = no cap)")
    need(sp.mc_samples >= 1, "spo.mc_samples", "must be >= 1")
    need(sp.truncated_reward in ("zero", "task"), "spo.truncated_reward", "must be 'zero' or 'task'")
    need(len(sp.branching) >= 1 and min(sp.branching) >= 1, "spo.branching", "must be positive ints")
    need(sp.tree_mode in ("rloo", "grpo"), "spo.tree_mode", "must be rloo or grpo")
    need(1 <= sp.train_edges <= sp.replay_capacity, "spo.train_edges", "must be in [1, spo.replay_capacity]")
    need(sp.replay_max_age >= 1 and sp.replay_per_question >= 1, "spo.replay_max_age",
         "replay_max_age and replay_per_question must be >= 1")
    if r.estimator == "spo_tree":
        need(sp.train_edges % (r.minibatches * r.micro_batches) == 0, "spo.train_edges",
             "must be divisible by rl.minibatches x rl.micro_batches")
        need(c.sampler.max_new_tokens - (len(sp.branching) - 1) * sp.segment_len >= 1, "spo.segment_len",
             "leaves no tokens of sampler.max_new_tokens for the last tree level")
        need(not r.dynamic_sampling, "rl.dynamic_sampling", "does not apply to spo_tree")
    need(c.critic.lr > 0, "critic.lr", "must be > 0")
    need(c.critic.value_clip > 0, "critic.value_clip", "must be > 0")
    need(c.critic.max_grad_norm >= 0, "critic.max_grad_norm", "must be >= 0")
    need(r.kl_coef >= 0, "rl.kl_coef", "must be >= 0")
    need(r.policy_temperature >= 0, "rl.policy_temperature", "must be >= 0 (0 = sampler.temperature)")
    need(r.kl_kind in ("k1", "k2", "k3", "abs"), "rl.kl_kind", "must be k1, k2, k3 or abs")
    need(r.kl_placement in ("loss", "reward"), "rl.kl_placement", "must be 'loss' or 'reward'")
    need(r.group_size >= 1, "rl.group_size", "must be >= 1")
    need(r.prompts_per_step >= 1, "rl.prompts_per_step", "must be >= 1")
    need(r.epochs >= 1, "rl.epochs", "must be >= 1")
    need(r.minibatches >= 1 and r.prompts_per_step % max(r.minibatches, 1) == 0, "rl.minibatches",
         f"must be >= 1 and divide rl.prompts_per_step={r.prompts_per_step} (minibatches hold "
         "whole groups)")
    mb_prompts = r.prompts_per_step // max(r.minibatches, 1)
    token_level = (not pref and r.loss in losses.names()
                   and "agg_denominator" in inspect.signature(losses.get(r.loss)).parameters)
    if token_level:       # exact accumulation by global denominators: any split of the rows
        mb_rows = mb_prompts * max(r.group_size, 1)
        need(r.micro_batches >= 1 and mb_rows % max(r.micro_batches, 1) == 0, "rl.micro_batches",
             f"must be >= 1 and divide the {mb_rows} rows of a minibatch")
    else:
        need(r.micro_batches >= 1 and mb_prompts % max(r.micro_batches, 1) == 0, "rl.micro_batches",
             f"must be >= 1 and divide the {mb_prompts} prompts of a minibatch (loss {r.loss!r} needs whole "
             "groups)")
    rc = r.rollout_correction
    from rlx.losses import rollout_correction as rcorr
    need(rc.is_level in rcorr.IS_LEVELS, "rl.rollout_correction.is_level", f"must be one of {rcorr.IS_LEVELS}")
    need(rc.rs_level in rcorr.RS_LEVELS, "rl.rollout_correction.rs_level", f"must be one of {rcorr.RS_LEVELS}")
    need(rc.is_threshold > 0 and rc.rs_threshold > 0, "rl.rollout_correction.is_threshold",
         "is_threshold and rs_threshold must be > 0")
    need(0 <= rc.rs_threshold_lower <= rc.rs_threshold, "rl.rollout_correction.rs_threshold_lower",
         "must be in [0, rs_threshold] (0 = 1 / rs_threshold)")
    if rc.is_level != "none" or rc.rs_level != "none":
        need(r.recompute_old_logprobs, "rl.rollout_correction",
             "compares the trainer's pi_old with the sampler's log-probs: set rl.recompute_old_logprobs=True")
        need(r.estimator not in ("spo_tree",) and not c.env.get("name") and not pref, "rl.rollout_correction",
             "applies to single-turn groups and spo_chain")
        if rc.is_level != "none":
            need(r.loss in rcorr.WEIGHTABLE_LOSSES, "rl.rollout_correction.is_level",
                 f"weights the per-token loss through the advantage: rl.loss must be one of "
                 f"{rcorr.WEIGHTABLE_LOSSES}, got {r.loss!r}")
            need(r.get("whiten_scope", "batch") == "batch", "rl.rollout_correction.is_level",
                 "whitening in the update would undo the weights: keep rl.whiten_scope='batch'")
    need(r.max_sampling_rounds >= 1, "rl.max_sampling_rounds", "must be >= 1")
    need(r.gen_batch_multiple >= 1, "rl.gen_batch_multiple", "must be >= 1 (prompts per round / prompts_per_step)")
    need(r.dynamic_overflow in ("discard", "recover"), "rl.dynamic_overflow", "must be 'discard' or 'recover'")
    need(r.pad_multiple >= 0, "rl.pad_multiple", "must be >= 0 (0 = no trimming)")
    need(0 <= r.overlong_cache < c.sampler.max_new_tokens, "rl.overlong_cache",
         "must be in [0, sampler.max_new_tokens)")

    o = c.optimizer
    need(o.name in ("adamw", "adam", "sgd"), "optimizer.name", "must be adamw, adam or sgd")
    need(o.lr > 0, "optimizer.lr", "must be > 0")
    need(o.schedule in ("constant", "cosine"), "optimizer.schedule", "must be constant or cosine")
    need(o.warmup_steps >= 0, "optimizer.warmup_steps", "must be >= 0")
    need(0 <= o.end_lr_ratio <= 1, "optimizer.end_lr_ratio", "must be in [0, 1]")
    need(o.max_grad_norm >= 0, "optimizer.max_grad_norm", "must be >= 0")
    need(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")

    need(c.log.wandb_mode in ("offline", "online", "disabled"), "log.wandb_mode",
         "must be offline, online or disabled")
    need(len(c.mesh.shape) == 3, "mesh.shape", "must be (data, fsdp, tensor)")
    from rlx.parallel import RULES
    need(c.mesh.rules in RULES, "mesh.rules", f"must be one of {sorted(RULES)}")
    need(c.mesh.num_processes >= 1, "mesh.num_processes", "must be >= 1")

    e += _env_checks(c)
    need(c.data.task in TASKS, "data.task", f"must be one of {TASKS}")
    need(len(c.data.levels) >= 1, "data.levels", "must name at least one level")
    if c.data.task == "jsonl":
        need(c.data.checker in ("math", "numeric", "exact"), "data.checker", "must be math, numeric or exact "
             "(or give reward.fn)")
    if c.data.task in ("gsm8k", "math", "jsonl"):
        need(bool(c.data.path), "data.path", f"required for data.task={c.data.task!r}")
    need(c.data.curriculum in ("uniform", "dump"), "data.curriculum", "must be uniform or dump")
    need(c.data.dump_tau > 0, "data.dump_tau", "must be > 0")
    need(c.data.dump_window >= 1, "data.dump_window", "must be >= 1")
    need(c.data.eval_prompts >= 0, "data.eval_prompts", "must be >= 0")
    need(c.data.reward_workers >= -1, "data.reward_workers", "must be -1 (auto), 0 (in-process) or a count")
    need(c.data.reward_time_limit_s >= 0, "data.reward_time_limit_s", "must be >= 0 (0 = no limit)")
    from rlx.rewards import get_task
    from rlx.train.data import REWARD_TASK
    names = None
    if c.reward.fn:
        from rlx.rewards import user
        try:
            user.load(c.reward.fn)
        except ValueError as err:
            e.append(f"config.reward.fn: {err}")
        need(len(c.reward.component_names) >= 1, "reward.component_names", "must name at least one component")
        names, what = tuple(c.reward.component_names), f"reward.fn {c.reward.fn!r}"
    elif c.data.task in REWARD_TASK or (c.data.task == "jsonl" and c.data.checker in ("math", "numeric", "exact")):
        from rlx.train.data import reward_task
        spec = get_task(reward_task(c))
        names, what = spec.component_names, f"task {spec.name!r}"
    if c.data.reward_weights and names is not None:
        need(len(c.data.reward_weights) == len(names), "data.reward_weights",
             f"{what} has {len(names)} components {names}, got {len(c.data.reward_weights)} weights")
    if c.rl.advantage_decomposition:
        need(c.rl.estimator == "bnpo", "rl.advantage_decomposition", "is BNPO's: needs rl.estimator='bnpo'")
        need(not c.env.get("name"), "rl.advantage_decomposition", "does not apply to multi-turn episodes")
        need(c.rl.overlong_cache == 0 and not (c.rl.kl_coef and c.rl.kl_placement == "reward"),
             "rl.advantage_decomposition", "decomposes the task's reward components: the overlong penalty "
             "and a KL folded into the reward are not components (set rl.overlong_cache=0, rl.kl_placement=loss)")
    need(c.sft.steps >= 0, "sft.steps", "must be >= 0")
    need(c.sft.batch_size >= 1, "sft.batch_size", "must be >= 1")
    need(c.sft.lr > 0, "sft.lr", "must be > 0")
    need(c.train.steps >= 0, "train.steps", "must be >= 0")
    need(c.train.eval_every >= 0, "train.eval_every", "must be >= 0")
    need(c.checkpoint.interval >= 0, "checkpoint.interval", "must be >= 0")
    need(c.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    need(c.log.every >= 1, "log.every", "must be >= 1")
    need(all(1 <= k <= r.group_size for k in c.log.pass_k), "log.pass_k",
         f"each k must be in [1, rl.group_size={r.group_size}]")
    return e


def _env_checks(c) -> list[str]:
    """The `env` section (multi-turn episodes), when `env.name` is set."""
    e: list[str] = []
    v = c.env
    if not v.name:
        return e
    from rlx.envs import ENVS
    if v.name not in ENVS:
        return [f"config.env.name: unknown environment {v.name!r}; known: {', '.join(sorted(ENVS))}"]
    cls = ENVS[v.name]
    for k in v.task_kwargs.keys():
        if k == cls.SEED_KEY:
            e.append(f"config.env.task_kwargs.{k}: set per task by the run (tasks are numbered by it; "
                     "see env.train_tasks and env.eval_seed)")
        elif k not in cls.TASK_KEYS:
            e.append(f"config.env.task_kwargs.{k}: not a task key of {v.name!r} (keys: {', '.join(cls.TASK_KEYS)})")

    def need(cond, key, msg):
        if not cond:
            e.append(f"config.{key}: {msg}, got {_get(c, key)!r}")

    for k in ("max_turns", "max_turn_tokens", "max_prompt_tokens", "max_total_tokens", "train_tasks", "workers"):
        need(v[k] >= 1, f"env.{k}", "must be >= 1")
    need(v.eval_tasks >= 0, "env.eval_tasks", "must be >= 0")
    need(v.eval_seed >= v.train_tasks, "env.eval_seed", f"must be >= env.train_tasks={v.train_tasks} (held-out "
         "tasks are numbered from it)")
    need(v.max_turn_tokens <= v.max_total_tokens, "env.max_turn_tokens", "must be <= env.max_total_tokens")
    need(v.step_timeout_s > 0, "env.step_timeout_s", "must be > 0")
    need(v.invalid_action_penalty >= 0, "env.invalid_action_penalty", "must be >= 0")
    need(v.replay >= 0, "env.replay", "must be >= 0 (0 = off)")
    need(v.prefill_chunk >= 0, "env.prefill_chunk", "must be >= 0 (0 = one decode step per token)")
    need(c.rl.group_size >= 2, "rl.group_size", "episode groups need >= 2 episodes per task")
    need(not c.rl.dynamic_sampling, "rl.dynamic_sampling", "does not apply to multi-turn episodes")
    need(c.data.curriculum == "uniform", "data.curriculum", "multi-turn episodes draw tasks uniformly")
    need(c.sampler.rows_per_call == 0 and c.sampler.kv_cache == "dense", "sampler.kv_cache",
         "multi-turn episodes sample with the dense cache in one call per turn (rows_per_call=0)")
    from rlx import losses
    need(c.rl.loss not in losses.preference_names(), "rl.loss", "multi-turn episodes train a policy loss")
    pos = c.model.max_position_embeddings
    if pos:
        need(v.max_prompt_tokens + v.max_total_tokens + v.max_turn_tokens <= pos, "env.max_total_tokens",
             f"the history (max_prompt_tokens + max_total_tokens + max_turn_tokens) must fit "
             f"model.max_position_embeddings={pos}")
    return e


def _get(c, key):
    node = c
    for p in key.split("."):
        node = node[p]
    return node


def init_seed(c) -> int:
    """The seed of the starting policy: `init_seed`, or `seed` when it is -1."""
    return int(c.seed if c.init_seed < 0 else c.init_seed)


def validate(config: ml_collections.ConfigDict, *, for_plan: bool = False) -> ml_collections.ConfigDict:
    """Raises ConfigError listing every unknown key, wrong type and invalid value.
    `for_plan`: the checks for compiling without running (no weights directory needed)."""
    errors: list[str] = []
    _walk(config, base_config(), "", errors)
    if not errors:  # value checks assume the structure is right
        errors += _value_checks(config, for_plan)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    return config


USAGE = """usage: python -m rlx.train --config=PATH [--config.<key>=<value> ...] [--resume] [--overwrite]
                          [--allow-change=KEY,...]

  --config=PATH           a config file (configs/*.py); every key and its meaning: configs/base.py
  --config.<key>=<value>  override one key, e.g. --config.rl.group_size=8 (unknown keys are refused)
  --resume                continue the run in config.run_dir from its newest good checkpoint
  --overwrite             replace the run already in config.run_dir (its checkpoints and metrics)
  --allow-change=K1,K2    with --resume: config keys that may differ from the checkpoint's
  --help                  this text"""


def parse_args(argv: list[str]) -> tuple[ml_collections.ConfigDict, dict]:
    """`--config=PATH [--config.key=value ...] [--resume] [--overwrite] [--allow-change=...]`
    -> (validated config, flags). `--help` raises SystemExit(0) after printing USAGE."""
    path, overrides = None, []
    flags = {"resume": False, "overwrite": False, "allow_changes": ()}
    for a in argv:
        if a in ("--help", "-h"):
            print(USAGE)
            raise SystemExit(0)
        if a.startswith("--config="):
            path = a.split("=", 1)[1]
        elif a.startswith("--config."):
            overrides.append(a)
        elif a == "--resume":
            flags["resume"] = True
        elif a == "--overwrite":
            flags["overwrite"] = True
        elif a.startswith("--allow-change="):
            flags["allow_changes"] += tuple(k.strip() for k in a.split("=", 1)[1].split(",") if k.strip())
        else:
            raise ConfigError(f"unknown argument {a!r} (see --help)")
    if path is None:
        raise ConfigError("missing --config=PATH (e.g. --config=configs/quickstart.py; see --help)")
    if flags["resume"] and flags["overwrite"]:
        raise ConfigError("--resume and --overwrite exclude each other")
    config = load_config(path)
    apply_overrides(config, overrides)
    return validate(config), flags
