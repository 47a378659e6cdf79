"""Tests for rlx.curriculum.edge_replay (SPO-tree's on-policy edge replay buffer).

Hand cases follow the official `OnPolicyReplayBuffer` (AIFrameResearch/SPO,
hybrid_episode_generator.py): all edges are added with their iteration; `get_edges(i)`
drops edges with i - i_edge >= 8, takes per question at most 32 (a uniform random
subset when more) and removes the taken edges. Each edge here carries its own id
(`uid`) and question id in its data so that every slot can be traced.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.curriculum import edge_replay as er

EXAMPLE = {"uid": jnp.zeros((), jnp.int32), "q": jnp.zeros((), jnp.int32),
           "tokens": jnp.zeros((3,), jnp.int32), "adv": jnp.zeros((), jnp.float32)}


def edges(uids, qids, adv=None):
    uids = np.asarray(uids, np.int32)
    n = len(uids)
    return ({"uid": jnp.asarray(uids), "q": jnp.asarray(qids, jnp.int32),
             "tokens": jnp.asarray(np.stack([uids] * 3, axis=1)),
             "adv": jnp.asarray(np.arange(n) + 0.5 if adv is None else adv, jnp.float32)},
            jnp.asarray(qids, jnp.int32))


def live_uids(state):
    return sorted(np.asarray(state.data["uid"])[np.asarray(state.valid)].tolist())


def key(i):
    return jax.random.PRNGKey(i)


def test_add_sample_per_question_cap_and_remove_used():
    # Question 0 has edges 1, 2, 3; question 1 has edges 4, 5 (iteration 0).
    s = er.init(8, EXAMPLE)
    s = er.add(s, *edges([1, 2, 3, 4, 5], [0, 0, 0, 1, 1]), 0, key(0))
    assert live_uids(s) == [1, 2, 3, 4, 5] and int(er.size(s)) == 5
    # Cap 2 per question: 2 of {1, 2, 3} and both of {4, 5}; 4 taken, removed.
    got, valid, s = er.sample(s, 6, key(1), max_per_question=2)
    taken = sorted(np.asarray(got["uid"])[np.asarray(valid)].tolist())
    assert int(valid.sum()) == 4 and {4, 5} <= set(taken)
    assert len(set(taken) & {1, 2, 3}) == 2
    left = live_uids(s)
    assert len(left) == 1 and left[0] in {1, 2, 3} and left[0] not in taken
    # Taken rows carry their own data (tokens = uid, question id consistent); invalid rows are 0.
    g = {k: np.asarray(v) for k, v in got.items()}
    v = np.asarray(valid)
    np.testing.assert_array_equal(g["tokens"][v], np.stack([g["uid"][v]] * 3, axis=1))
    np.testing.assert_array_equal(g["q"][v], np.where(g["uid"][v] <= 3, 0, 1))
    assert np.all(g["uid"][~v] == 0) and np.all(g["tokens"][~v] == 0)
    # Next sample: the one left; then nothing.
    got, valid, s = er.sample(s, 6, key(2), max_per_question=2)
    assert np.asarray(got["uid"])[np.asarray(valid)].tolist() == left
    got, valid, s = er.sample(s, 6, key(3), max_per_question=2)
    assert not bool(valid.any()) and int(er.size(s)) == 0


def test_official_default_cap_is_32_and_subset_is_uniform():
    # 40 edges of one question: 32 taken (official cap), 8 stay.
    s = er.add(er.init(48, EXAMPLE), *edges(np.arange(40) + 1, [7] * 40), 0, key(0))
    got, valid, s2 = er.sample(s, 48, key(1))
    assert int(valid.sum()) == 32 and int(er.size(s2)) == 8
    # Uniform subset: over many keys each edge is taken with probability 32/40 = 0.8.
    def taken_mask(k):
        _, _, st = er.sample(s, 48, k)
        return ~st.valid & s.valid
    masks = jax.vmap(taken_mask)(jax.random.split(key(5), 400))
    freq = np.asarray(masks)[:, np.asarray(s.valid)].mean(axis=0)
    np.testing.assert_allclose(freq, 0.8, atol=0.1)


def test_n_smaller_than_eligible_leaves_the_rest():
    s = er.add(er.init(8, EXAMPLE), *edges([1, 2, 3, 4, 5], [0, 1, 2, 3, 4]), 3, key(0))
    got, valid, s = er.sample(s, 2, key(1))
    taken = np.asarray(got["uid"])[np.asarray(valid)].tolist()
    assert len(taken) == 2
    assert sorted(taken + live_uids(s)) == [1, 2, 3, 4, 5]


def test_expire_after_8_iterations():
    # Edges added at iteration 0 (uids 1, 2) and 3 (uid 3). Official: removed when
    # iteration - edge_iteration >= 8, so the iteration-0 edges live through iteration 7.
    s = er.add(er.init(6, EXAMPLE), *edges([1, 2], [0, 0]), 0, key(0))
    s = er.add(s, *edges([3], [1]), 3, key(1))
    s7 = er.expire(s, 7)
    assert live_uids(s7) == [1, 2, 3] and int(s7.expired) == 0
    s8 = er.expire(s7, 8)
    assert live_uids(s8) == [3] and int(s8.expired) == 2
    s11 = er.expire(s8, 11)
    assert live_uids(s11) == [] and int(s11.expired) == 3
    assert live_uids(er.expire(s, 4, max_age=2)) == [3]     # 4 - 3 = 1 < 2, 4 - 0 >= 2


def test_full_buffer_evicts_oldest_and_skips_invalid():
    # Capacity 4: uids 1, 2, 3 at iteration 0, then 4, 5, 6 at iteration 1 (uid 7 invalid):
    # 6 live edges for 4 slots -> 2 of the iteration-0 edges are evicted.
    s = er.add(er.init(4, EXAMPLE), *edges([1, 2, 3], [0, 0, 0]), 0, key(0))
    new, q = edges([4, 5, 6, 7], [1, 1, 1, 1])
    s = er.add(s, new, q, 1, key(1), valid=jnp.array([True, True, True, False]))
    left = live_uids(s)
    assert len(left) == 4 and {4, 5, 6} <= set(left) and 7 not in left
    assert int(s.evicted) == 2
    np.testing.assert_array_equal(np.asarray(s.iteration)[np.asarray(s.valid)].min(), 0)
    # Incoming batch larger than the capacity: the newest survive (ties at random).
    s = er.add(s, *edges([10, 11, 12, 13, 14], [2] * 5), 2, key(2))
    assert set(live_uids(s)) <= {10, 11, 12, 13, 14} and len(live_uids(s)) == 4
    assert int(s.evicted) == 2 + 5


def test_jit_equals_no_jit_and_checkpoint(tmp_path):
    import orbax.checkpoint as ocp

    e1, q1 = edges([1, 2, 3, 4], [0, 0, 1, 2])
    e2, q2 = edges([5, 6, 7], [2, 2, 2])

    def run(add, expire, sample):
        s = add(er.init(6, EXAMPLE), e1, q1, 0, key(0))
        s = expire(add(s, e2, q2, 1, key(1)), 8)
        return sample(s, 3, key(2), max_per_question=1)

    jitted = run(er.add, er.expire, er.sample)
    # the same Python functions without their jit (op by op; jax.random stays compiled)
    eager = run(er.add.__wrapped__, er.expire.__wrapped__, er.sample.__wrapped__)
    for a, b in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(eager)):
        np.testing.assert_array_equal(a, b)
    state = jitted[2]
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "edges", state)
    ckpt.wait_until_finished()
    restored = ckpt.restore(tmp_path / "edges", jax.tree_util.tree_map(jnp.zeros_like, state))
    assert isinstance(restored, er.EdgeReplayState)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_errors_name_the_argument():
    s = er.init(4, EXAMPLE)
    with pytest.raises(ValueError, match="capacity"):
        er.init(0, EXAMPLE)
    e, q = edges([1, 2], [0, 0])
    with pytest.raises(ValueError, match="question_ids"):
        er.add(s, e, jnp.zeros((2,), jnp.float32), 0, key(0))
    with pytest.raises(ValueError, match="edges leaf shape"):
        er.add(s, e, q[:1], 0, key(0))
    with pytest.raises(ValueError, match="valid"):
        er.add(s, e, q, 0, key(0), valid=jnp.ones((3,), bool))
    with pytest.raises(ValueError, match="structure"):
        er.add(s, {"uid": e["uid"]}, q, 0, key(0))
    with pytest.raises(ValueError, match="n must be"):
        er.sample(s, 5, key(0))
    with pytest.raises(ValueError, match="max_age"):
        er.expire(s, 3, max_age=0)
