"""Tests for the stateful estimators (rlx.advantages.trackers): Single-stream PO's Beta
tracker and HAPO's history-aware length reward. Expected values derived by hand in the
comments; the multi-step check replays the official per-sample update rule in numpy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import rlx.advantages as A
from rlx.advantages import HistoryState, SingleStreamState

# ------------------------------------------------------------------ single-stream


def test_single_stream_advantage_hand_case():
    # alpha = [1, 3], beta = [1, 1] -> p_hat = [.5, .75].
    # ids [0, 1, 1], r [1, 0, 1]: raw A = [.5, -.75, .25], mean 0,
    # unbiased std sqrt((.25 + .5625 + .0625) / 2) = sqrt(.4375) = .6614378.
    state = SingleStreamState(alpha=jnp.array([1.0, 3.0]), beta=jnp.array([1.0, 1.0]))
    adv, m = A.single_stream(state, jnp.array([0, 1, 1]), jnp.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(adv, np.array([0.5, -0.75, 0.25]) / 0.6614378, rtol=1e-5)
    np.testing.assert_allclose(m["p_hat_mean"], (0.5 + 0.75 + 0.75) / 3, rtol=1e-6)
    # every sample carries signal even when its "group" agrees (no degenerate groups):
    adv, _ = A.single_stream(state, jnp.array([0, 0, 1, 1]), jnp.array([1.0, 1.0, 1.0, 1.0]))
    assert np.all(np.asarray(adv) != 0)


def test_single_stream_update_hand_case():
    # drift D = [0, .06, .12]: rho = 2^0 = 1 -> clipped .96; 2^-1 = .5 and 2^-2 = .25 ->
    # clipped .875. Prompt 0: alpha = .96 * 1 + 1 = 1.96, beta = .96 * 1 + 0 = .96.
    # Prompt 1 (two samples, rho .875, rewards 0 and 1): alpha = .875 * 3 + 1 = 3.625,
    # beta = .875 * 1 + 1 = 1.875. Prompt 2 untouched.
    state = SingleStreamState(alpha=jnp.array([1.0, 3.0, 2.0]), beta=jnp.array([1.0, 1.0, 2.0]))
    new, m = A.single_stream_update(state, jnp.array([0, 1, 1]), jnp.array([1.0, 0.0, 1.0]),
                                    jnp.array([0.0, 0.06, 0.12]))
    np.testing.assert_allclose(new.alpha, [1.96, 3.625, 2.0], rtol=1e-6)
    np.testing.assert_allclose(new.beta, [0.96, 1.875, 2.0], rtol=1e-6)
    np.testing.assert_allclose(m["rho_mean"], (0.96 + 0.875 + 0.875) / 3, rtol=1e-6)


def test_single_stream_matches_official_per_sample_rule_over_steps():
    # one sample per prompt per batch (the paper's setting): alpha <- rho alpha + r,
    # beta <- rho beta + (1 - r), rho = clip(2^(-D / .06), .875, .96), replayed in numpy.
    rng = np.random.default_rng(0)
    N = 6
    state = A.single_stream_init(N)
    a = np.full(N, 0.5)
    b = np.full(N, 0.5)
    update = jax.jit(A.single_stream_update)
    for _ in range(5):
        ids = rng.permutation(N)[:4]
        r = (rng.random(4) < 0.6).astype(np.float32)
        d = rng.random(4).astype(np.float32) * 0.2
        adv, _ = A.single_stream(state, ids, r)
        raw = r - a[ids] / (a[ids] + b[ids])
        np.testing.assert_allclose(adv, (raw - raw.mean()) / (raw.std(ddof=1) + 1e-8), rtol=1e-4,
                                   atol=1e-5)
        state, _ = update(state, ids, r, d)
        rho = np.clip(2.0 ** (-d / 0.06), 0.875, 0.96)
        a[ids] = rho * a[ids] + r
        b[ids] = rho * b[ids] + 1 - r
        np.testing.assert_allclose(state.alpha, a, rtol=1e-5)
        np.testing.assert_allclose(state.beta, b, rtol=1e-5)


def test_single_stream_init_and_sampling_weights():
    # offline estimate 3 successes of 4, rho_min .875 -> N0 = 8:
    # alpha = 8 * 3.5 / 5 = 5.6, beta = 8 * 1.5 / 5 = 2.4.
    s = A.single_stream_init(2, jnp.array([3.0, 0.0]), 4)
    np.testing.assert_allclose(s.alpha, [5.6, 8 * 0.5 / 5], rtol=1e-6)
    np.testing.assert_allclose(s.beta, [2.4, 8 * 4.5 / 5], rtol=1e-6)
    # weight sqrt(p (1 - p)) + .05: p = .5 -> .55; p = .7 -> sqrt(.21) + .05.
    st = SingleStreamState(alpha=jnp.array([1.0, 7.0]), beta=jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(A.sampling_weights(st), [0.55, math.sqrt(0.21) + 0.05], rtol=1e-6)


def test_policy_drift_hand_case():
    # |[-1, -2, -3] - [-1.5, -2, -2]| = [.5, 0, 1]; mask keeps the first two -> .25
    d = A.policy_drift(jnp.array([[-1.0, -2.0, -3.0]]), jnp.array([[-1.5, -2.0, -2.0]]),
                       jnp.array([[True, True, False]]))
    np.testing.assert_allclose(d, [0.25], rtol=1e-6)


def test_single_stream_invalid_inputs():
    state = A.single_stream_init(3)
    ids = jnp.array([0, 5, 1, -1, 2])                # 5 and -1 out of range
    r = jnp.array([1.0, 1.0, jnp.nan, 0.0, 0.0])
    adv, m = A.single_stream(state, ids, r)
    assert np.all(np.isfinite(adv)) and np.all(np.asarray(adv)[[1, 2, 3]] == 0)
    assert int(m["out_of_range_ids"]) == 2 and int(m["invalid_samples"]) == 3
    new, m = A.single_stream_update(state, ids, r, jnp.zeros(5))
    np.testing.assert_allclose(new.alpha, [0.96 * 0.5 + 1, 0.5, 0.96 * 0.5], rtol=1e-6)
    # fewer than 2 valid samples: no normalization possible -> 0
    adv, _ = A.single_stream(state, jnp.array([0]), jnp.array([1.0]))
    assert np.all(np.asarray(adv) == 0)
    with pytest.raises(ValueError, match="single_stream: rewards has shape"):
        A.single_stream(state, jnp.array([0, 1]), jnp.array([1.0]))


def test_states_are_checkpointable_pytrees(tmp_path):
    state = SingleStreamState(alpha=jnp.array([1.0, 2.0]), beta=jnp.array([3.0, 4.0]))
    hist = A.history_init(3)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "ck", {"spo": state, "hapo": hist})
    ckpt.wait_until_finished()
    back = ckpt.restore(tmp_path / "ck", {"spo": state, "hapo": hist})
    np.testing.assert_array_equal(back["spo"].alpha, state.alpha)
    np.testing.assert_array_equal(back["hapo"].min_len, hist.min_len)   # +inf survives
    assert isinstance(back["spo"], SingleStreamState)


# ------------------------------------------------------------------ HAPO


def test_history_length_hand_cases():
    # no history yet: the reward is the correctness only, then h = shortest correct = 5.
    state = A.history_init(2)
    ids = jnp.array([0, 0, 0, 1])
    r, state, m = A.history_length(state, ids, jnp.array([7.0, 5.0, 3.0, 9.0]),
                                   jnp.array([1, 1, 0, 0]))
    np.testing.assert_allclose(r, [1, 1, 0, 0])
    np.testing.assert_allclose(state.min_len, [5.0, np.inf])   # wrong answers never update
    # h = 10 for prompt 0 (set directly). With x = L / h:
    #   L=5  correct: cos(.5 pi/2) = .7071068            -> 1 + .7071068
    #   L=10 correct: cos(pi/2) = 0                      -> 1
    #   L=15 wrong:   cos(.75 pi) = -.7071068, min(0, .) -> -.7071068
    #   L=15 correct: max(-.7, -.7071068) = -.7          -> .3
    #   L=25 correct: x >= 2 -> -1, max(-.7, -1) = -.7   -> .3
    #   L=3  wrong:   cos(.15 pi) = .891, min(0, .) = 0  -> 0
    state = HistoryState(min_len=jnp.array([10.0, np.inf]))
    L = jnp.array([5.0, 10.0, 15.0, 15.0, 25.0, 3.0])
    c = jnp.array([1, 1, 0, 1, 1, 0])
    r, new, m = A.history_length(state, jnp.zeros(6, jnp.int32), L, c)
    np.testing.assert_allclose(r, [1.7071068, 1.0, -0.7071068, 0.3, 0.3, 0.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.min_len, [5.0, np.inf])
    assert int(m["with_history"]) == 6
    # weight scales only the length term
    r2, _, _ = A.history_length(state, jnp.zeros(6, jnp.int32), L, c, weight=0.5)
    np.testing.assert_allclose(np.asarray(r2) - np.asarray(c),
                               0.5 * (np.asarray(r) - np.asarray(c)), rtol=1e-5, atol=1e-6)


def test_history_length_invalid_and_jit():
    state = HistoryState(min_len=jnp.array([10.0, 4.0]))
    ids = jnp.array([0, 1, 7, 1])
    L = jnp.array([5.0, jnp.nan, 2.0, 2.0])
    c = jnp.array([1, 1, 1, 1])
    valid = jnp.array([True, True, True, False])
    r, new, m = A.history_length(state, ids, L, c, valid)
    assert np.all(np.isfinite(r)) and np.all(np.asarray(r)[1:] == 0)
    assert int(m["invalid_samples"]) == 3 and int(m["out_of_range_ids"]) == 1
    np.testing.assert_allclose(new.min_len, [5.0, 4.0])   # invalid samples never update
    with jax.disable_jit():
        r_e, new_e, _ = A.history_length(state, ids, L, c, valid)
    np.testing.assert_allclose(r_e, r, rtol=1e-6)
    np.testing.assert_allclose(new_e.min_len, new.min_len)
