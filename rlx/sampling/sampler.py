"""The KV-cache sampler: group sampling, prefix continuation, and the shared decode loop.

    scfg = SamplerConfig(max_prompt_len=32, max_new_tokens=64, temperature=1.0, stop_ids=(eos,), pad_id=0)
    state = init_state(jax.random.key(0))
    out, state = generate(params, model_cfg, scfg, state, prompt_tokens_PL, prompt_mask_PL, group_size=8)

Each prompt is prefilled ONCE; its KV cache, next-token logits and position are then
repeated G times (row p*G+g = sample g of prompt p) and decoded together in a
`lax.while_loop` that stops as soon as every row is done (stop token or its length
budget).

Randomness is per row: row r of a call draws its t-th token from the uniform of
`fold_in(fold_in(call_key, r), t)`, so a row's sample depends on (call key, row id,
position) only. `SamplerConfig.rows_per_call` splits a call into chunks of whole
prompts (a bounded KV cache: rows_per_call x (Lp + T) columns), each chunk one compiled
program, with the same samples as one call (tested).

Per step: one token per row from the current logits, its log-prob under the
policy at `logprob_temperature` (`logprobs`, what the trainer recomputes) and under the
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
import numpy as np

from rlx.models.cache import (
    decode_step,
    init_cache,
    prefill,
    repeat_rows,
)
from rlx.models.config import ModelConfig
from rlx.sampling.categorical import argmax, sample_categorical
from rlx.sampling.config import SampleOutput, SamplerConfig, SamplerState, split_state
from rlx.sampling.decode_sharding import decode_scope, decode_weights, rows_sharded
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
    """(token [B], policy log-prob [B], sampling log-prob [B]); `key` is one key or a key
    per row (`sample_categorical`). The policy log-prob is the full distribution's at
    `scfg.logprob_temperature` (the trainer's pi_T), the sampling log-prob that of the
    distribution drawn from (temperature, then top-k / top-p; 0 for greedy).
    Greedy (temperature 0) takes the argmax (lowest index on ties); otherwise an exact
    draw from softmax of the filtered, tempered logits (`sample_categorical`)."""
    lt = scfg.logprob_temperature
    logp_all = jax.nn.log_softmax(logits_BV if lt == 1.0 else logits_BV / lt, axis=-1)
    if scfg.temperature == 0:
        tok = argmax(logits_BV)
        slp = jnp.zeros(tok.shape, jnp.float32)
    else:
        plain = scfg.temperature == lt and scfg.top_k == 0 and scfg.top_p == 1.0
        z = logp_all if plain else filter_logits(logits_BV / scfg.temperature, scfg.top_k, scfg.top_p)
        tok = sample_categorical(key, z)
        zlogp = logp_all if plain else jax.nn.log_softmax(z, axis=-1)
        slp = jnp.take_along_axis(zlogp, tok[:, None], axis=-1)[:, 0]
    lp = jnp.take_along_axis(logp_all, tok[:, None], axis=-1)[:, 0]
    return tok, lp, slp


def row_keys(key, row_ids_B):
    """A key per row: fold_in(key, row id)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(row_ids_B, jnp.uint32))


def emit_token(scfg: SamplerConfig, stops, t, logits_BV, keys_B, generated_B, done_B, finish_B, budget_B, buf):
    """One step of a lock-step decode loop's bookkeeping: draw each row's token number
    `generated` with fold_in(keys[row], generated), write it (pad and mask False for done
    rows) at column t of the (tokens, mask, logprobs, sampling_logprobs) buffers, and
    apply the stop tokens and the length budget. Returns (token, live, generated, done,
    finish, buffers)."""
    toks, msk, lps, slps = buf
    step_keys = jax.vmap(jax.random.fold_in)(keys_B, generated_B.astype(jnp.uint32))
    tok, lp, slp = pick(scfg, logits_BV, step_keys)
    live = ~done_B
    tok = jnp.where(live, tok, scfg.pad_id)
    toks = jax.lax.dynamic_update_slice(toks, tok[:, None], (0, t))
    msk = jax.lax.dynamic_update_slice(msk, live[:, None], (0, t))
    lps = jax.lax.dynamic_update_slice(lps, jnp.where(live, lp, 0.0)[:, None], (0, t))
    slps = jax.lax.dynamic_update_slice(slps, jnp.where(live, slp, 0.0)[:, None], (0, t))
    generated = generated_B + live.astype(jnp.int32)
    is_stop = jnp.any(tok[:, None] == stops[None, :], axis=1) & live
    finish = jnp.where(is_stop, FinishReason.STOP, finish_B)
    done = done_B | is_stop | (generated >= budget_B)
    return tok, live, generated, done, finish, (toks, msk, lps, slps)


