"""ARPO-style replay of successful trajectories.

Paper: "ARPO: End-to-End Policy Optimization for GUI Agents with Experience Replay"
(Lu et al. 2025; the abstract's reading): GRPO plus a replay buffer that keeps
successful trajectories per task; when all G rollouts of a task fail (a group with
zero advantage), one of them is replaced by a stored success of the same task, so
the group carries a learning signal.

rlx's reading, with fixed-capacity arrays:
  * state: for each of T tasks, a ring of K slots holding a trajectory pytree (leaves
    `[T, K, ...]`), its reward and a validity flag; `add` writes each successful, valid
    rollout of the batch into its task's ring (the newest K survive, in batch order).
  * `inject`: for every group with no valid success whose task has at least one stored
    success, one stored success (uniform over the task's valid slots) replaces one
    rollout of the group (uniform over the group's valid positions). The replaced rows
    are returned as a mask `replayed_PG`: they were sampled by an older policy, so the
    engine must recompute their old log-probs (and any importance weights) before the
    update.
  * Call `inject` before `add` for a batch (or after: a group without success adds
    nothing for its own task in that batch).
Pure and jit-compatible; the state is a `flax.struct` pytree (checkpointable).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array


@flax.struct.dataclass
class ReplayState:
    data: Any          # pytree, leaves [T, K, ...]
    reward_TK: Array   # float32
    valid_TK: Array    # bool
    ptr_T: Array       # int32: next slot per task

    @property
    def num_tasks(self) -> int:
        return self.valid_TK.shape[0]

    @property
    def capacity(self) -> int:
        return self.valid_TK.shape[1]


def init(trajectory_example: Any, num_tasks: int, capacity: int) -> ReplayState:
    """Empty buffers of `capacity` slots for each of `num_tasks` tasks, shaped like one trajectory."""
    if num_tasks < 1 or capacity < 1:
        raise ValueError(f"num_tasks and capacity must be >= 1, got {num_tasks}, {capacity}")
    data = jax.tree_util.tree_map(
        lambda x: jnp.zeros((num_tasks, capacity) + jnp.shape(x), jnp.asarray(x).dtype), trajectory_example)
    return ReplayState(data=data, reward_TK=jnp.zeros((num_tasks, capacity), jnp.float32),
                       valid_TK=jnp.zeros((num_tasks, capacity), bool),
                       ptr_T=jnp.zeros((num_tasks,), jnp.int32))


def _check(state: ReplayState, task_ids_P, items_PG, rewards_PG, success_PG, valid_PG):
    task = jnp.asarray(task_ids_P)
    if task.ndim != 1 or not jnp.issubdtype(task.dtype, jnp.integer):
        raise ValueError(f"task_ids_P: expected an int [P] array, got {task.dtype} {task.shape}")
    r = jnp.asarray(rewards_PG, jnp.float32)
    P = task.shape[0]
    if r.ndim != 2 or r.shape[0] != P:
        raise ValueError(f"rewards_PG: expected [P={P}, G], got {r.shape}")
    succ = jnp.asarray(success_PG).astype(bool)
    valid = jnp.ones(r.shape, bool) if valid_PG is None else jnp.asarray(valid_PG).astype(bool)
    if succ.shape != r.shape or valid.shape != r.shape:
        raise ValueError(f"success_PG {succ.shape} / valid_PG {valid.shape} must match rewards_PG {r.shape}")
    for leaf, slot in zip(jax.tree_util.tree_leaves(items_PG), jax.tree_util.tree_leaves(state.data)):
        if leaf.shape[:2] != r.shape or leaf.shape[2:] != slot.shape[2:]:
            raise ValueError(f"items_PG: leaf shape {leaf.shape} != [P, G] + {slot.shape[2:]}")
    return jnp.clip(task.astype(jnp.int32), 0, state.num_tasks - 1), r, succ, valid


def add(state: ReplayState, task_ids_P, items_PG, rewards_PG, success_PG, valid_PG=None) -> ReplayState:
    """Store every valid successful rollout in its task's ring (newest `capacity` kept)."""
    task, r, succ, valid = _check(state, task_ids_P, items_PG, rewards_PG, success_PG, valid_PG)
    T, K = state.valid_TK.shape
    P, G = r.shape
    task_B = jnp.repeat(task, G)
    store_B = (succ & valid).reshape(-1)
    onehot_BT = (task_B[:, None] == jnp.arange(T)[None, :]) & store_B[:, None]
    cum_BT = jnp.cumsum(onehot_BT.astype(jnp.int32), axis=0)
    new_T = cum_BT[-1]
    rank_B = jnp.take_along_axis(cum_BT, task_B[:, None], axis=1)[:, 0] - 1
    keep_B = store_B & (new_T[task_B] - rank_B <= K)
    row_B = jnp.where(keep_B, task_B, T)                     # T: out of bounds -> dropped
    col_B = (state.ptr_T[task_B] + rank_B) % K

    def write(buf, item):
        flat = item.reshape((P * G,) + item.shape[2:]).astype(buf.dtype)
        return buf.at[row_B, col_B].set(flat, mode="drop")

    return ReplayState(data=jax.tree_util.tree_map(write, state.data, items_PG),
                       reward_TK=state.reward_TK.at[row_B, col_B].set(r.reshape(-1), mode="drop"),
                       valid_TK=state.valid_TK.at[row_B, col_B].set(True, mode="drop"),
                       ptr_T=(state.ptr_T + new_T) % K)


def inject(state: ReplayState, key: Array, task_ids_P, items_PG, rewards_PG, success_PG, valid_PG=None,
           ) -> tuple[Any, Array, Array, Array]:
    """Replace one rollout of each all-failed group by a stored success of its task.

    Returns (items_PG, rewards_PG, success_PG, replayed_PG) with the replacements made;
    `replayed_PG` marks the replaced rows (at most one per group).
    """
    task, r, succ, valid = _check(state, task_ids_P, items_PG, rewards_PG, success_PG, valid_PG)
    P, G = r.shape
    stored_PK = state.valid_TK[task]
    need_P = ~jnp.any(succ & valid, axis=1) & jnp.any(stored_PK, axis=1) & jnp.any(valid, axis=1)
    k_slot, k_pos = jax.random.split(key)
    slot_P = jax.random.categorical(k_slot, jnp.where(stored_PK, 0.0, -jnp.inf), axis=1)
    slot_P = jnp.where(need_P, slot_P, 0)
    pos_P = jax.random.categorical(k_pos, jnp.where(valid, 0.0, -jnp.inf), axis=1)
    replayed_PG = need_P[:, None] & (jnp.arange(G)[None, :] == pos_P[:, None])

    def put(buf, item):
        stored = buf[task, slot_P]                               # [P, ...]
        m = replayed_PG.reshape(replayed_PG.shape + (1,) * (item.ndim - 2))
        return jnp.where(m, stored[:, None].astype(item.dtype), item)

    items = jax.tree_util.tree_map(put, state.data, items_PG)
    rewards = jnp.where(replayed_PG, state.reward_TK[task, slot_P][:, None], r)
    return items, rewards, succ | replayed_PG, replayed_PG
