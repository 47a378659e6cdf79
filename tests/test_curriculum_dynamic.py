"""Tests for DAPO dynamic sampling (rlx.curriculum.dynamic) and recent sample recovery (recovery)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.curriculum import dynamic, recovery


def test_group_keep_mask_hand_cases():
    r = jnp.array([[0.0, 1.0, 0.0],     # varies -> keep
                   [1.0, 1.0, 1.0],     # all correct -> drop
                   [0.0, 0.0, 0.0],     # all wrong -> drop
                   [0.1, 0.1, 0.1],     # equal non-integers: float std ~1e-17, still dropped
                   [0.5, 0.5, 0.7]])    # varies -> keep
    np.testing.assert_array_equal(dynamic.group_keep_mask(r), [True, False, False, False, True])
    valid = jnp.array([[True, True, False], [True, False, False], [False] * 3, [True] * 3, [True, True, False]])
    # Row 0: valid (0, 1) vary; row 1: one valid sample (kept like DAPO's len == 1); row 2: none;
    # row 4: valid (0.5, 0.5) equal -> drop.
    np.testing.assert_array_equal(dynamic.group_keep_mask(r, valid), [True, True, False, False, False])
    np.testing.assert_array_equal(dynamic.group_keep_mask(r, valid, keep_singletons=False),
                                  [True, False, False, False, False])
    np.testing.assert_array_equal(jax.jit(dynamic.group_keep_mask)(r, valid), dynamic.group_keep_mask(r, valid))
    with pytest.raises(ValueError, match=r"\[P, G\]"):
        dynamic.group_keep_mask(jnp.zeros(3))


def _groups(ids):
    ids = jnp.asarray(ids, jnp.int32)
    return {"id": ids, "x": jnp.stack([ids, -ids], axis=1).astype(jnp.float32)}


def test_recovery_push_pop_fifo():
    buf = recovery.init({"id": jnp.zeros((), jnp.int32), "x": jnp.zeros((2,))}, capacity=4)
    buf = recovery.push(buf, _groups([1, 2, 3]), jnp.array([True, False, True]))
    assert int(buf.size) == 2
    np.testing.assert_array_equal(buf.data["id"][:2], [1, 3])
    out, valid, buf = recovery.pop(buf, 1)
    np.testing.assert_array_equal(out["id"], [1])
    np.testing.assert_array_equal(out["x"], [[1.0, -1.0]])
    assert valid.tolist() == [True] and int(buf.size) == 1
    buf = jax.jit(recovery.push)(buf, _groups([4, 5, 6]), jnp.array([True, True, True]))
    np.testing.assert_array_equal(buf.data["id"][: int(buf.size)], [3, 4, 5, 6])
    # Overflow: pushing 7, 8 into a full buffer of 4 drops the two oldest (3, 4).
    buf = recovery.push(buf, _groups([7, 8]))
    np.testing.assert_array_equal(buf.data["id"], [5, 6, 7, 8])
    assert int(buf.dropped) == 2
    out, valid, buf = jax.jit(recovery.pop, static_argnums=1)(buf, 3)
    np.testing.assert_array_equal(out["id"], [5, 6, 7])
    out, valid, buf = recovery.pop(buf, 3)
    assert out["id"][0] == 8 and valid.tolist() == [True, False, False] and int(buf.size) == 0
    with pytest.raises(ValueError, match="keep_P"):
        recovery.push(buf, _groups([1, 2]), jnp.array([True]))
    with pytest.raises(ValueError, match="leading"):
        recovery.push(buf, {"id": jnp.zeros(2, jnp.int32), "x": jnp.zeros((3, 2))})


def test_fill_batch_oversamples_and_carries_overflow():
    # Each round: 4 groups, ids 10*k + (0..3); groups 0 and 2 vary, 1 and 3 are constant.
    rewards = jnp.array([[0, 1], [1, 1], [1, 0], [0, 0]], jnp.float32)
    calls = []

    def gen(k):
        calls.append(k)
        g = _groups(10 * len(calls) + jnp.arange(4))
        return {**g, "r": rewards}, rewards, None

    example = {"id": jnp.zeros((), jnp.int32), "x": jnp.zeros((2,)), "r": jnp.zeros((2,))}
    buf = recovery.init(example, capacity=8)
    # Batch of 3 groups: round 1 keeps 10, 12; round 2 keeps 20, 22 -> batch 10, 12, 20; 22 carried.
    batch, valid, buf, m = dynamic.fill_batch(gen, buf, 3, max_rounds=10)
    np.testing.assert_array_equal(batch["id"], [10, 12, 20])
    assert valid.all() and m["dynamic/rounds"] == 2 and m["dynamic/kept_groups"] == 4
    assert m["dynamic/keep_rate"] == 0.5 and m["dynamic/carried_out"] == 1 and m["dynamic/filled"] == 1
    # Next batch starts with the carried group 22 (recent sample recovery), then 30, 32.
    batch, valid, buf, m = dynamic.fill_batch(gen, buf, 3, max_rounds=10)
    np.testing.assert_array_equal(batch["id"], [22, 30, 32])
    assert m["dynamic/carried_in"] == 1 and m["dynamic/rounds"] == 1 and int(buf.size) == 0
    # max_rounds exhausted: a partial batch with its validity mask.
    batch, valid, buf, m = dynamic.fill_batch(gen, buf, 3, max_rounds=1)
    assert valid.tolist() == [True, True, False] and m["dynamic/filled"] == 0
    with pytest.raises(ValueError, match="capacity"):
        dynamic.fill_batch(gen, buf, 9, max_rounds=1)
