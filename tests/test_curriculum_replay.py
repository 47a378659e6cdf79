"""Tests for ARPO success replay (rlx.curriculum.replay), prioritized sampling and task filtering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.curriculum import filtering, prioritized, replay


def _items(P, G):
    # Trajectory (p, g) is tokens [100p + 10g + 0, +1, +2]: identifiable after a move.
    base = 100 * jnp.arange(P)[:, None, None] + 10 * jnp.arange(G)[None, :, None] + jnp.arange(3)[None, None, :]
    return {"tok": base.astype(jnp.int32)}


def test_add_keeps_newest_successes_per_task():
    st = replay.init({"tok": jnp.zeros((3,), jnp.int32)}, num_tasks=3, capacity=2)
    r = jnp.array([[0.0, 1.0, 0.9], [0.0, 0.0, 0.0], [0.8, 0.0, 0.0]])
    st = replay.add(st, jnp.array([0, 1, 0]), _items(3, 3), r, r > 0)
    # Task 0 successes in batch order: (0,1), (0,2), (2,0). Capacity 2 keeps the newest two,
    # written at ring slots rank % 2: (0,2) -> slot 1, (2,0) -> slot 0. Task 1: none.
    np.testing.assert_array_equal(st.valid_TK, [[True, True], [False, False], [False, False]])
    np.testing.assert_array_equal(st.data["tok"][0, 0], [200, 201, 202])
    np.testing.assert_array_equal(st.data["tok"][0, 1], [20, 21, 22])
    np.testing.assert_allclose(st.reward_TK[0], [0.8, 0.9])
    np.testing.assert_array_equal(st.ptr_T, [1, 0, 0])
    # Invalid rows are never stored.
    st2 = replay.add(st, jnp.array([2, 1, 1]), _items(3, 3), r, r > 0, valid_PG=jnp.zeros((3, 3), bool))
    np.testing.assert_array_equal(st2.valid_TK, st.valid_TK)


def test_inject_replaces_one_rollout_of_all_failed_groups():
    st = replay.init({"tok": jnp.zeros((3,), jnp.int32)}, num_tasks=3, capacity=2)
    r0 = jnp.array([[0.0, 1.0, 0.0]])
    st = replay.add(st, jnp.array([0]), _items(1, 3), r0, r0 > 0)        # task 0 stores (0,1): [10,11,12]
    items = {"tok": 1000 + _items(3, 3)["tok"]}
    rewards = jnp.array([[0.0, 0.0, 0.0],      # task 0, all fail, has a stored success -> inject
                         [0.0, 0.0, 0.0],      # task 1, all fail, nothing stored -> unchanged
                         [0.0, 1.0, 0.0]])     # task 0 but has a success -> unchanged
    succ = rewards > 0
    inj = jax.jit(replay.inject)
    out, new_r, new_s, replayed = inj(st, jax.random.key(0), jnp.array([0, 1, 0]), items, rewards, succ)
    assert replayed.sum() == 1 and replayed[0].sum() == 1
    g = int(jnp.argmax(replayed[0]))
    np.testing.assert_array_equal(out["tok"][0, g], [10, 11, 12])
    assert new_r[0, g] == 1.0 and bool(new_s[0, g])
    mask = ~replayed
    np.testing.assert_array_equal(np.asarray(out["tok"])[np.asarray(mask)], np.asarray(items["tok"])[np.asarray(mask)])
    np.testing.assert_array_equal(new_r[1:], rewards[1:])
    # Only valid positions are replaced.
    valid = jnp.array([[False, False, True], [True] * 3, [True] * 3])
    for seed in range(5):
        _, _, _, rep = inj(st, jax.random.key(seed), jnp.array([0, 1, 0]), items, rewards, succ, valid)
        assert rep.tolist()[0] == [False, False, True]


def test_inject_draws_among_stored_successes():
    st = replay.init({"tok": jnp.zeros((3,), jnp.int32)}, num_tasks=1, capacity=3)
    r = jnp.array([[1.0, 1.0, 0.0]])
    st = replay.add(st, jnp.array([0]), _items(1, 3), r, r > 0)           # stores [0,1,2] and [10,11,12]
    seen = set()
    inj = jax.jit(replay.inject)
    for seed in range(20):
        out, _, _, rep = inj(st, jax.random.key(seed), jnp.array([0]), {"tok": 1000 + _items(1, 3)["tok"]},
                                       jnp.zeros((1, 3)), jnp.zeros((1, 3), bool))
        seen.add(int(out["tok"][0, int(jnp.argmax(rep[0])), 0]))
    assert seen == {0, 10}                      # both stored successes, never the empty slot
    with pytest.raises(ValueError, match="rewards_PG"):
        replay.inject(st, jax.random.key(0), jnp.array([0, 0]), _items(1, 3), jnp.zeros((1, 3)), jnp.zeros((1, 3)))


def test_prioritized_weights_hand_values():
    p = jnp.array([0.0, 0.5, 1.0, 0.1])
    # sqrt(p(1-p)) + 0.05: [0.05, 0.55, 0.05, sqrt(0.09) + 0.05 = 0.35]; sum = 1.0
    np.testing.assert_allclose(prioritized.weights(p), [0.05, 0.55, 0.05, 0.35], rtol=1e-6)
    np.testing.assert_allclose(prioritized.probs(p), [0.05, 0.55, 0.05, 0.35], rtol=1e-6)
    np.testing.assert_allclose(prioritized.probs(p, mask_Q=jnp.array([True, True, False, False])),
                               [0.05 / 0.6, 0.55 / 0.6, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(prioritized.p_from_beta(jnp.array([3.0, 0.0]), jnp.array([1.0, 0.0])), [0.75, 0.5])
    # Out-of-range estimates are clipped, never NaN.
    assert np.all(np.isfinite(prioritized.weights(jnp.array([-0.1, 1.2]))))
    idx = prioritized.sample(jax.random.key(0), p, 3)
    assert len(set(np.asarray(idx).tolist())) == 3         # without replacement
    draws = prioritized.sample(jax.random.key(1), p, 20_000, replace=True)
    np.testing.assert_allclose(np.bincount(np.asarray(draws), minlength=4) / 20_000, [0.05, 0.55, 0.05, 0.35],
                               atol=0.015)


def test_task_filtering():
    succ = jnp.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]])
    valid = jnp.array([[True] * 3, [True] * 3, [True] * 3, [False] * 3])
    rate, count = filtering.success_rates(succ, valid)
    # Task 3 has no valid baseline rollout: rate 0 with count 0 -> kept (no evidence).
    np.testing.assert_allclose(rate, [1.0, 1 / 3, 0.0, 0.0])
    np.testing.assert_array_equal(count, [3, 3, 3, 0])
    keep = filtering.keep_tasks(rate, count)
    np.testing.assert_array_equal(keep, [False, True, False, True])
    np.testing.assert_array_equal(filtering.keep_tasks(rate, count, low=0.5), [False, False, False, True])
    exs = [{"i": i} for i in range(4)]
    assert filtering.filter_examples(exs, keep) == [{"i": 1}, {"i": 3}]
    with pytest.raises(ValueError, match="keep_T"):
        filtering.filter_examples(exs, keep[:2])
