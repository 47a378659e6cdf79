"""The KV-cache sampler: group sampling, prefix continuation, and the shared decode loop.

    scfg = SamplerConfig(max_prompt_len=32, max_new_tokens=64, temperature=1.0, stop_ids=(eos,), pad_id=0)
    state = init_state(jax.random.key(0))
    out, state = generate(params, model_cfg, scfg, state, prompt_tokens_PL, prompt_mask_PL, group_size=8)

Each prompt is prefilled ONCE; its KV cache, next-token logits and position are then
repeated G times (row p*G+g = sample g of prompt p) and decoded together in a
`lax.while_loop` that stops as soon as every row is done (stop token or its length
budget). Per step: one token per row from the current logits, its log-prob under the
policy at temperature 1 (`logprobs`, what the trainer recomputes) and under the
distribution actually sampled (`sampling_logprobs`: temperature, top-k, top-p; 0 for
greedy), then one cached decode step. Rows that are done emit `pad_id` with mask
False (their compute is wasted, but shapes stay static).

Nothing recompiles between calls of the same shapes: the sampler config and model
config are static (hashable), while params (arguments, never closed over), prompts,
the RNG and per-row length budgets are arrays. The RNG lives in the returned state and
advances on every call.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from rlx.models.cache import (
    decode_params,
    decode_step,
    init_cache,
    prefill,
    repeat_rows,
)
from rlx.models.config import ModelConfig
from rlx.sampling.categorical import argmax, sample_categorical
from rlx.sampling.config import SampleOutput, SamplerConfig, SamplerState, split_state
from rlx.sampling.topk import filter_logits
from rlx.types import FinishReason


@flax.struct.dataclass
class DecodeState:
    """Everything the decode loop carries; forkable row-wise (`fork`)."""
    cache: Any                # {"k": Ly x [B, N, Dh, S], "v": Ly x [B, N, S, Dh]}
    key_mask: Any             # bool [B, S]: cache columns holding real tokens
    logits: Any               # float32 [B, V]: next-token logits
    position: Any             # int32 [B]: RoPE position of the next token
    done: Any                 # bool [B]
    generated: Any            # int32 [B]: tokens generated so far
    finish: Any               # int32 [B]: FinishReason


def start(params, cfg: ModelConfig, prompt_tokens_BL, prompt_mask_BL, total_len: int) -> DecodeState:
    """Prefills the prompts into a cache of `total_len` columns."""
    B, L = prompt_tokens_BL.shape
    cache = init_cache(cfg, B, total_len)
    logits, cache, pos = prefill(params, cfg, prompt_tokens_BL, prompt_mask_BL, cache)
    key_mask = jnp.concatenate([prompt_mask_BL.astype(bool), jnp.zeros((B, total_len - L), bool)], axis=1)
    return DecodeState(cache, key_mask, logits, pos, jnp.zeros((B,), bool), jnp.zeros((B,), jnp.int32),
                       jnp.full((B,), FinishReason.LENGTH, jnp.int32))


def fork(ds: DecodeState, n: int) -> DecodeState:
    """Each row becomes n consecutive rows (row r -> rows r*n .. r*n+n-1), cache included."""
    return ds if n == 1 else repeat_rows(ds, n)


def pick(scfg: SamplerConfig, logits_BV, key):
    """(token [B], policy log-prob at temperature 1 [B], sampling log-prob [B]).
    Greedy (temperature 0) takes the argmax (lowest index on ties); otherwise an exact
    draw from softmax of the filtered, tempered logits (`sample_categorical`)."""
    logp_all = jax.nn.log_softmax(logits_BV, axis=-1)
    if scfg.temperature == 0:
        tok = argmax(logits_BV)
        slp = jnp.zeros(tok.shape, jnp.float32)
    else:
        plain = scfg.temperature == 1.0 and scfg.top_k == 0 and scfg.top_p == 1.0
        z = logp_all if plain else filter_logits(logits_BV / scfg.temperature, scfg.top_k, scfg.top_p)
        tok = sample_categorical(key, z)
        zlogp = logp_all if plain else jax.nn.log_softmax(z, axis=-1)
        slp = jnp.take_along_axis(zlogp, tok[:, None], axis=-1)[:, 0]
    lp = jnp.take_along_axis(logp_all, tok[:, None], axis=-1)[:, 0]
    return tok, lp, slp


def decode(params, cfg: ModelConfig, scfg: SamplerConfig, ds: DecodeState, key, steps: int, col0: int,
           budget_B=None):
    """Runs up to `steps` decode steps from `ds`, writing token t at cache column col0 + t.

    A row stops at a stop token (FinishReason.STOP) or when its `generated` count
    reaches `budget_B` (FinishReason.LENGTH; default: no budget beyond `steps`).
    `params` may be plain or `decode_params`. Returns (DecodeState, tokens [B, steps],
    mask, logprobs, sampling_logprobs).
    """
    dp = decode_params(params, cfg)
    B = ds.logits.shape[0]
    stops = jnp.asarray(scfg.stop_ids or (-1,), jnp.int32)
    budget = jnp.full((B,), 2**30, jnp.int32) if budget_B is None else budget_B.astype(jnp.int32)
    ds = ds.replace(done=ds.done | (ds.generated >= budget))
    buf = (jnp.full((B, steps), scfg.pad_id, jnp.int32), jnp.zeros((B, steps), bool),
           jnp.zeros((B, steps), jnp.float32), jnp.zeros((B, steps), jnp.float32))

    def cond(c):
        t, ds, _, _ = c
        return (t < steps) & ~jnp.all(ds.done)

    def body(c):
        t, ds, key, (toks, msk, lps, slps) = c
        key, sub = jax.random.split(key)
        tok, lp, slp = pick(scfg, ds.logits, sub)
        live = ~ds.done
        tok = jnp.where(live, tok, scfg.pad_id)
        toks = jax.lax.dynamic_update_slice(toks, tok[:, None], (0, t))
        msk = jax.lax.dynamic_update_slice(msk, live[:, None], (0, t))
        lps = jax.lax.dynamic_update_slice(lps, jnp.where(live, lp, 0.0)[:, None], (0, t))
        slps = jax.lax.dynamic_update_slice(slps, jnp.where(live, slp, 0.0)[:, None], (0, t))
        generated = ds.generated + live.astype(jnp.int32)
        is_stop = jnp.any(tok[:, None] == stops[None, :], axis=1) & live
        finish = jnp.where(is_stop, FinishReason.STOP, ds.finish)
        done = ds.done | is_stop | (generated >= budget)
        col = col0 + t
        key_mask = jax.lax.dynamic_update_slice(ds.key_mask, live[:, None], (0, col))
        logits, cache = decode_step(dp, cfg, tok, ds.position, ds.cache, key_mask, col)
        ds = DecodeState(cache, key_mask, logits, ds.position + live.astype(jnp.int32), done, generated, finish)
        return t + 1, ds, key, (toks, msk, lps, slps)

    _, ds, _, (toks, msk, lps, slps) = jax.lax.while_loop(cond, body, (jnp.int32(0), ds, key, buf))
    return ds, toks, msk, lps, slps


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "group_size"))
def _generate(params, cfg: ModelConfig, scfg: SamplerConfig, group_size: int, key, prompt_tokens,
              prompt_mask, budget_B):
    T = scfg.max_new_tokens
    Lp = prompt_tokens.shape[1]
    ds = fork(start(params, cfg, prompt_tokens, prompt_mask, Lp + T), group_size)
    ds, toks, msk, lps, slps = decode(params, cfg, scfg, ds, key, T, Lp, budget_B)
    return SampleOutput(repeat_rows(prompt_tokens, group_size), repeat_rows(prompt_mask.astype(bool), group_size),
                        toks, msk, lps, slps, jnp.sum(msk, axis=1, dtype=jnp.int32), ds.finish)


def check_prompts(scfg: SamplerConfig, prompt_tokens, prompt_mask, *, pad: bool = True):
    """Validates `[P, Lp]` prompts and left-pads them to `scfg.max_prompt_len`."""
    if prompt_tokens.ndim != 2 or prompt_tokens.shape != prompt_mask.shape:
        raise ValueError(f"prompt_tokens / prompt_mask: expected matching [P, Lp], got "
                         f"{prompt_tokens.shape} and {prompt_mask.shape}")
    if not jnp.issubdtype(prompt_tokens.dtype, jnp.integer):
        raise TypeError(f"prompt_tokens: expected integer token ids, got dtype {prompt_tokens.dtype}")
    Lp = prompt_tokens.shape[1]
    if Lp > scfg.max_prompt_len:
        raise ValueError(f"prompt_tokens: width {Lp} exceeds SamplerConfig.max_prompt_len={scfg.max_prompt_len}")
    tokens, mask = jnp.asarray(prompt_tokens, jnp.int32), jnp.asarray(prompt_mask).astype(bool)
    if pad and Lp < scfg.max_prompt_len:
        w = ((0, 0), (scfg.max_prompt_len - Lp, 0))
        tokens, mask = jnp.pad(tokens, w, constant_values=scfg.pad_id), jnp.pad(mask, w)
    return tokens, mask


def generate(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_PLp,
             prompt_mask_PLp, group_size: int, *, budget_B=None) -> tuple[SampleOutput, SamplerState]:
    """G = `group_size` samples of each left-padded prompt; returns (SampleOutput, new state).

    Prompts narrower than `max_prompt_len` are left-padded to it (so the output's
    prompt arrays are [P*G, max_prompt_len]). `budget_B` (int [P*G], optional) caps
    each row's new tokens below `max_new_tokens` (finish reason LENGTH when reached).
    """
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: expected a positive int, got {group_size!r}")
    tokens, mask = check_prompts(scfg, prompt_tokens_PLp, prompt_mask_PLp)
    B = tokens.shape[0] * group_size
    if budget_B is None:
        budget_B = jnp.full((B,), scfg.max_new_tokens, jnp.int32)
    elif jnp.shape(budget_B) != (B,):
        raise ValueError(f"budget_B: expected shape ({B},), got {jnp.shape(budget_B)}")
    key, state = split_state(state)
    return _generate(params, cfg, scfg, group_size, key, tokens, mask, jnp.asarray(budget_B, jnp.int32)), state


@jax.jit
def make_prefixes(prompt_tokens_NL, prompt_mask_NL, completion_tokens_NT, prefix_len_N):
    """Left-padded prefixes [N, L + T] = prompt + the first `prefix_len` completion tokens.

    The real tokens are moved flush right (a stable sort on the mask), so generation
    from every prefix starts at the same cache column; positions count real tokens
    only, so a continuation from a prefix computes what the original sequence did at
    that point.
    """
    T = completion_tokens_NT.shape[1]
    seq = jnp.concatenate([prompt_tokens_NL, completion_tokens_NT], axis=1)
    ok = jnp.concatenate([prompt_mask_NL.astype(bool), jnp.arange(T)[None, :] < prefix_len_N[:, None]], axis=1)
    order = jnp.argsort(ok.astype(jnp.int32), axis=1, stable=True)      # padding first, then real tokens
    return jnp.take_along_axis(seq, order, axis=1), jnp.take_along_axis(ok, order, axis=1)


def continue_from(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_NLp,
                  prompt_mask_NLp, completion_tokens_NT, prefix_len_N, num_continuations: int,
                  ) -> tuple[SampleOutput, SamplerState]:
    """K = `num_continuations` continuations from each of N prefix states
    "prompt n + completion_tokens[n, :prefix_len[n]]" (SPO-chain Monte-Carlo values).

    Each prefix is prefilled once and its cache forked K times. The total completion
    budget stays `max_new_tokens`: a continuation from a prefix of c tokens adds at
    most T − c tokens. Output rows n*K+k; `prompt_tokens` / `prompt_mask` of the
    output are the left-padded prefixes [N*K, Lp + T] and `completion_tokens` [N*K, T]
    holds only the new tokens (the full completion is prefix tokens + these).
    Identical prefixes are the caller's business (they are sampled independently).
    """
    if not isinstance(num_continuations, int) or num_continuations < 1:
        raise ValueError(f"num_continuations: expected a positive int, got {num_continuations!r}")
    tokens, mask = check_prompts(scfg, prompt_tokens_NLp, prompt_mask_NLp)
    N, T = tokens.shape[0], scfg.max_new_tokens
    if completion_tokens_NT.shape != (N, T):
        raise ValueError(f"completion_tokens_NT: expected shape ({N}, max_new_tokens={T}), "
                         f"got {completion_tokens_NT.shape}")
    prefix_len_N = jnp.asarray(prefix_len_N, jnp.int32)
    if prefix_len_N.shape != (N,):
        raise ValueError(f"prefix_len_N: expected shape ({N},), got {prefix_len_N.shape}")
    pre, pre_mask = make_prefixes(tokens, mask, jnp.asarray(completion_tokens_NT, jnp.int32), prefix_len_N)
    budget = jnp.repeat(T - jnp.clip(prefix_len_N, 0, T), num_continuations)
    key, state = split_state(state)
    return _generate(params, cfg, scfg, num_continuations, key, pre, pre_mask, budget), state
