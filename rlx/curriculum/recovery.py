"""Recent sample recovery: a fixed-capacity FIFO of kept groups that carries overflow forward.

Paper: "Confucius3-Math" (Recent Sample Recovery; the abstract's reading): with DAPO's
dynamic sampling, generation rounds usually produce more valid (reward-varying) groups
than the batch needs; instead of discarding the overflow, keep it and use it first in
the next batch. rlx's reading as a data structure:

  * `push(buf, groups, keep_P)` appends the kept groups of a generation round, in order;
  * `pop(buf, n)` takes the n OLDEST groups (so carried-over groups are trained on at
    the very next step, while they are still nearly on-policy) and shifts the rest to
    the front;
  * when a push exceeds the capacity, the oldest groups are dropped (they are the most
    off-policy) and counted in `dropped`. Size the capacity as batch groups + groups per
    generation round so that nothing is dropped in steady state.

A group is any pytree of arrays with a leading group axis `[P, ...]` (tokens `[P, G, T]`,
rewards `[P, G]`, ...). State is a `flax.struct` pytree of fixed-shape arrays
(checkpointable); `push` and `pop` (with a static n) are pure and jit-compatible.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array


@flax.struct.dataclass
class GroupBuffer:
    data: Any            # pytree, every leaf [Cap, ...]; rows 0..size-1 are live, oldest first
    size: Array          # int32 scalar
    dropped: Array       # int32 scalar: groups dropped for capacity, in total

    @property
    def capacity(self) -> int:
        return jax.tree_util.tree_leaves(self.data)[0].shape[0]


def init(group_example: Any, capacity: int) -> GroupBuffer:
    """An empty buffer for groups shaped like `group_example` (a pytree of ONE group's arrays)."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    data = jax.tree_util.tree_map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), group_example)
    if not jax.tree_util.tree_leaves(data):
        raise ValueError("group_example: need at least one array leaf")
    return GroupBuffer(data=data, size=jnp.zeros((), jnp.int32), dropped=jnp.zeros((), jnp.int32))


def _leading(tree: Any, name: str) -> int:
    sizes = {jnp.shape(x)[0] for x in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"{name}: every leaf needs the same leading (group) size, got {sorted(sizes)}")
    return sizes.pop()


def push(buf: GroupBuffer, groups: Any, keep_P=None) -> GroupBuffer:
    """Append the groups with keep_P True (all if None), in order; drop the oldest on overflow."""
    cap = buf.capacity
    P = _leading(groups, "groups")
    keep = jnp.ones((P,), bool) if keep_P is None else jnp.asarray(keep_P).astype(bool)
    if keep.shape != (P,):
        raise ValueError(f"keep_P: expected shape ({P},), got {keep.shape}")
    if jax.tree_util.tree_structure(groups) != jax.tree_util.tree_structure(buf.data):
        raise ValueError("groups: pytree structure differs from the buffer's")
    live = jnp.arange(cap) < buf.size
    valid = jnp.concatenate([live, keep])
    order = jnp.argsort(~valid, stable=True)               # live rows, then kept rows, each in order
    total = buf.size + jnp.sum(keep, dtype=jnp.int32)
    start = jnp.maximum(total - cap, 0)                    # overflow: skip the oldest
    idx = order[jnp.clip(start + jnp.arange(cap), 0, cap + P - 1)]

    def merge(old, new):
        if old.shape[1:] != new.shape[1:]:
            raise ValueError(f"groups: leaf shape {new.shape[1:]} per group, buffer holds {old.shape[1:]}")
        return jnp.concatenate([old, new.astype(old.dtype)])[idx]

    data = jax.tree_util.tree_map(merge, buf.data, groups)
    return GroupBuffer(data=data, size=jnp.minimum(total, cap).astype(jnp.int32),
                       dropped=buf.dropped + start.astype(jnp.int32))


def pop(buf: GroupBuffer, n: int) -> tuple[Any, Array, GroupBuffer]:
    """Take the n oldest groups: (groups [n, ...], valid [n] bool, buffer with the rest)."""
    cap = buf.capacity
    if not 0 < n <= cap:
        raise ValueError(f"n must be in [1, capacity={cap}], got {n}")
    out = jax.tree_util.tree_map(lambda x: x[:n], buf.data)
    valid = jnp.arange(n) < buf.size
    k = jnp.minimum(buf.size, n)
    shift = jnp.clip(jnp.arange(cap) + k, 0, cap - 1)
    rest = jax.tree_util.tree_map(lambda x: x[shift], buf.data)
    return out, valid, GroupBuffer(data=rest, size=(buf.size - k).astype(jnp.int32), dropped=buf.dropped)
