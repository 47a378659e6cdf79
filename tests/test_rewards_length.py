"""Tests for rlx.rewards.length (DAPO overlong shaping, HAPO cosine length reward); hand values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.rewards.length import apply_overlong, hapo_length_reward, hapo_reward, overlong_penalty


def test_overlong_penalty_hand_values():
    # L_max = 20, L_cache = 4: no penalty up to 16 tokens, then -(L - 16)/4.
    L = jnp.array([10, 16, 17, 18, 20], jnp.int32)
    np.testing.assert_allclose(overlong_penalty(L, max_len=20, cache_len=4), [0, 0, -0.25, -0.5, -1.0])
    np.testing.assert_allclose(overlong_penalty(L, max_len=20, cache_len=4, factor=0.5),
                               [0, 0, -0.125, -0.25, -0.5])
    r = apply_overlong(jnp.ones(5), L, max_len=20, cache_len=4)
    np.testing.assert_allclose(r, [1, 1, 0.75, 0.5, 0.0])
    # DAPO's defaults: 20480 / 4096 -> a 18432-token answer loses (18432 - 16384)/4096 = 0.5.
    np.testing.assert_allclose(overlong_penalty(jnp.array([18432]), max_len=20480, cache_len=4096), [-0.5])
    jitted = jax.jit(lambda x: overlong_penalty(x, max_len=20, cache_len=4))
    np.testing.assert_allclose(jitted(L), overlong_penalty(L, max_len=20, cache_len=4))


def test_lengths_must_be_token_counts():
    with pytest.raises(TypeError, match="token counts"):
        overlong_penalty(jnp.array([1.5]), max_len=10, cache_len=2)
    with pytest.raises(TypeError, match="token counts"):
        hapo_length_reward(np.array([3.0]), np.array([2.0]), np.array([True]))
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(jnp.array([1]), max_len=10, cache_len=11)
    with pytest.raises(ValueError, match="must match"):
        hapo_length_reward(jnp.array([1, 2]), jnp.array([1.0]), jnp.array([True, False]))


def test_hapo_cosine_hand_values():
    # h = 100; c = cos(L/h * pi/2) for L < 200, else -1.
    L = jnp.array([0, 50, 100, 150, 200, 300], jnp.int32)
    h = jnp.full((6,), 100.0)
    s = math.sqrt(0.5)
    # c:          1,  .7071, 0, -.7071, -1, -1
    # correct: max(-0.7, c); wrong: min(0, c)
    np.testing.assert_allclose(hapo_length_reward(L, h, jnp.ones(6, bool)), [1, s, 0, -0.7, -0.7, -0.7], atol=1e-6)
    np.testing.assert_allclose(hapo_length_reward(L, h, jnp.zeros(6, bool)), [0, 0, 0, -s, -1, -1], atol=1e-6)
    np.testing.assert_allclose(hapo_reward(jnp.ones(6, bool), L, h), [2, 1 + s, 1, 0.3, 0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose(hapo_reward(jnp.zeros(6, bool), L, h, weight=0.5),
                               [0, 0, 0, -s / 2, -0.5, -0.5], atol=1e-6)


def test_hapo_without_history_is_zero():
    L = jnp.array([5, 5, 5], jnp.int32)
    h = jnp.array([0.0, jnp.nan, jnp.inf])
    np.testing.assert_array_equal(hapo_length_reward(L, h, jnp.array([True, False, True])), [0, 0, 0])
    out = jax.jit(hapo_length_reward)(L, h, jnp.array([True, False, True]))
    assert np.all(np.isfinite(out))
