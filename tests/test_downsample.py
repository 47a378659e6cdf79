"""Tests for rlx.curriculum.downsample (D3S sample- and token-level down-sampling).

References: brute force over all k-subsets (itertools.combinations) for the max-variance
selection, a numpy sort for the top-|A|·H tokens, and hand values for the schedule.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlx.curriculum.downsample import (
    keep_ratio_schedule,
    max_variance_subset,
    sample_downsample,
    sample_keep_count,
    token_downsample,
)


def brute_max_var(values, k):
    return max(np.var(np.asarray(c, np.float64)) for c in itertools.combinations(values, k))


_select = jax.jit(max_variance_subset)  # k traced: one compilation for every k


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), G=st.integers(2, 7), k=st.integers(1, 7),
       p_valid=st.sampled_from([0.5, 1.0]))
def test_max_variance_subset_equals_brute_force(seed, G, k, p_valid):
    rng = np.random.default_rng(seed)
    adv = rng.normal(size=(3, G)).astype(np.float32)
    if seed % 3 == 0:
        adv = np.round(adv)  # ties
    valid = rng.random((3, G)) < p_valid
    keep = np.asarray(_select(adv, k, valid))
    for p in range(3):
        vals = adv[p][valid[p]]
        kk = min(k, vals.size)
        assert keep[p].sum() == kk and not np.any(keep[p] & ~valid[p])
        if kk:
            np.testing.assert_allclose(np.var(adv[p][keep[p]].astype(np.float64)), brute_max_var(vals, kk),
                                       rtol=1e-5, atol=1e-6)


def test_max_variance_subset_hand_case():
    # A = [0, 1, 2, 10], k = 2: best pair {0, 10} (var 25); k = 3: {0, 1, 10} var 20.22 beats
    # {0, 2, 10} (var 18.67) and {1, 2, 10} (var 16.22) -> j = 2 smallest + 1 largest
    adv = jnp.array([[2.0, 0.0, 10.0, 1.0]])
    np.testing.assert_array_equal(max_variance_subset(adv, 2), [[False, True, True, False]])
    np.testing.assert_array_equal(max_variance_subset(adv, 3), [[False, True, True, True]])
    np.testing.assert_array_equal(max_variance_subset(adv, 4), [[True] * 4])
    np.testing.assert_array_equal(max_variance_subset(adv, 0), [[False] * 4])
    with pytest.raises(ValueError, match="adv_PG"):
        max_variance_subset(jnp.zeros(4), 2)


def test_sample_downsample_ratio_and_traced_schedule():
    assert int(sample_keep_count(0.5, 8)) == 4 and int(sample_keep_count(0.3, 8)) == 3
    assert int(sample_keep_count(0.0, 8)) == 1 and int(sample_keep_count(1.0, 8)) == 8
    adv = jnp.array([[0.0, 1.0, 2.0, 10.0, -3.0, 0.5, 0.2, 0.1]])
    f = jax.jit(lambda r: sample_downsample(adv, keep_ratio=r))
    # ratio 0.25 -> k = 2: the extreme pair {-3, 10}
    np.testing.assert_array_equal(f(0.25), [[False, False, False, True, True, False, False, False]])
    assert int(jnp.sum(f(0.75))) == 6 and int(jnp.sum(f(1.0))) == 8


def np_top_tokens(adv, ent, mask, ratio, scope):
    score = np.abs(adv.astype(np.float64)) * ent
    keep = np.zeros_like(mask)
    groups = [np.arange(mask.size)] if scope == "batch" else \
        [np.arange(r * mask.shape[1], (r + 1) * mask.shape[1]) for r in range(mask.shape[0])]
    for idx in groups:
        idx = idx[mask.reshape(-1)[idx]]
        k = int(np.ceil(ratio * idx.size - 1e-6))
        order = idx[np.argsort(-score.reshape(-1)[idx], kind="stable")]
        keep.reshape(-1)[order[:k]] = True
    return keep


@pytest.mark.parametrize("scope", ["batch", "row"])
def test_token_downsample_keeps_top_fraction(scope):
    rng = np.random.default_rng(0)
    adv = rng.normal(size=(4, 7)).astype(np.float32)
    ent = rng.random((4, 7)).astype(np.float32) * 3
    mask = rng.random((4, 7)) < 0.6
    mask[2] = False
    f = jax.jit(lambda r: token_downsample(adv, ent, mask, keep_ratio=r, scope=scope))
    for ratio in (0.1, 0.35, 0.5, 1.0):
        keep = np.asarray(f(ratio))
        np.testing.assert_array_equal(keep, np_top_tokens(adv, ent, mask, ratio, scope))
        assert not np.any(keep & ~mask)
    # kept tokens all score at least as high as any dropped valid token (batch scope)
    if scope == "batch":
        keep = np.asarray(f(0.35))
        s = np.abs(adv) * ent
        assert s[keep].min() >= s[mask & ~keep].max()
    assert not np.any(np.asarray(token_downsample(adv, ent, np.zeros_like(mask), keep_ratio=0.5)))
    with pytest.raises(ValueError, match="scope"):
        token_downsample(adv, ent, mask, keep_ratio=0.5, scope="group")


def test_keep_ratio_schedule():
    # linear 0.5 -> 1.0 over 100 steps: step 0: 0.5, 50: 0.75, 100 and beyond: 1.0
    np.testing.assert_allclose([keep_ratio_schedule(s, total_steps=100) for s in (0, 50, 100, 300)],
                               [0.5, 0.75, 1.0, 1.0], rtol=1e-6)
    # cosine at the midpoint is also halfway; at a quarter: 0.5 + 0.5·(1 - cos(π/4))/2 = 0.5732233
    np.testing.assert_allclose(keep_ratio_schedule(25, total_steps=100, kind="cosine"), 0.5732233, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda s: keep_ratio_schedule(s, total_steps=10, start=0.2))(5), 0.6,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="start"):
        keep_ratio_schedule(0, total_steps=10, start=0.0)
    with pytest.raises(ValueError, match="kind"):
        keep_ratio_schedule(0, total_steps=10, kind="exp")