def decode(params, cfg: ModelConfig, scfg: SamplerConfig, ds: DecodeState, keys_B, steps: int, col0: int,
           budget_B=None):
    """Runs up to `steps` decode steps from `ds`, writing token t at cache column col0 + t.

    `keys_B` holds one key per row (`row_keys`): a row's token number n (its `generated`
    count) is drawn with fold_in(keys_B[row], n). A row stops at a stop token
    (FinishReason.STOP) or when its `generated` count reaches `budget_B`
    (FinishReason.LENGTH; default: no budget beyond `steps`). `params` may be plain or
    `decode_params`. Returns (DecodeState, tokens [B, steps], mask, logprobs,
    sampling_logprobs).
    """
    dp = decode_weights(params, cfg, scfg)
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
        t, ds, keys, buf = c
        tok, live, generated, done, finish, buf = emit_token(scfg, stops, t, ds.logits, keys, ds.generated, ds.done,
                                                             ds.finish, budget, buf)
        col = col0 + t
        key_mask = jax.lax.dynamic_update_slice(ds.key_mask, live[:, None], (0, col))
        with decode_scope(scfg):
            logits, cache = decode_step(dp, cfg, tok, ds.position, ds.cache, key_mask, col)
        logits = rows_sharded(scfg, logits)
        ds = DecodeState(cache, key_mask, logits, ds.position + live.astype(jnp.int32), done, generated, finish)
        return t + 1, ds, keys, buf

    _, ds, _, (toks, msk, lps, slps) = jax.lax.while_loop(cond, body, (jnp.int32(0), ds, keys_B, buf))
    return ds, toks, msk, lps, slps


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "group_size"))
def _generate(params, cfg: ModelConfig, scfg: SamplerConfig, group_size: int, key, prompt_tokens,
              prompt_mask, budget_B, row0):
    """One compiled sampler call: G samples of each prompt; rows are numbered from `row0`
    (an int32 scalar: the call's first global row id). `scfg.kv_cache` "paged" or
    "ragged": continuous batching (`rlx.sampling.continuous`), same samples."""
    if scfg.kv_cache != "dense":
        from rlx.sampling.continuous import generate_paged
        return generate_paged(params, cfg, scfg, group_size, key, prompt_tokens, prompt_mask, budget_B, row0)
    T = scfg.max_new_tokens
    Lp = prompt_tokens.shape[1]
    B = prompt_tokens.shape[0] * group_size
    ds = fork(start(params, cfg, prompt_tokens, prompt_mask, Lp + T), group_size)
    keys = row_keys(key, row0 + jnp.arange(B, dtype=jnp.int32))
    ds, toks, msk, lps, slps = decode(params, cfg, scfg, ds, keys, T, Lp, budget_B)
    return SampleOutput(repeat_rows(prompt_tokens, group_size), repeat_rows(prompt_mask.astype(bool), group_size),
                        toks, msk, lps, slps, jnp.sum(msk, axis=1, dtype=jnp.int32), ds.finish)


def _host(x, name: str) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        raise ValueError(f"{name}: chunked sampling (rows_per_call) slices prompts on the host; pass host "
                         "(numpy) arrays and a `put` that places them on the mesh")
    return np.asarray(jax.device_get(x))


def sample_rows(params, cfg: ModelConfig, scfg: SamplerConfig, group_size: int, key, prompt_tokens,
                prompt_mask, budget_B, *, put=None, prepare=None) -> SampleOutput:
    """`_generate` over all prompts with one key, in chunks of `scfg.rows_per_call` rows
    (whole prompts; the last chunk is padded with copies of its last prompt, whose rows
    are dropped, so every chunk has one shape). `put(x)` places a host chunk on the
    devices (default: as is); `prepare(tokens, mask, budget) -> (tokens, mask)` turns a
    chunk of inputs into the prompts (e.g. `make_prefixes`). Row ids are global, so the
    result equals one call's."""
    G, R = group_size, scfg.rows_per_call
    P = prompt_tokens.shape[0]
    base = scfg.replace(rows_per_call=0)          # one compiled program whatever the chunking
    prepare = prepare or (lambda t, m, b: (t, m))
    if not R or P * G <= R:
        t, m = prepare(prompt_tokens, prompt_mask, budget_B)
        return _generate(params, cfg, base, G, key, t, m, budget_B, jnp.int32(0))
    place = put or jnp.asarray
    tokens, mask, budget = (_host(x, n) for x, n in ((prompt_tokens, "prompt_tokens"),
                                                      (prompt_mask, "prompt_mask"), (budget_B, "budget_B")))
    pc = max(1, R // G)
    outs = []
    for s0 in range(0, P, pc):
        idx = np.minimum(np.arange(s0, s0 + pc), P - 1)
        rows = (idx[:, None] * G + np.arange(G)[None, :]).reshape(-1)
        t, m = prepare(place(tokens[idx]), place(mask[idx]), place(budget[rows]))
        out = _generate(params, cfg, base, G, key, t, m, place(budget[rows]), jnp.int32(s0 * G))
        n = min(pc, P - s0) * G
        outs.append(out if n == pc * G else jax.tree.map(lambda x: x[:n], out))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)


