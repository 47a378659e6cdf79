"""Tree sampling for SPO-tree: level-by-level expansion by forking the parent's KV cache.

    tree, state = sample_tree(params, cfg, scfg, state, prompts_PL, mask_PL, branching=(6, 6, 6), segment_len=30)

Layout (the one `rlx.advantages.tree` expects). Per prompt p there are
N = 1 + n_1 + ... + n_D node slots, n_d = b_1 ... b_d, numbered level by level: node 0
is the root (the prompt, empty segment), level d occupies slots [o_d, o_d + n_d), and
child j of the level-d node with in-level index i is the level-(d+1) node with
in-level index i * b_{d+1} + j. A node's segment is the text generated for it after
its parent's path: at most M = `segment_len` tokens at levels 1..D-1, and at level D
what is left of `max_new_tokens` (T − (D−1)·M), so a root-to-leaf path never exceeds
T tokens. A node whose segment contains a stop token is `finished` — a leaf: its
children's slots exist in the arrays (static shapes) but not in the tree (`exists`
False, nothing generated). A level-D node without a stop token is `truncated`.
Unfinished segments above level D are always full (M tokens), so a node's full
completion is the plain concatenation of the segments on its path (`node_completions`).

Sampling: prefill the prompts once; for each level, fork every row's decode state b_d
times and decode at most M_d tokens from it — parents' tokens are never re-encoded. The
RNG advances per level and call. `SamplerConfig.kv_cache` picks the fork: "paged"
(`rlx.sampling.tree_paged`) copies page tables — a node points at its ancestors' pages
and copies only its parent's partly filled last page; "dense" and "ragged" repeat the
whole KV cache row (Lp + T columns per node). Same samples either way (tested); the
tree decodes every node of a level at once (`SamplerConfig.slots` does not apply).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlx.models.cache import decode_params
from rlx.models.config import ModelConfig
from rlx.models.shared_prefix import packed_logprobs
from rlx.models.transformer import padding_positions
from rlx.sampling.config import SampleOutput, SamplerConfig, SamplerState, split_state
from rlx.sampling.sampler import check_prompts, decode, fork, row_keys, start
from rlx.types import FinishReason


@flax.struct.dataclass
class Tree:
    """A batch of P sampled trees (N node slots each, M = max segment length).

      prompt_tokens      int32   [P, Lp]     left-padded prompts
      prompt_mask        bool    [P, Lp]
      tokens             int32   [P, N, M]   each node's segment (root: empty), right-padded
      mask               bool    [P, N, M]
      logprobs           float32 [P, N, M]   policy log-probs at `logprob_temperature`
      sampling_logprobs  float32 [P, N, M]   under the distribution sampled
      parent             int32   [N]         parent slot (−1 for the root)
      depth              int32   [N]         0 for the root, d for level d
      exists             bool    [P, N]      the node was generated (root: True)
      finished           bool    [P, N]      its segment ends with a stop token (a leaf)
      truncated          bool    [P, N]      level-D node without a stop token (a leaf)
      branching          static tuple (b_1, ..., b_D); segment_lens static (M_1, ..., M_D)
    """
    prompt_tokens: Any
    prompt_mask: Any
    tokens: Any
    mask: Any
    logprobs: Any
    sampling_logprobs: Any
    parent: Any
    depth: Any
    exists: Any
    finished: Any
    truncated: Any
    branching: tuple = flax.struct.field(pytree_node=False, default=())
    segment_lens: tuple = flax.struct.field(pytree_node=False, default=())

    @property
    def max_depth(self) -> int:
        return len(self.branching)

    @property
    def num_nodes(self) -> int:
        return self.tokens.shape[1]

    @property
    def leaf(self):
        """bool [P, N]: existing nodes that are finished or at the maximum depth."""
        return self.exists & (self.finished | (self.depth == self.max_depth)[None, :])


def segment_lengths(max_new_tokens: int, depth: int, segment_len: int) -> tuple[int, ...]:
    """(M, ..., M, T − (D−1)·M): the token budget of each level's segments."""
    last = max_new_tokens - (depth - 1) * segment_len
    if segment_len < 1 or last < 1:
        raise ValueError(f"segment_len: {segment_len} x {depth - 1} levels leaves {last} tokens of "
                         f"max_new_tokens={max_new_tokens} for the last level; need segment_len >= 1 and >= 1 left")
    return (segment_len,) * (depth - 1) + (last,)


