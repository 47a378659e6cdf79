"""The KV-cache sampler: group sampling, prefix continuation, and the shared decode loop.

    scfg = SamplerConfig(max_prompt_len=32, max_new_tokens=64, temperature=1.0, stop_ids=(eos,), pad_id=0)
    state = init_state(jax.random.key(0))
    out, state = generate(params, model_cfg, scfg, state, prompt_tokens_PL, prompt_mask_PL, group_size=8)

Each prompt is prefilled ONCE; its KV cache, next-token logits and position are then
repeated G times (row p*G+g = sample g of prompt p) and decoded together in a
`lax.while_loop` that stops when every row is done (stop token or its length budget).
Per step: one token per row from the current logits, its log-prob under the policy at
temperature 1 (`logprobs`, what the trainer recomputes) and under the distribution
actually sampled (`sampling_logprobs`: temperature, top-k, top-p; 0 for greedy), then
one cached decode step. Rows that are done emit `pad_id` with mask False.

The sampler config is static (hashable); params, prompts, the RNG and per-row budgets
are arguments, so nothing recompiles between calls of the same shapes. The RNG lives in
the returned state and advances on every call.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from rlx.models.cache import decode_step, init_cache, prefill, repeat_rows
from rlx.models.config import ModelConfig
from rlx.sampling.filters import filter_logits
from rlx.types import FinishReason


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """max_prompt_len: prompts are padded/truncated to this by the caller (the engine);
    max_new_tokens: the completion budget T; temperature 0 = greedy; top_k 0 = off;
    top_p 1.0 = off; stop_ids: tokens that end a completion (kept in it); pad_id: filler."""
    max_prompt_len: int
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        if self.max_prompt_len < 1:
            raise ValueError(f"SamplerConfig.max_prompt_len: must be >= 1, got {self.max_prompt_len}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplerConfig.max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplerConfig.temperature: must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"SamplerConfig.top_k: must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplerConfig.top_p: must be in (0, 1], got {self.top_p}")
        object.__setattr__(self, "stop_ids", tuple(int(s) for s in self.stop_ids))


@flax.struct.dataclass
class SamplerState:
    rng: Any     # uint32 [2] raw key data (checkpointable)


def init_state(key: jax.Array) -> SamplerState:
    return SamplerState(rng=jax.random.key_data(key))


@flax.struct.dataclass
class SampleOutput:
    """Fields map one-to-one onto `rlx.types.Rollout` (B = P*G rows)."""
    prompt_tokens: Any        # int32 [B, Lp]
    prompt_mask: Any          # bool [B, Lp]
    completion_tokens: Any    # int32 [B, T]
    completion_mask: Any      # bool [B, T] (stop token included)
    logprobs: Any             # float32 [B, T] policy at temperature 1
    sampling_logprobs: Any    # float32 [B, T] sampled distribution
    lengths: Any              # int32 [B]
    finish_reason: Any        # int32 [B] FinishReason


@flax.struct.dataclass
class DecodeState:
    """Everything the decode loop carries; forkable row-wise (`repeat_rows`)."""
    cache: Any                # {"k", "v"} [Ly, B, S, N, Dh]
    key_mask: Any             # bool [B, S]
    logits: Any               # float32 [B, V]: next-token logits
    position: Any             # int32 [B]: position of the next token
    done: Any                 # bool [B]
    generated: Any            # int32 [B]: tokens generated so far
    finish: Any               # int32 [B]


def start(params, cfg: ModelConfig, prompt_tokens_BL, prompt_mask_BL, total_len: int) -> DecodeState:
    """Prefill prompts into a cache of `total_len` columns."""
    B, L = prompt_tokens_BL.shape
    cache = init_cache(cfg, B, total_len)
    logits, cache, pos = prefill(params, cfg, prompt_tokens_BL, prompt_mask_BL, cache)
    key_mask = jnp.concatenate([prompt_mask_BL.astype(bool), jnp.zeros((B, total_len - L), bool)], axis=1)
    zeros = jnp.zeros((B,), jnp.int32)
    return DecodeState(cache, key_mask, logits, pos, jnp.zeros((B,), bool), zeros,
                       jnp.full((B,), FinishReason.LENGTH, jnp.int32))


def fork(ds: DecodeState, n: int) -> DecodeState:
    """Each row becomes n consecutive rows (the cache's batch axis is axis 1)."""
    cache = jax.tree.map(lambda x: jnp.repeat(x, n, axis=1), ds.cache)
    rest = repeat_rows(ds.replace(cache=None), n)
    return rest.replace(cache=cache)


def pick(scfg: SamplerConfig, logits_BV, key):
    """(token [B], policy log-prob at T=1 [B], sampling log-prob [B])."""
    logp_all = jax.nn.log_softmax(logits_BV, axis=-1)
    if scfg.temperature == 0:
        tok = jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
        slp = jnp.zeros(tok.shape, jnp.float32)
    else:
        z = filter_logits(logits_BV / scfg.temperature, scfg.top_k, scfg.top_p)
        tok = jax.random.categorical(key, z, axis=-1).astype(jnp.int32)
        slp = jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), tok[:, None], axis=-1)[:, 0]
    lp = jnp.take_along_axis(logp_all, tok[:, None], axis=-1)[:, 0]
    return tok, lp, slp


