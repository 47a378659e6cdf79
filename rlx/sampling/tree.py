"""Tree sampling for SPO-tree: level-by-level expansion by forking the parent's KV cache.

    tree, state = sample_tree(params, cfg, scfg, state, prompts_PL, mask_PL,
                              branching=(6, 6, 6), segment_len=30)

Level d (1-based) has n_d = b_1 ... b_d nodes per prompt. Its rows are numbered so that
row r of level d is child r % b_d of row r // b_d of level d−1 (level 0 = the P
prompts): `parent[d][r] = r // b_d`. Each node generates at most `segment_len` tokens,
except the last level, which may use what remains of `max_new_tokens`
(T − (D−1)·segment_len). A node whose segment contains a stop token is finished — a
leaf; its children's slots exist (static shapes) but are invalid (`valid` False) and
generate nothing. A last-level node without a stop token is truncated.

Forking: after level d, each row's decode state (KV cache, next-token logits,
position, key mask) is repeated b_{d+1} times; the children continue decoding from
there — the parent's tokens are never re-encoded.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from rlx.models.config import ModelConfig
from rlx.sampling.sampler import SamplerConfig, SamplerState, decode, fork, start
from rlx.types import FinishReason


@flax.struct.dataclass
class Tree:
    """Per level d (tuples of length D), rows as described in the module docstring:
      tokens [R_d, M_d] int32, mask [R_d, M_d] bool, logprobs / sampling_logprobs
      [R_d, M_d] float32, parent [R_d] int32, valid [R_d] bool, finished [R_d] bool
      (stop token in this segment), truncated [R_d] bool (last level, no stop token).
    R_d = P * b_1 ... b_d. prompt_tokens / prompt_mask [P, Lp]."""
    prompt_tokens: Any
    prompt_mask: Any
    tokens: tuple
    mask: tuple
    logprobs: tuple
    sampling_logprobs: tuple
    parent: tuple
    valid: tuple
    finished: tuple
    truncated: tuple
    branching: tuple = flax.struct.field(pytree_node=False, default=())

    @property
    def depth(self) -> int:
        return len(self.branching)


def segment_lengths(max_new_tokens: int, depth: int, segment_len: int) -> tuple[int, ...]:
    last = max_new_tokens - (depth - 1) * segment_len
    if segment_len < 1 or last < 1:
        raise ValueError(f"segment_len={segment_len} x {depth - 1} levels leaves {last} tokens of "
                         f"max_new_tokens={max_new_tokens} for the last level; need >= 1")
    return (segment_len,) * (depth - 1) + (last,)


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "branching", "segment_len"))
def _sample_tree(params, cfg: ModelConfig, scfg: SamplerConfig, branching, segment_len, key, prompts, mask):
    T = scfg.max_new_tokens
    Lp = prompts.shape[1]
    lens = segment_lengths(T, len(branching), segment_len)
    ds = start(params, cfg, prompts, mask, Lp + T)
    col = Lp
    out = {k: [] for k in ("tokens", "mask", "logprobs", "sampling_logprobs", "parent", "valid", "finished",
                           "truncated")}
    for d, (b, m) in enumerate(zip(branching, lens)):
        ds = fork(ds, b)
        R = ds.done.shape[0]
        valid = ~ds.done
        key, sub = jax.random.split(key)
        ds, toks, msk, lps, slps = decode(params, cfg, scfg, ds, sub, m, col, ds.generated + m)
        stopped = ds.finish == FinishReason.STOP
        out["tokens"].append(toks)
        out["mask"].append(msk)
        out["logprobs"].append(lps)
        out["sampling_logprobs"].append(slps)
        out["parent"].append(jnp.arange(R, dtype=jnp.int32) // b)
        out["valid"].append(valid)
        out["finished"].append(valid & stopped)
        out["truncated"].append(valid & ~stopped if d == len(branching) - 1 else jnp.zeros(R, bool))
        ds = ds.replace(done=stopped)       # budget-stopped rows continue at the next level
        col += m
    return Tree(prompts, mask.astype(bool), **{k: tuple(v) for k, v in out.items()}, branching=branching)


def sample_tree(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_PL,
                prompt_mask_PL, *, branching=(6, 6, 6), segment_len: int = 30) -> tuple[Tree, SamplerState]:
    branching = tuple(int(b) for b in branching)
    if not branching or min(branching) < 1:
        raise ValueError(f"branching must be a non-empty tuple of positive ints, got {branching}")
    segment_lengths(scfg.max_new_tokens, len(branching), segment_len)
    keys = jax.random.split(jax.random.wrap_key_data(state.rng))
    tree = _sample_tree(params, cfg, scfg, branching, int(segment_len), keys[1], prompt_tokens_PL, prompt_mask_PL)
    return tree, SamplerState(rng=jax.random.key_data(keys[0]))


def node_sequences(tree: Tree, level: int):
    """For every node of `level` (0-based), its query and response as training rows:
    query = prompt + the segments of its ancestors (left-padded, length Lp + Σ earlier
    segment lengths), response = its own segment. Returns (query_tokens, query_mask,
    response_tokens, response_mask, response_logprobs)."""
    parts_t, parts_m = [], []
    rows = jnp.arange(tree.tokens[level].shape[0])
    anc = rows
    for d in range(level - 1, -1, -1):
        anc = anc // tree.branching[d + 1]
        parts_t.insert(0, tree.tokens[d][anc])
        parts_m.insert(0, tree.mask[d][anc])
    prompt_rows = anc // tree.branching[0]
    seq = jnp.concatenate([tree.prompt_tokens[prompt_rows]] + parts_t, axis=1)
    ok = jnp.concatenate([tree.prompt_mask[prompt_rows]] + parts_m, axis=1)
    order = jnp.argsort(ok.astype(jnp.int32), axis=1, stable=True)
    return (jnp.take_along_axis(seq, order, axis=1), jnp.take_along_axis(ok, order, axis=1),
            tree.tokens[level], tree.mask[level], tree.logprobs[level])