@functools.cache
def tree_structure(branching: tuple[int, ...]):
    """Static numpy (parent [N], depth [N], level offsets [D+2], ancestor-or-self [N, N])."""
    sizes = [1]
    for b in branching:
        sizes.append(sizes[-1] * b)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parent, depth = [-1], [0]
    for d in range(1, len(sizes)):
        i = np.arange(sizes[d])
        parent += (offsets[d - 1] + i // branching[d - 1]).tolist()
        depth += [d] * sizes[d]
    parent, depth = np.asarray(parent, np.int32), np.asarray(depth, np.int32)
    N = parent.size
    anc = np.eye(N, dtype=bool)
    for n in range(1, N):            # parents come first, so their rows are complete
        anc[n] |= anc[parent[n]]
    return parent, depth, offsets, anc


def _dense_levels(params, cfg: ModelConfig, scfg: SamplerConfig, branching, lens, key, prompts, mask):
    """Per level: fork every row's dense decode state b_d times, decode at most M_d tokens."""
    Lp = prompts.shape[1]
    ds = start(params, cfg, prompts, mask, Lp + scfg.max_new_tokens)
    dp = decode_params(params, cfg)
    col = Lp
    levels = []
    for b, m in zip(branching, lens):
        ds = fork(ds, b)
        exists = ~ds.done                     # parent existed and did not finish
        key, sub = jax.random.split(key)
        keys = row_keys(sub, jnp.arange(ds.done.shape[0], dtype=jnp.int32))
        ds, toks, msk, lps, slps = decode(dp, cfg, scfg, ds, keys, m, col, ds.generated + m)
        stopped = ds.finish == FinishReason.STOP
        levels.append(dict(tokens=toks, mask=msk, logprobs=lps, sampling_logprobs=slps, exists=exists,
                           stopped=stopped))
        ds = ds.replace(done=stopped)         # rows stopped by the segment budget go on at the next level
        col += m
    return levels


@functools.partial(jax.jit, static_argnames=("cfg", "scfg", "branching", "segment_len"))
def _sample_tree(params, cfg: ModelConfig, scfg: SamplerConfig, branching, segment_len, key, prompts, mask):
    T = scfg.max_new_tokens
    P, Lp = prompts.shape
    lens = segment_lengths(T, len(branching), segment_len)
    M = max(lens)
    if scfg.kv_cache == "paged":
        from rlx.sampling.tree_paged import paged_levels
        raw = paged_levels(params, cfg, scfg, branching, lens, key, prompts, mask)
    else:
        raw = _dense_levels(params, cfg, scfg, branching, lens, key, prompts, mask)
    levels = []
    for d, (lv, m) in enumerate(zip(raw, lens)):
        exists, stopped = lv["exists"], lv["stopped"]
        pad = ((0, 0), (0, M - m))
        levels.append(dict(tokens=jnp.pad(lv["tokens"], pad, constant_values=scfg.pad_id),
                           mask=jnp.pad(lv["mask"], pad), logprobs=jnp.pad(lv["logprobs"], pad),
                           sampling_logprobs=jnp.pad(lv["sampling_logprobs"], pad), exists=exists,
                           finished=exists & stopped,
                           truncated=exists & ~stopped if d == len(branching) - 1 else jnp.zeros_like(exists)))
    root = dict(tokens=jnp.full((P, 1, M), scfg.pad_id, jnp.int32), mask=jnp.zeros((P, 1, M), bool),
                logprobs=jnp.zeros((P, 1, M), jnp.float32), sampling_logprobs=jnp.zeros((P, 1, M), jnp.float32),
                exists=jnp.ones((P, 1), bool), finished=jnp.zeros((P, 1), bool), truncated=jnp.zeros((P, 1), bool))
    out = {k: jnp.concatenate([root[k]] + [lv[k].reshape((P, -1) + lv[k].shape[1:]) for lv in levels], axis=1)
           for k in root}
    parent, depth, _, _ = tree_structure(branching)
    return Tree(prompts, mask, parent=jnp.asarray(parent), depth=jnp.asarray(depth), branching=branching,
                segment_lens=lens, **out)


def sample_tree(params, cfg: ModelConfig, scfg: SamplerConfig, state: SamplerState, prompt_tokens_PLp,
                prompt_mask_PLp, *, branching=(6, 6, 6), segment_len: int = 30) -> tuple[Tree, SamplerState]:
    """Samples one tree per prompt (layout in the module docstring); returns (Tree, new state).
    Prompts narrower than `max_prompt_len` are left-padded to it."""
    try:
        branching = tuple(int(b) for b in branching)
    except TypeError:
        raise ValueError(f"branching: expected a tuple of positive ints, got {branching!r}") from None
    if not branching or min(branching) < 1:
        raise ValueError(f"branching: expected a non-empty tuple of positive ints, got {branching}")
    segment_lengths(scfg.max_new_tokens, len(branching), int(segment_len))
    tokens, mask = check_prompts(scfg, prompt_tokens_PLp, prompt_mask_PLp)
    key, state = split_state(state)
    return _sample_tree(params, cfg, scfg, branching, int(segment_len), key, tokens, mask), state


def _path_slots(tree: Tree) -> list[np.ndarray]:
    """For each level k = 1..D, int [N]: the level-k node on each node's root path
    (itself at its own level), or −1 where the node is above level k."""
    parent, depth, _, _ = tree_structure(tree.branching)
    N = parent.size
    out = []
    for k in range(1, tree.max_depth + 1):
        a = np.where(depth >= k, np.arange(N), -1)
        for _ in range(tree.max_depth):
            a = np.where((a >= 0) & (depth[np.maximum(a, 0)] > k), parent[np.maximum(a, 0)], a)
        out.append(a.astype(np.int32))
    return out


def node_completions(tree: Tree):
    """(tokens [P, N, T], mask [P, N, T]): each node's full completion — the segments on
    its root path concatenated (real tokens contiguous from column 0, since unfinished
    segments above level D are full). Nodes that do not exist have an all-False mask.
    Decode these to grade a leaf's text."""
    toks, msks = [], []
    for k, slots in enumerate(_path_slots(tree)):
        m = tree.segment_lens[k]
        s = jnp.asarray(np.maximum(slots, 0))
        on = jnp.asarray(slots >= 0)[None, :, None] & tree.exists[:, :, None]
        toks.append(jnp.where(on, tree.tokens[:, s, :m], tree.tokens[:, :1, :m]))
        msks.append(on & tree.mask[:, s, :m])
    return jnp.concatenate(toks, axis=2), jnp.concatenate(msks, axis=2)


def edge_samples(tree: Tree) -> tuple[SampleOutput, jax.Array]:
    """The tree's edges as training rows (SPO-tree: query = the parent's full text,
    response = the child's segment): a `SampleOutput` with P·E rows, E = N − 1, row
    p*E + e = node e + 1 of tree p (the layout of `rlx.advantages.spo_tree`'s edge
    arrays), and `valid` bool [P, E] (the node exists).

    prompt_tokens / prompt_mask [P*E, Lp + (D−1)·M]: prompt + ancestors' segments,
    left-padded with the real tokens flush right; completion_* [P*E, M]: the segment
    and its sampler log-probs; finish_reason STOP for finished nodes, else LENGTH.
    """
    P, N, M = tree.tokens.shape
    E = N - 1
    parent, depth, _, _ = tree_structure(tree.branching)
    parts_t, parts_m = [tree.prompt_tokens[:, None, :].repeat(E, 1)], [tree.prompt_mask[:, None, :].repeat(E, 1)]
    for k, slots in enumerate(_path_slots(tree)[:-1]):           # strict ancestors live at levels < D
        m = tree.segment_lens[k]
        anc = np.where(depth[1:] > k + 1, slots[1:], -1)
        s = jnp.asarray(np.maximum(anc, 0))
        on = jnp.asarray(anc >= 0)[None, :, None]
        parts_t.append(jnp.where(on, tree.tokens[:, s, :m], 0))
        parts_m.append(on & tree.mask[:, s, :m])
    seq = jnp.concatenate(parts_t, axis=2).reshape(P * E, -1)
    ok = jnp.concatenate(parts_m, axis=2).reshape(P * E, -1)
    order = jnp.argsort(ok.astype(jnp.int32), axis=1, stable=True)
    valid = tree.exists[:, 1:]
    cmask = (tree.mask[:, 1:] & valid[:, :, None]).reshape(P * E, M)
    flat = lambda x: x[:, 1:].reshape((P * E,) + x.shape[2:])  # noqa: E731
    finish = jnp.where(flat(tree.finished), FinishReason.STOP, FinishReason.LENGTH).astype(jnp.int32)
    out = SampleOutput(jnp.take_along_axis(seq, order, axis=1), jnp.take_along_axis(ok, order, axis=1),
                       flat(tree.tokens), cmask, jnp.where(cmask, flat(tree.logprobs), 0.0),
                       jnp.where(cmask, flat(tree.sampling_logprobs), 0.0),
                       jnp.sum(cmask, axis=1, dtype=jnp.int32), finish)
    return out, valid


def tree_logprobs(params, cfg: ModelConfig, tree: Tree, *, temperature: float = 1.0, vocab_chunk: int | None = None):
    """Policy log-probs [P, N, M] of every node's segment in ONE packed forward per tree:
    row p = [prompt, then every level's segments in slot order (level d: n_d x M_d
    columns)], each segment attending causally to itself and to its ancestors' segments
    and the prompt, with restarted positions (Prefix Grouper generalized to trees).
    Equals the sampler's `tree.logprobs` and `completion_logprobs` on `edge_samples`
    (tested). The explicit [L, L] mask (L = Lp + sum_d n_d M_d) suits small trees."""
    P, N, M = tree.tokens.shape
    Lp = tree.prompt_tokens.shape[1]
    parent, depth, offsets, anc = tree_structure(tree.branching)
    lens = np.array([0] + list(tree.segment_lens))[depth]                     # [N] segment width per node
    start_col = Lp + np.concatenate([[0], np.cumsum(lens)[:-1]])              # [N] first column of each segment
    seg = np.concatenate([np.zeros(Lp, np.int64)] + [np.full(lens[n], n) for n in range(1, N)])
    L = seg.size
    col = np.arange(L)
    j = col - np.where(seg > 0, start_col[seg], 0)                            # index inside the segment
    # Predictor of each token: the previous token of its segment, or the last token of
    # its parent's segment (the last prompt column for level-1 nodes and the prompt).
    par = np.maximum(parent[seg], 0)
    pred = np.where(j > 0, col - 1, np.where(par > 0, start_col[par] + lens[par] - 1, Lp - 1))
    # Position of segment token j: real prompt tokens + the full segments above it + j.
    path_off = np.concatenate([[0], np.cumsum(tree.segment_lens)])[np.maximum(depth - 1, 0)]
    levels = range(1, tree.max_depth + 1)
    lvl = lambda x, d: x[:, offsets[d]:offsets[d + 1], :tree.segment_lens[d - 1]].reshape(P, -1)  # noqa: E731
    real_nodes = tree.mask & tree.exists[:, :, None]
    tok = jnp.concatenate([tree.prompt_tokens] + [lvl(tree.tokens, d) for d in levels], axis=1)
    real = jnp.concatenate([tree.prompt_mask] + [lvl(real_nodes, d) for d in levels], axis=1)
    n_prompt = jnp.sum(tree.prompt_mask, axis=1, dtype=jnp.int32)
    seg_pos = jnp.asarray((path_off[seg] + j)[Lp:], jnp.int32)
    positions = jnp.concatenate([padding_positions(tree.prompt_mask), n_prompt[:, None] + seg_pos[None, :]], axis=1)
    allowed = jnp.asarray((col[None, :] <= col[:, None]) & anc[seg[:, None], seg[None, :]])
    lp = packed_logprobs(params, cfg, tok, positions, allowed[None] & real[:, None, :],
                         jnp.broadcast_to(jnp.asarray(pred, jnp.int32)[None], (P, L)), real.at[:, :Lp].set(False),
                         temperature=temperature, vocab_chunk=vocab_chunk)
    out = [jnp.zeros((P, 1, M), jnp.float32)]
    for d in levels:
        m = tree.segment_lens[d - 1]
        a, n_d = start_col[offsets[d]], offsets[d + 1] - offsets[d]
        out.append(jnp.pad(lp[:, a:a + n_d * m].reshape(P, n_d, m), ((0, 0), (0, 0), (0, M - m))))
    return jnp.concatenate(out, axis=1)