def check_prompts(scfg: SamplerConfig, prompt_tokens, prompt_mask, *, pad: bool = True, host: bool = False):
    """Validates `[P, Lp]` prompts and left-pads them to `scfg.max_prompt_len` (as numpy
    arrays with `host`, for chunked sampling; device arrays otherwise)."""
    if prompt_tokens.ndim != 2 or prompt_tokens.shape != prompt_mask.shape:
        raise ValueError(f"prompt_tokens / prompt_mask: expected matching [P, Lp], got "
                         f"{prompt_tokens.shape} and {prompt_mask.shape}")
    if not jnp.issubdtype(prompt_tokens.dtype, jnp.integer):
        raise TypeError(f"prompt_tokens: expected integer token ids, got dtype {prompt_tokens.dtype}")
    Lp = prompt_tokens.shape[1]
    if Lp > scfg.max_prompt_len:
        raise ValueError(f"prompt_tokens: width {Lp} exceeds SamplerConfig.max_prompt_len={scfg.max_prompt_len}")
    xp = np if host else jnp
    if host:
        tokens = _host(prompt_tokens, "prompt_tokens").astype(np.int32)
        mask = _host(prompt_mask, "prompt_mask").astype(bool)
    else:
        tokens, mask = jnp.asarray(prompt_tokens, jnp.int32), jnp.asarray(prompt_mask).astype(bool)
    if pad and Lp < scfg.max_prompt_len:
        w = ((0, 0), (scfg.max_prompt_len - Lp, 0))
        tokens, mask = xp.pad(tokens, w, constant_values=scfg.pad_id), xp.pad(mask, w)
    return tokens, mask


def generate(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_PLp,
             prompt_mask_PLp, group_size: int, *, budget_B=None, put=None) -> tuple[SampleOutput, SamplerState]:
    """G = `group_size` samples of each left-padded prompt; returns (SampleOutput, new state).

    Prompts narrower than `max_prompt_len` are left-padded to it (so the output's
    prompt arrays are [P*G, max_prompt_len]). `budget_B` (int [P*G], optional) caps
    each row's new tokens below `max_new_tokens` (finish reason LENGTH when reached).
    With `scfg.rows_per_call`, prompts are sampled in chunks (`sample_rows`; `put`
    places each host chunk on the devices) with the same result.
    """
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: expected a positive int, got {group_size!r}")
    tokens, mask = check_prompts(scfg, prompt_tokens_PLp, prompt_mask_PLp, host=bool(scfg.rows_per_call))
    B = tokens.shape[0] * group_size
    if budget_B is None:
        budget_B = jnp.full((B,), scfg.max_new_tokens, jnp.int32)
    elif jnp.shape(budget_B) != (B,):
        raise ValueError(f"budget_B: expected shape ({B},), got {jnp.shape(budget_B)}")
    key, state = split_state(state)
    return sample_rows(params, cfg, scfg, group_size, key, tokens, mask, jnp.asarray(budget_B, jnp.int32),
                       put=put), state


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
                  prompt_mask_NLp, completion_tokens_NT, prefix_len_N, num_continuations: int, *, put=None,
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
    tokens, mask = check_prompts(scfg, prompt_tokens_NLp, prompt_mask_NLp, host=bool(scfg.rows_per_call))
    N, T = tokens.shape[0], scfg.max_new_tokens
    if completion_tokens_NT.shape != (N, T):
        raise ValueError(f"completion_tokens_NT: expected shape ({N}, max_new_tokens={T}), "
                         f"got {completion_tokens_NT.shape}")
    K = num_continuations
    key, state = split_state(state)
    if not scfg.rows_per_call:
        prefix_len_N = jnp.asarray(prefix_len_N, jnp.int32)
        if prefix_len_N.shape != (N,):
            raise ValueError(f"prefix_len_N: expected shape ({N},), got {prefix_len_N.shape}")
        budget = jnp.repeat(T - jnp.clip(prefix_len_N, 0, T), K)
        comp = jnp.asarray(completion_tokens_NT, jnp.int32)
        return sample_rows(params, cfg, scfg, K, key, tokens, mask, budget,
                           prepare=lambda t, m, _: make_prefixes(t, m, comp, prefix_len_N)), state
    prefix_len_N = _host(prefix_len_N, "prefix_len_N").astype(np.int32)
    if prefix_len_N.shape != (N,):
        raise ValueError(f"prefix_len_N: expected shape ({N},), got {prefix_len_N.shape}")
    # Chunks carry (completion tokens, prefix length) in the prompt arrays' place:
    # tokens [N, Lp + T] = prompt | completion, mask [N, Lp + 1] = prompt mask | length.
    comp = _host(completion_tokens_NT, "completion_tokens_NT").astype(np.int32)
    packed_t = np.concatenate([tokens, comp], axis=1)
    packed_m = np.concatenate([mask.astype(np.int32), prefix_len_N[:, None]], axis=1)
    Lp = tokens.shape[1]

    def prepare(t, m, _budget):
        return make_prefixes(t[:, :Lp], m[:, :Lp].astype(bool), t[:, Lp:], m[:, Lp])

    budget = np.repeat(T - np.clip(prefix_len_N, 0, T), K).astype(np.int32)
    return sample_rows(params, cfg, scfg, K, key, packed_t, packed_m, budget, put=put, prepare=prepare), state
