"""Tests for the DUMP UCB scheduler (rlx.curriculum.dump).

Hand computations are written out in comments; the randomized test compares with a
plain-Python model of the official code (lists extended then sliced to the last
`window`, n_j += batch count).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx.curriculum import dump

_update_masked = jax.jit(dump.update)


def test_scores_and_probs_hand_computed():
    s = dump.init(3, window=4)
    s = dump.update(s, jnp.array([0, 0, 1]), jnp.array([1.0, -2.0, 3.0]))
    # Windows: source 0 holds |1|, |-2| -> mu_0 = 1.5, n_0 = 2; source 1: mu_1 = 3, n_1 = 1;
    # source 2: nothing -> mu_2 = 0, n_2 = 0.  N = 3, ln(N + 1) = ln 4 = 1.3862944.
    # s_0 = 1.5 + sqrt(2 * 1.3862944 / 3) = 1.5 + 0.9613513 = 2.4613513
    # s_1 = 3   + sqrt(2 * 1.3862944 / 2) = 3   + 1.1774100 = 4.1774100
    # s_2 = 0   + sqrt(2 * 1.3862944 / 1) = 1.6651092
    np.testing.assert_allclose(dump.mean_abs_advantage(s), [1.5, 3.0, 0.0])
    np.testing.assert_array_equal(s.count_J, [2, 1, 0])
    np.testing.assert_allclose(dump.scores(s), [2.4613513, 4.1774100, 1.6651092], rtol=1e-6)
    # tau = 1: softmax([2.4613513, 4.1774100, 1.6651092]):
    #   exp(s - 4.17741) = [exp(-1.7160588), 1, exp(-2.5123008)] = [0.1797708, 1, 0.0810804]
    #   sum = 1.2608512 -> p = [0.1425805, 0.7931128, 0.0643068]
    np.testing.assert_allclose(dump.probs(s, tau=1.0), [0.1425805, 0.7931128, 0.0643068], rtol=1e-5)
    # tau = 0.1 (default): logits x10 -> [exp(-17.160588), 1, exp(-25.123008)] = [3.5257e-8, 1, 1.2281e-11]
    np.testing.assert_allclose(dump.probs(s), [3.5257496e-08, 1.0, 1.2280505e-11], rtol=1e-4)
    # c = 0: pure exploitation, scores are the means.
    np.testing.assert_allclose(dump.scores(s, c=0.0), [1.5, 3.0, 0.0])


def test_init_is_uniform():
    s = dump.init(4)
    assert s.window == 300 and s.num_sources == 4
    # No data: N is floored at 1 (official code), all scores sqrt(2 ln 2) = 1.1774100.
    np.testing.assert_allclose(dump.scores(s), [1.1774100] * 4, rtol=1e-6)
    np.testing.assert_allclose(dump.probs(s), [0.25] * 4, rtol=1e-6)


def test_window_keeps_last_responses_but_counts_all():
    s = dump.init(2, window=4)
    s = dump.update(s, jnp.zeros(6, jnp.int32), jnp.arange(1.0, 7.0))
    # Last 4 of |1..6| are 3, 4, 5, 6 -> mu = 4.5; n counts all 6.
    np.testing.assert_allclose(dump.mean_abs_advantage(s), [4.5, 0.0])
    np.testing.assert_array_equal(s.count_J, [6, 0])
    s = dump.update(s, jnp.array([0]), jnp.array([-10.0]))
    # Window now 4, 5, 6, 10 -> mu = 6.25; n = 7.
    np.testing.assert_allclose(dump.mean_abs_advantage(s), [6.25, 0.0])
    np.testing.assert_array_equal(s.count_J, [7, 0])
    # The same responses one by one (jitted update) give the same statistics.
    t = dump.init(2, window=4)
    upd = jax.jit(dump.update)
    for a in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -10.0]:
        t = upd(t, jnp.array([0]), jnp.array([a]))
    np.testing.assert_allclose(dump.mean_abs_advantage(t), dump.mean_abs_advantage(s))
    np.testing.assert_array_equal(t.count_J, s.count_J)


def test_mask_and_nonfinite_are_ignored():
    s = dump.init(2, window=8)
    s = dump.update(s, jnp.array([0, 0, 1, 1]), jnp.array([2.0, 100.0, jnp.nan, 4.0]),
                    mask=jnp.array([True, False, True, True]))
    # Source 0: only 2 (100 masked); source 1: only 4 (NaN dropped).
    np.testing.assert_allclose(dump.mean_abs_advantage(s), [2.0, 4.0])
    np.testing.assert_array_equal(s.count_J, [1, 1])


def test_bad_input():
    s = dump.init(2)
    with pytest.raises(ValueError, match=r"source_ids must be in \[0, 2\)"):
        dump.update(s, jnp.array([2]), jnp.array([1.0]))
    with pytest.raises(TypeError, match="integers"):
        dump.update(s, jnp.array([0.0]), jnp.array([1.0]))
    with pytest.raises(ValueError, match="differ"):
        dump.update(s, jnp.array([0, 1]), jnp.array([1.0]))
    with pytest.raises(ValueError, match="sizes_J"):
        dump.sample(s, jax.random.key(0), jnp.array([3]), 4)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 2), st.floats(-5, 5)), min_size=1, max_size=12),
                min_size=1, max_size=5))
def test_matches_a_model_of_the_official_code(batches):
    W, J = 5, 3
    windows, counts = [[] for _ in range(J)], [0] * J
    s = dump.init(J, window=W)
    for batch in batches:
        src = [b[0] for b in batch]
        adv = [b[1] for b in batch]
        for j in range(J):            # official: extend then keep the last `window`; n += len
            mine = [a for sj, a in zip(src, adv) if sj == j]
            windows[j] = (windows[j] + mine)[-W:]
            counts[j] += len(mine)
        pad = 12 - len(batch)         # one static shape (one compilation): pad and mask
        s = _update_masked(s, jnp.array(src + [0] * pad, jnp.int32), jnp.array(adv + [0.0] * pad, jnp.float32),
                           jnp.arange(12) < len(batch))
    N = max(1, sum(counts))
    mu = [float(np.mean(np.abs(w))) if w else 0.0 for w in windows]
    ref = [m + math.sqrt(2 * math.log(N + 1) / (n + 1)) for m, n in zip(mu, counts)]
    np.testing.assert_allclose(dump.mean_abs_advantage(s), mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(s.count_J, counts)
    np.testing.assert_allclose(dump.scores(s), ref, rtol=1e-5)


def test_sample_follows_probs_and_sizes():
    s = dump.init(3, window=4)
    s = dump.update(s, jnp.array([0, 0, 1]), jnp.array([1.0, -2.0, 3.0]))
    sizes = jnp.array([5, 7, 0])       # source 2 has no examples: never drawn
    src, ex = jax.jit(dump.sample, static_argnums=3)(s, jax.random.key(0), sizes, 20_000, 1.0, 1.0)
    assert src.shape == ex.shape == (20_000,)
    p = np.asarray(dump.probs(s, tau=1.0, sizes_J=sizes))
    # Renormalized over sources 0, 1: [0.1425805, 0.7931128] / 0.9356933 = [0.152380, 0.847620]
    np.testing.assert_allclose(p, [0.152380, 0.847620, 0.0], atol=1e-5)
    freq = np.bincount(np.asarray(src), minlength=3) / 20_000
    np.testing.assert_allclose(freq, p, atol=0.01)
    ex, src = np.asarray(ex), np.asarray(src)
    assert ex.min() >= 0 and np.all(ex < np.asarray(sizes)[src])
    counts = np.bincount(ex[src == 1], minlength=7)
    assert counts.min() > 0.8 * counts.mean()         # uniform within the source


def test_state_is_a_checkpointable_pytree(tmp_path):
    import orbax.checkpoint as ocp
    s = dump.update(dump.init(3, window=6), jnp.array([0, 2, 2]), jnp.array([0.5, -1.0, 2.0]))
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "dump", s)
    ckpt.wait_until_finished()
    restored = ckpt.restore(tmp_path / "dump", jax.tree_util.tree_map(jnp.zeros_like, s))
    assert isinstance(restored, dump.DumpState)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(s)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(dump.probs(restored), dump.probs(s))