def decode(params, cfg: ModelConfig, scfg: SamplerConfig, ds: DecodeState, key, steps: int, col0: int,
           budget_B=None):
    """Runs up to `steps` decode steps from `ds`, writing tokens at columns col0 + t.

    A row stops at a stop token (FinishReason.STOP) or when its `generated` count
    reaches `budget_B` (default: no per-row budget beyond `steps`). Returns
    (DecodeState, tokens [B, steps], mask, logprobs, sampling_logprobs).
    """
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
        toks = toks.at[:, t].set(tok)
        msk = msk.at[:, t].set(live)
        lps = lps.at[:, t].set(jnp.where(live, lp, 0.0))
        slps = slps.at[:, t].set(jnp.where(live, slp, 0.0))
        generated = ds.generated + live.astype(jnp.int32)
        is_stop = jnp.any(tok[:, None] == stops[None, :], axis=1) & live
        finish = jnp.where(is_stop, FinishReason.STOP, ds.finish)
        done = ds.done | is_stop | (generated >= budget)
        col = col0 + t
        key_mask = jax.lax.dynamic_update_slice(ds.key_mask, live[:, None], (0, col))
        logits, cache = decode_step(params, cfg, tok, ds.position, ds.cache, key_mask, col)
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
    rep = lambda x: jnp.repeat(x, group_size, axis=0)  # noqa: E731
    return SampleOutput(rep(prompt_tokens), rep(prompt_mask.astype(bool)), toks, msk, lps, slps,
                        jnp.sum(msk, axis=1, dtype=jnp.int32), ds.finish)


def _check_prompts(prompt_tokens, prompt_mask):
    if prompt_tokens.ndim != 2 or prompt_tokens.shape != prompt_mask.shape:
        raise ValueError(f"prompt_tokens / prompt_mask: expected matching [P, Lp], got "
                         f"{prompt_tokens.shape} and {prompt_mask.shape}")


def generate(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_PL,
             prompt_mask_PL, group_size: int, *, budget_B=None) -> tuple[SampleOutput, SamplerState]:
    """G samples per left-padded prompt. `budget_B` (int [P*G], optional) caps each
    row's new tokens below `max_new_tokens` (finish reason LENGTH when reached)."""
    _check_prompts(prompt_tokens_PL, prompt_mask_PL)
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    keys = jax.random.split(jax.random.wrap_key_data(state.rng))
    B = prompt_tokens_PL.shape[0] * group_size
    budget = jnp.full((B,), scfg.max_new_tokens, jnp.int32) if budget_B is None else jnp.asarray(budget_B)
    out = _generate(params, cfg, scfg, group_size, keys[1], prompt_tokens_PL, prompt_mask_PL, budget)
    return out, SamplerState(rng=jax.random.key_data(keys[0]))


@jax.jit
def make_prefixes(prompt_tokens_BL, prompt_mask_BL, completion_tokens_BT, prefix_len_B):
    """Left-padded prefixes [B, L + T] = prompt + the first `prefix_len` completion tokens.

    The real tokens are shifted flush right, so generation from every prefix starts at
    the same cache column; positions count real tokens only, so a continuation from a
    prefix computes exactly what the original sequence did at that point.
    """
    B, L = prompt_tokens_BL.shape
    T = completion_tokens_BT.shape[1]
    seq = jnp.concatenate([prompt_tokens_BL, completion_tokens_BT], axis=1)
    ok = jnp.concatenate([prompt_mask_BL.astype(bool), jnp.arange(T)[None, :] < prefix_len_B[:, None]], axis=1)
    # Stable sort: padding (False) first, then the real tokens in their original order.
    order = jnp.argsort(ok.astype(jnp.int32), axis=1, stable=True)
    return jnp.take_along_axis(seq, order, axis=1), jnp.take_along_axis(ok, order, axis=1)


def continue_from(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_NL,
                  prompt_mask_NL, completion_tokens_NT, prefix_len_N, num_continuations: int,
                  ) -> tuple[SampleOutput, SamplerState]:
    """K continuations from each of N prefix states "prompt + completion[:prefix_len]".

    The total completion budget stays `max_new_tokens`: a continuation from a prefix of
    c tokens may add at most T − c tokens. Output rows n*K+k; `prompt_tokens` of the
    output are the left-padded prefixes (length L + T).
    """
    _check_prompts(prompt_tokens_NL, prompt_mask_NL)
    T = scfg.max_new_tokens
    pre, pre_mask = make_prefixes(prompt_tokens_NL, prompt_mask_NL, completion_tokens_NT,
                                  jnp.asarray(prefix_len_N, jnp.int32))
    budget = jnp.repeat(T - jnp.asarray(prefix_len_N, jnp.int32), num_continuations)
    return generate(params, cfg, scfg, state, pre, pre_mask, num_continuations, budget_B=budget)
