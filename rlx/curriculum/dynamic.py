"""DAPO dynamic sampling: keep groups whose rewards vary, oversample until the batch is full.

Paper: "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (Yu et al.
2025); official code verl `recipe/dapo/dapo_ray_trainer.py`:

  * a group (the G responses of one prompt) is kept iff the standard deviation of its
    metric (the reward, by default) is > 0 — a group of all-correct or all-wrong
    responses has zero GRPO advantage and only dilutes the batch. The official code
    also keeps a group with a single response (`std > 0 or len == 1`);
    `keep_singletons=True` reproduces that.
  * generation rounds repeat, accumulating kept groups, until the training batch is
    full; the official code then truncates to the batch size and DISCARDS the
    overflow, and raises an error after `max_num_gen_batches` rounds. `fill_batch`
    leaves the overflow in the buffer and, when `max_rounds` is reached, returns a
    partial batch with a validity mask; the engine (`rlx.train.kinds.groups`) then
    discards the overflow (official) or carries it into the next batch (recent sample
    recovery, rlx/curriculum/recovery.py), and skips the update of a partial batch
    (or trains on it) rather than stopping the run.

`group_keep_mask` is pure and jit-compatible. "std > 0" is computed exactly, as
max − min > 0 over the group's valid samples. For the usual 0/1 (or any integer)
rewards this is the official test; for equal non-integer rewards np.std can return a
rounding-level positive value (np.std([0.1] * 3) ≈ 1.4e-17) and the official code would
keep such a zero-advantage group — rlx drops it, deliberately.
`fill_batch` is the host-side driver loop that calls the engine's generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlx.curriculum import recovery

Array = jax.Array


def group_keep_mask(rewards_PG, valid_PG=None, *, keep_singletons: bool = True) -> Array:
    """Bool `[P]`: the group's valid rewards are not all equal (or it has exactly one valid sample)."""
    r = jnp.asarray(rewards_PG, jnp.float32)
    if r.ndim != 2:
        raise ValueError(f"rewards_PG: expected [P, G], got shape {r.shape}")
    valid = jnp.ones(r.shape, bool) if valid_PG is None else jnp.asarray(valid_PG).astype(bool)
    if valid.shape != r.shape:
        raise ValueError(f"valid_PG shape {valid.shape} != rewards_PG shape {r.shape}")
    hi = jnp.max(jnp.where(valid, r, -jnp.inf), axis=1)
    lo = jnp.min(jnp.where(valid, r, jnp.inf), axis=1)
    n = jnp.sum(valid, axis=1)
    varies = (n >= 2) & (hi > lo)
    return varies | ((n == 1) & keep_singletons)


# The driver's buffer operations, compiled once per shape: called eagerly, every jnp
# operation inside them would be dispatched (and, for new shapes, compiled) on its own.
_push = jax.jit(recovery.push)
_pop = jax.jit(recovery.pop, static_argnums=1)
_keep = jax.jit(group_keep_mask, static_argnames=("keep_singletons",))


def fill_batch(generate_round: Callable[[int], tuple[Any, Any, Any]], buffer: recovery.GroupBuffer,
               batch_groups: int, *, max_rounds: int, keep_singletons: bool = True,
               ) -> tuple[Any, Array, recovery.GroupBuffer, dict[str, float]]:
    """Oversample until `batch_groups` kept groups are available, then pop them.

    generate_round(round_index) -> (groups, rewards_PG, valid_PG or None): one generation
    round of the engine; `groups` is a pytree with leading axis P, shaped like the
    buffer's groups (it should contain the rewards the trainer needs).
    Groups already in `buffer` (the previous batch's overflow) count first. Returns
    (batch pytree [batch_groups, ...], valid [batch_groups] bool, buffer holding the
    overflow, metrics). Fewer than batch_groups valid rows only if max_rounds ran out.
    """
    if batch_groups < 1 or max_rounds < 0:
        raise ValueError(f"need batch_groups >= 1 and max_rounds >= 0, got {batch_groups}, {max_rounds}")
    if batch_groups > buffer.capacity:
        raise ValueError(f"batch_groups {batch_groups} > buffer capacity {buffer.capacity}")
    carried = int(buffer.size)
    rounds = generated = kept = 0
    while int(buffer.size) < batch_groups and rounds < max_rounds:
        groups, rewards_PG, valid_PG = generate_round(rounds)
        keep = _keep(rewards_PG, valid_PG, keep_singletons=keep_singletons)
        buffer = _push(buffer, groups, keep)
        rounds += 1
        generated += int(keep.shape[0])
        kept += int(np.sum(np.asarray(keep)))
    batch, valid, buffer = _pop(buffer, batch_groups)
    metrics = {"dynamic/rounds": float(rounds), "dynamic/generated_groups": float(generated),
               "dynamic/kept_groups": float(kept), "dynamic/keep_rate": kept / max(generated, 1),
               "dynamic/carried_in": float(carried), "dynamic/carried_out": float(buffer.size),
               "dynamic/filled": float(bool(np.all(np.asarray(valid)))),
               "dynamic/dropped_total": float(buffer.dropped)}
    return batch, valid, buffer, metrics
