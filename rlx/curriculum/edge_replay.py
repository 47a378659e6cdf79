"""SPO-tree's edge replay buffer, with fixed-capacity arrays.

Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL
for Large Language Models"; official code github.com/AIFrameResearch/SPO,
`src/treetune/episode_generators/hybrid_episode_generator.py`: `OnPolicyReplayBuffer`
(the default `replay_buffer_type="on_policy"`) and its use in
`HybridEpisodeGenerator._run_inference`. The official policy, per iteration i:

  1. every edge of the iteration's trees that survived the zero-advantage filter is
     added, stamped with i (`add_edges`): no per-question cap at insertion;
  2. `get_edges(i)`: edges with i - i_edge >= 8 are removed (an edge is trainable in
     8 iterations: i_edge, ..., i_edge + 7); then, per question id, all remaining
     edges are taken if there are <= 32, else `random.sample(edges, 32)` (uniform
     without replacement); every taken edge is removed from the buffer; the others
     stay for later iterations. The question id is the dataset index, so edges of
     the same question drawn in different iterations share the cap.

The taken edges form the iteration's training batch, trained with the old log-probs
computed when they were added (the official code stores `actor_shifted_log_probs` in
the edge), so put everything the update needs (tokens, masks, old log-probs, the
advantage) in the edge pytree. Call order per iteration: `add` -> `expire` -> `sample`.

rlx differences (fixed shapes):
  * `capacity` slots. When an `add` overflows it, the oldest edges (smallest
    insertion iteration, ties at random) are evicted first: they are the next to
    expire anyway. The official list is unbounded. Evictions are counted in
    `state.evicted`.
  * `sample(state, n, key)` returns a fixed `[n]` batch with a validity mask. If more
    than n edges pass the per-question cap, a uniformly random n of them are taken and
    the rest stay in the buffer (the official code takes all of them).
  * Official removal of used edges compares dicts by value (identical duplicate
    edges all go); rlx removes exactly the sampled slots.

The state is a `flax.struct` pytree of arrays (Orbax-checkpointable); functions are
pure and jitted (`n`, `max_per_question`, `max_age` static).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array

MAX_AGE = 8              # official: removed when iteration - edge_iteration >= 8
MAX_PER_QUESTION = 32    # official: at most 32 edges per question per iteration


@flax.struct.dataclass
class EdgeReplayState:
    data: Any              # pytree of edges, leaves [C, ...]
    question_id: Array     # int32 [C]
    iteration: Array       # int32 [C]: iteration the edge was added in
    valid: Array           # bool  [C]: the slot holds a live edge
    evicted: Array         # int32 []: edges lost to the capacity (cumulative)
    expired: Array         # int32 []: edges removed by age (cumulative)

    @property
    def capacity(self) -> int:
        return self.valid.shape[0]


def init(capacity: int, edge_example: Any) -> EdgeReplayState:
    """An empty buffer of `capacity` slots, each shaped like `edge_example` (a pytree
    of arrays for one edge, e.g. dict(tokens=[T], mask=[T], old_logp=[T], adv=[]))."""
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"edge_replay.init: capacity must be a positive int, got {capacity!r}")
    data = jax.tree_util.tree_map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), edge_example)
    return EdgeReplayState(data=data, question_id=jnp.zeros((capacity,), jnp.int32),
                           iteration=jnp.zeros((capacity,), jnp.int32),
                           valid=jnp.zeros((capacity,), bool),
                           evicted=jnp.zeros((), jnp.int32), expired=jnp.zeros((), jnp.int32))


def size(state: EdgeReplayState) -> Array:
    """Number of live edges (int32 scalar)."""
    return jnp.sum(state.valid, dtype=jnp.int32)


def _check_edges(state: EdgeReplayState, edges, question_ids, valid) -> tuple[Array, Array]:
    q = jnp.asarray(question_ids)
    if q.ndim != 1 or not jnp.issubdtype(q.dtype, jnp.integer):
        raise ValueError(f"edge_replay.add: question_ids must be an int [E] array, got {q.dtype} {q.shape}")
    E = q.shape[0]
    s_def = jax.tree_util.tree_structure(state.data)
    e_def = jax.tree_util.tree_structure(edges)
    if s_def != e_def:
        raise ValueError(f"edge_replay.add: edges have structure {e_def}, the buffer holds {s_def}")
    for leaf, slot in zip(jax.tree_util.tree_leaves(edges), jax.tree_util.tree_leaves(state.data)):
        if jnp.shape(leaf) != (E,) + slot.shape[1:]:
            raise ValueError(f"edge_replay.add: edges leaf shape {jnp.shape(leaf)} != [E={E}] + "
                             f"{slot.shape[1:]}")
    if valid is None:
        ok = jnp.ones((E,), bool)
    else:
        ok = jnp.asarray(valid)
        if ok.shape != (E,):
            raise ValueError(f"edge_replay.add: valid has shape {ok.shape}, expected ({E},)")
        ok = ok.astype(bool)
    return q.astype(jnp.int32), ok


@jax.jit
def add(state: EdgeReplayState, edges: Any, question_ids, iteration, key: Array,
        valid=None) -> EdgeReplayState:
    """Insert the valid edges (leaves `[E, ...]`, `question_ids` int `[E]`) stamped with
    `iteration`. If stored + new exceeds the capacity, the oldest edges are evicted
    first (ties broken at random with `key`); the new ones are oldest only if the
    caller goes back in time."""
    q, ok = _check_edges(state, edges, question_ids, valid)
    C, E = state.capacity, q.shape[0]
    it = jnp.asarray(iteration, jnp.int32)
    all_ok = jnp.concatenate([state.valid, ok])
    all_it = jnp.concatenate([state.iteration, jnp.broadcast_to(it, (E,))])
    all_q = jnp.concatenate([state.question_id, q])
    u = jax.random.uniform(key, (C + E,))
    order = jnp.lexsort((u, all_it, all_ok))            # ascending: invalid, then oldest first
    kept = order[E:]                                     # the C highest-priority entries

    def merge(slot, new):
        return jnp.concatenate([slot, jnp.asarray(new).astype(slot.dtype)])[kept]

    n_ok = jnp.sum(all_ok, dtype=jnp.int32)
    return EdgeReplayState(
        data=jax.tree_util.tree_map(merge, state.data, edges),
        question_id=all_q[kept], iteration=all_it[kept], valid=all_ok[kept],
        evicted=state.evicted + jnp.maximum(n_ok - C, 0), expired=state.expired)


@functools.partial(jax.jit, static_argnames=("max_age",))
def expire(state: EdgeReplayState, iteration, *, max_age: int = MAX_AGE) -> EdgeReplayState:
    """Remove edges added `max_age` or more iterations before `iteration` (official:
    `iteration - edge['iteration'] >= 8`)."""
    if not isinstance(max_age, int) or max_age < 1:
        raise ValueError(f"edge_replay.expire: max_age must be a positive int, got {max_age!r}")
    alive = state.valid & (jnp.asarray(iteration, jnp.int32) - state.iteration < max_age)
    gone = jnp.sum(state.valid & ~alive, dtype=jnp.int32)
    return state.replace(valid=alive, expired=state.expired + gone)


@functools.partial(jax.jit, static_argnames=("n", "max_per_question"))
def sample(state: EdgeReplayState, n: int, key: Array, *, max_per_question: int = MAX_PER_QUESTION
           ) -> tuple[Any, Array, EdgeReplayState]:
    """Take this iteration's edges and remove them from the buffer.

    Per question id at most `max_per_question` edges, a uniform random subset when
    there are more (official `random.sample(edge_list, 32)`); of those, at most `n`
    (uniformly at random when more). Returns (edges with leaves `[n, ...]` in random
    order, valid bool `[n]` (invalid rows are zeros), the state without the taken edges).
    """
    C = state.capacity
    if not isinstance(n, int) or not 1 <= n <= C:
        raise ValueError(f"edge_replay.sample: n must be an int in [1, capacity={C}], got {n!r}")
    if not isinstance(max_per_question, int) or max_per_question < 1:
        raise ValueError(f"edge_replay.sample: max_per_question must be a positive int, "
                         f"got {max_per_question!r}")
    k_rank, k_pick = jax.random.split(key)
    u = jax.random.uniform(k_rank, (C,))
    order = jnp.lexsort((u, state.question_id, ~state.valid))   # valid first, by question, random
    q_s = state.question_id[order]
    ok_s = state.valid[order]
    pos = jnp.arange(C, dtype=jnp.int32)
    new = jnp.concatenate([jnp.ones((1,), bool), (q_s[1:] != q_s[:-1]) | (ok_s[1:] != ok_s[:-1])])
    start = jax.lax.cummax(jnp.where(new, pos, 0))
    eligible = jnp.zeros((C,), bool).at[order].set(ok_s & (pos - start < max_per_question))
    prio = jnp.where(eligible, jax.random.uniform(k_pick, (C,)), -1.0)
    top, idx = jax.lax.top_k(prio, n)
    picked = top >= 0

    def take(x):
        rows = x[idx]
        m = picked.reshape((n,) + (1,) * (rows.ndim - 1))
        return jnp.where(m, rows, jnp.zeros((), rows.dtype))

    taken = jnp.zeros((C,), bool).at[idx].set(picked)
    return (jax.tree_util.tree_map(take, state.data), picked,
            state.replace(valid=state.valid & ~taken))
