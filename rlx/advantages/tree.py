"""SPO-tree: fixed-arity segment trees, value backup and edge advantages.

Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL
for Large Language Models" (SPO-tree, for long chain-of-thought); official code
github.com/AIFrameResearch/SPO: tree construction in
`src/treetune/inference_strategies/hybrid_inference_strategy.py`
(`HybridInferenceStrategy._construct_tree`), edges in
`src/treetune/episode_generators/tree_episode_generator.py`
(`TreeEpisodeUtils.extract_edges_from_tree`), their use in
`src/treetune/episode_generators/hybrid_episode_generator.py`.

Tree layout (branching (b_1, ..., b_D), official 6-6-6, D = max_depth = 3). Nodes are
numbered level by level: node 0 is the root (the prompt), level d holds
n_d = b_1 * ... * b_d nodes, and child j of the level-d node with in-level index i is
the level-(d+1) node with in-level index i * b_{d+1} + j. A node's *segment* is the
text its parent generated for it: at most M tokens for levels 1..D-1 (official configs:
M = 30 RhoMath-1B GSM8K, 100 Qwen2.5-1.5B MATH, 600 Qwen-1B MATH), unlimited (up to
the context) at level D.

What a tree sampler must provide, per prompt p and node n >= 1 (`[P, N]` arrays,
N = 1 + n_1 + ... + n_D; slot 0 and the slots of nodes that do not exist are ignored):
  finished  bool   the segment ended with a stop token (official `finish_reason !=
                   "length"`): the node is a leaf and is not expanded; a truncated
                   node at level < D is expanded into b_{d+1} children.
  rewards   float  the reward of a leaf: a finished node's full text graded by the
                   reward function; a level-D node is a leaf whether or not it finished
                   (official: graded as is, so a truncated answer without a final
                   answer gets the unfinished penalty 0).
Edges: edge e (e = 0..N-2) is node e + 1 with its parent; as a training sample its
query is the parent's full text and its response the child's segment.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlx import ops
from rlx.advantages.core import as_float, as_mask, count_metric, jitted, register
from rlx.advantages.segment import EPS, THRESHOLD, probability_masked_advantages

Array = jax.Array

TREE_MODES = ("rloo", "grpo")


class TreeLayout(NamedTuple):
    """Static description of a fixed-arity tree (numpy, computed once per branching)."""
    branching: tuple[int, ...]
    level_sizes: tuple[int, ...]     # n_0 = 1, n_1, ..., n_D
    offsets: tuple[int, ...]         # first node index of each level (+ N at the end)
    parent: np.ndarray               # int32 [N], -1 for the root
    depth: np.ndarray                # int32 [N]

    @property
    def num_nodes(self) -> int:
        return self.offsets[-1]

    @property
    def num_edges(self) -> int:
        return self.offsets[-1] - 1


def tree_layout(branching: tuple[int, ...]) -> TreeLayout:
    """Node numbering, parent index and depth of the tree with these branching factors."""
    if (not isinstance(branching, (tuple, list)) or len(branching) < 1
            or not all(isinstance(b, (int, np.integer)) and b >= 1 for b in branching)):
        raise ValueError(f"branching must be a non-empty tuple of positive ints, got {branching!r}")
    return _layout(tuple(int(b) for b in branching))


@functools.cache
def _layout(branching: tuple[int, ...]) -> TreeLayout:
    sizes = [1]
    for b in branching:
        sizes.append(sizes[-1] * int(b))
    offsets = tuple(int(x) for x in np.concatenate([[0], np.cumsum(sizes)]))
    parent = [-1]
    depth = [0]
    for d in range(1, len(sizes)):
        i = np.arange(sizes[d])
        parent.extend((offsets[d - 1] + i // branching[d - 1]).tolist())
        depth.extend([d] * sizes[d])
    return TreeLayout(branching, tuple(sizes), offsets,
                      np.asarray(parent, np.int32), np.asarray(depth, np.int32))


def _check_tree(name: str, layout: TreeLayout, rewards, finished) -> tuple[Array, Array]:
    r = as_float(name, "rewards", rewards)
    N = layout.num_nodes
    if r.ndim != 2 or r.shape[1] != N:
        raise ValueError(f"{name}: rewards must be [P, N={N}] for branching {layout.branching}, "
                         f"got shape {r.shape}")
    return r, as_mask(name, "finished", finished, r.shape)


def _levels(x_PN: Array, layout: TreeLayout) -> list[Array]:
    o = layout.offsets
    return [x_PN[:, o[d]:o[d + 1]] for d in range(len(layout.level_sizes))]


def _node_mask_levels(finished_PN: Array, layout: TreeLayout) -> list[Array]:
    fin = _levels(finished_PN, layout)
    P = finished_PN.shape[0]
    exists = [jnp.ones((P, 1), bool)]
    for d, b in enumerate(layout.branching):
        expand = exists[d] & (~fin[d] if d > 0 else True)    # the root is always expanded
        exists.append(jnp.repeat(expand, b, axis=1))
    return exists


@jitted("branching")
def tree_node_mask(finished, *, branching: tuple[int, ...]) -> Array:
    """bool [P, N]: the node exists (the root; or its parent exists, is below level D
    and did not finish). Slots under a finished node are masked."""
    layout = tree_layout(branching)
    fin = as_mask("tree_node_mask", "finished", finished, (jnp.shape(finished)[0], layout.num_nodes))
    return jnp.concatenate(_node_mask_levels(fin, layout), axis=1)


class _Backup(NamedTuple):
    values: list[Array]      # per level [P, n_d]
    stds: list[Array]        # per level d < D: std of the children of each node [P, n_d]
    exists: list[Array]
    leaf: list[Array]


def _backup(r: Array, fin: Array, layout: TreeLayout, ddof: int) -> _Backup:
    D = len(layout.branching)
    exists = _node_mask_levels(fin, layout)
    rl, fl = _levels(r, layout), _levels(fin, layout)
    leaf = [exists[d] & ((fl[d] if d > 0 else False) | (d == D)) for d in range(D + 1)]
    values: list = [None] * (D + 1)
    stds: list = [None] * D
    values[D] = jnp.where(exists[D], rl[D], 0)
    for d in range(D - 1, -1, -1):
        P, n = exists[d].shape
        b = layout.branching[d]
        ch = values[d + 1].reshape(P, n, b)
        ok = exists[d + 1].reshape(P, n, b)
        hi = jnp.max(jnp.where(ok, ch, -jnp.inf), axis=2)
        lo = jnp.min(jnp.where(ok, ch, jnp.inf), axis=2)
        const = (hi <= lo) & jnp.any(ok, axis=2)   # equal children: the mean is their value (guard)
        mean = jnp.where(const, hi, ops.masked_mean(ch, ok, axis=2))
        std = jnp.where(const, 0, ops.masked_std(ch, ok, ddof=ddof, axis=2))
        values[d] = jnp.where(leaf[d], rl[d], jnp.where(exists[d], mean, 0))
        stds[d] = jnp.where(exists[d] & ~leaf[d], std, 0)
    return _Backup(values, stds, exists, leaf)


@jitted("branching")
def tree_values(rewards, finished, *, branching: tuple[int, ...]) -> tuple[Array, Array, Array]:
    """Value backup: V(leaf) = its reward; V(node) = mean of its children's V.

    Official `_construct_tree`: `node["reward"] = np.mean(child_rewards)` over all
    children (an expanded node has all b children). Returns (values, node_mask, leaf),
    each [P, N]; values are 0 on nodes that do not exist.
    """
    layout = tree_layout(branching)
    r, fin = _check_tree("tree_values", layout, rewards, finished)
    bk = _backup(r, fin, layout, ddof=0)
    return (jnp.concatenate(bk.values, axis=1), jnp.concatenate(bk.exists, axis=1),
            jnp.concatenate(bk.leaf, axis=1))


class TreeAdvantages(NamedTuple):
    """spo_tree output. Edge e is node e + 1 with its parent."""
    edge_advantages: Array    # float [P, N-1] (0 on dropped edges)
    edge_valid: Array         # bool  [P, N-1]: the child exists and its advantage is nonzero
    values: Array             # float [P, N]
    node_mask: Array          # bool  [P, N]


@register()
@jitted("branching", "mode", "ddof")
def spo_tree(rewards, finished, *, branching: tuple[int, ...] = (6, 6, 6), mode: str = "rloo",
             eps: float = EPS, ddof: int = 0) -> tuple[TreeAdvantages, dict]:
    """SPO-tree edge advantages.

    Paper: "Segment Policy Optimization" (SPO-tree); official
    `TreeEpisodeUtils.extract_edges_from_tree`. With V from `tree_values`:

        "rloo" (official default `adv_method`):  A(edge) = V(child) - V(parent)
        "grpo":  A(edge) = (V(child) - V(parent)) / (std(siblings) + eps)

    V(parent) is the mean of the siblings' values, so "grpo" is the group-normalized
    advantage of the sibling group; std is the official `np.std` of the children's
    rewards (population, ddof 0), eps 1e-8. An edge is dropped when its advantage is 0
    (official `only_adv_greater_than_zero=True` keeps an edge iff A + (BoK(V_child) -
    BoK(V_parent)) != 0, BoK(v) = 1 - (1 - v)^4; BoK is increasing on [0, 1] so that is
    A != 0). The same A goes to every token of the child's segment
    (`edge_token_advantages`).

    rlx guards (not in the official code): when all children of a node have exactly
    the same value, the node's value is that value and the std is 0 exactly, so float
    rounding of the mean cannot turn an all-equal group into nonzero (and, for "grpo",
    huge) advantages; an edge with a non-finite advantage is dropped and counted.
    The official code drops edges whose segment text is empty (a sampler matter:
    mark them invalid before training).

    Args: rewards float [P, N], finished bool [P, N] (see the module docstring),
    branching static (default 6-6-6), mode "rloo" | "grpo", eps, ddof (0 = official).
    Returns (TreeAdvantages, metrics): `edges` (valid edges), `zero_advantage_edges`
    (existing edges dropped for A = 0), `nonfinite_edges`, `leaves`, `root_value` (mean V(root)).
    """
    name = "spo_tree"
    if mode not in TREE_MODES:
        raise ValueError(f"{name}: mode must be one of {TREE_MODES}, got {mode!r}")
    if ddof not in (0, 1):
        raise ValueError(f"{name}: ddof must be 0 or 1, got {ddof!r}")
    layout = tree_layout(branching)
    r, fin = _check_tree(name, layout, rewards, finished)
    bk = _backup(r, fin, layout, ddof=ddof)
    adv_levels = []
    for d, b in enumerate(layout.branching):
        diff = bk.values[d + 1] - jnp.repeat(bk.values[d], b, axis=1)
        if mode == "grpo":
            diff = diff / (jnp.repeat(bk.stds[d], b, axis=1) + eps)
        adv_levels.append(diff)
    adv = jnp.concatenate(adv_levels, axis=1)
    exists = jnp.concatenate(bk.exists[1:], axis=1)
    finite = jnp.isfinite(adv)
    valid = exists & finite & (adv != 0)
    values = jnp.concatenate(bk.values, axis=1)
    metrics = {
        "edges": count_metric(valid),
        "zero_advantage_edges": count_metric(exists & finite & (adv == 0)),
        "nonfinite_edges": count_metric(exists & ~finite),
        "leaves": count_metric(jnp.concatenate(bk.leaf, axis=1)),
        "root_value": jnp.mean(values[:, 0]),
    }
    out = TreeAdvantages(jnp.where(valid, adv, 0).astype(r.dtype), valid, values,
                         jnp.concatenate(bk.exists, axis=1))
    return out, metrics


@jitted("threshold", "whiten")
def edge_token_advantages(advantages, mask, old_logp, *, valid=None, threshold: float = THRESHOLD,
                          whiten: bool = True, eps: float = EPS) -> tuple[Array, dict]:
    """Token advantages of edge samples: each row is one edge (query = parent text,
    response = child segment), its scalar advantage on every token, then SPO's
    probability mask and whitening (`probability_masked_advantages`: 0 where p_old >=
    0.9, whitening over the other valid tokens, unbiased var, eps 1e-8).

    advantages: [B] (one per row) or [P, E] (row p * E + e = edge e of tree p, the
    `spo_tree` layout); valid: same shape (e.g. `edge_valid`), invalid rows get 0 and
    stay out of the statistics (a dropped edge is not a sample). mask / old_logp:
    [B, T] (the child segment's tokens and their old log-probs at the sampling
    temperature). Official: the trainer whitens each micro-batch of sampled edges
    (after the replay buffer), so call this on the batch actually trained on.
    Returns (advantages [B, T], metrics {"prob_masked_tokens"}).
    """
    name = "edge_token_advantages"
    a = as_float(name, "advantages", advantages)
    if a.ndim not in (1, 2):
        raise ValueError(f"{name}: advantages must be [B] or [P, E], got shape {a.shape}")
    ok = jnp.ones(a.shape, bool) if valid is None else as_mask(name, "valid", valid, a.shape)
    logp = as_float(name, "old_logp", old_logp)
    B = a.size
    if logp.ndim != 2 or logp.shape[0] != B:
        raise ValueError(f"{name}: old_logp must be [B={B}, T] (one row per edge), got shape {logp.shape}")
    tok = as_mask(name, "mask", mask, logp.shape) & ok.reshape(B, 1)
    a_B = jnp.where(ok, a, 0).reshape(B, 1)
    adv_BT = jnp.broadcast_to(a_B, logp.shape)
    out, keep = probability_masked_advantages(adv_BT, tok, logp, threshold=threshold, whiten=whiten,
                                              eps=eps)
    return out.astype(a.dtype), {"prob_masked_tokens": count_metric(tok & ~keep)}
