"""Tests for SPO-chain (rlx.advantages.segment): cutpoints and chain advantages.

Expected values are derived by hand in the comments, or by an independent numpy
reference written below from the official algorithm (AIFrameResearch/SPO,
`math_episode_generator_with_mc_advantages.py`: `np.where(p < 0.9)[0] - 1`, `[::k]`,
then the token loops of `_compute_token_advantages`; trainer `masked_whiten` over
mask & p < 0.9 with unbiased variance and eps 1e-8).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlx.advantages as A
from rlx.advantages import spo_chain, spo_cutpoints

# One response of 8 tokens. Low-probability tokens (p < 0.9): t = 0, 2, 4, 5, 7.
P_HAND = np.array([[0.5, 0.95, 0.3, 0.99, 0.2, 0.8, 0.97, 0.1]], np.float32)
LOGP_HAND = np.log(P_HAND)
MASK_HAND = np.ones((1, 8), bool)


def test_cutpoints_interval_2_with_prompt_cut():
    # Candidates c = t - 1: [-1, 1, 3, 4, 6]; interval 2 keeps candidates #0, #2, #4:
    # c = -1 (the prompt: the first token has p = 0.5 < 0.9), 3, 6.
    # Segment id = number of kept cuts c < t: tokens 0-3 -> 1, 4-6 -> 2, 7 -> 3.
    cuts, m = spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=4, interval=2)
    np.testing.assert_array_equal(cuts.positions, [[-1, 3, 6, -1]])
    np.testing.assert_array_equal(cuts.valid, [[True, True, True, False]])
    np.testing.assert_array_equal(cuts.segment_ids, [[1, 1, 1, 1, 2, 2, 2, 3]])
    assert int(m["prompt_cutpoints"]) == 1 and int(m["dropped_cutpoints"]) == 0
    assert float(m["cutpoints"]) == 3.0


def test_cutpoints_default_interval_5_no_prompt_cut():
    # 12 tokens, p < 0.9 at t = 1, 2, 3, 4, 5, 6, 8, 9, 10, 11 (t = 0 and 7 are 0.95).
    # Candidates c = t - 1: [0, 1, 2, 3, 4, 5, 7, 8, 9, 10]; [::5] keeps #0 and #5:
    # c = 0 and c = 5. The prompt is not a cut (first token p = 0.95).
    p = np.full((1, 12), 0.5, np.float32)
    p[0, [0, 7]] = 0.95
    cuts, m = spo_cutpoints(np.log(p), np.ones((1, 12), bool), num_cuts=3)
    np.testing.assert_array_equal(cuts.positions, [[0, 5, -1]])
    np.testing.assert_array_equal(cuts.valid, [[True, True, False]])
    # tokens t <= 0 -> 0 cuts before; 1..5 -> 1; 6.. -> 2
    np.testing.assert_array_equal(cuts.segment_ids, [[0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]])
    assert int(m["prompt_cutpoints"]) == 0


def test_cutpoints_ignore_padding_and_truncate_to_num_cuts():
    # Row 0: length 5, all p = 0.5 (padding p = 0.1 must not count): candidates
    # c = -1, 0, 1, 2, 3; interval 1 keeps all, num_cuts = 3 keeps -1, 0, 1 and drops 2.
    # Row 1: p = 0.95 everywhere: no cut.
    p = np.full((2, 7), 0.1, np.float32)
    p[0, :5] = 0.5
    p[1, :] = 0.95
    mask = np.zeros((2, 7), bool)
    mask[0, :5] = True
    mask[1, :6] = True
    cuts, m = spo_cutpoints(np.log(p), mask, num_cuts=3, interval=1)
    np.testing.assert_array_equal(cuts.positions, [[-1, 0, 1], [-1, -1, -1]])
    np.testing.assert_array_equal(cuts.valid, [[True, True, True], [False, False, False]])
    assert int(m["dropped_cutpoints"]) == 2          # c = 2 and c = 3 of row 0
    np.testing.assert_array_equal(cuts.segment_ids[0, :5], [1, 2, 3, 3, 3])
    np.testing.assert_array_equal(cuts.segment_ids[1, :6], 0)


def test_cutpoint_threshold_is_strict():
    # p exactly at the threshold is not a candidate (official `probs < 0.9`).
    logp = np.log(np.array([[0.5, 0.5]], np.float32))
    cuts, _ = spo_cutpoints(logp, np.ones((1, 2), bool), num_cuts=2, interval=1,
                            threshold=float(np.exp(logp[0, 1])))
    np.testing.assert_array_equal(cuts.valid, [[False, False]])


# ------------------------------------------------------------------- chain advantages

def test_chain_hand_example_before_and_after_whitening():
    # Cuts -1, 3, 6 (above) with V(-1) = 0.2, V(3) = 0.6, V(6) = 0.0, final reward R = 1.
    # Segments: tokens 0-3: V(3) - V(-1) = 0.4; tokens 4-6: V(6) - V(3) = -0.6;
    # token 7: R - V(6) = 1.0. Probability mask zeroes tokens 1, 3, 6 (p >= 0.9).
    cuts, _ = spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=4, interval=2)
    values = np.array([[0.2, 0.6, 0.0, 123.0]], np.float32)   # slot 3 invalid: ignored
    raw, m = spo_chain(values, cuts.valid, np.array([1.0]), cuts.positions, MASK_HAND, LOGP_HAND,
                       whiten=False)
    np.testing.assert_allclose(raw, [[0.4, 0, 0.4, 0, -0.6, -0.6, 0, 1.0]], atol=1e-6)
    assert int(m["prob_masked_tokens"]) == 3
    # Whitening over the kept tokens [0.4, 0.4, -0.6, -0.6, 1.0]: mean = 0.6 / 5 = 0.12,
    # deviations 0.28, 0.28, -0.72, -0.72, 0.88, sum of squares 2*0.0784 + 2*0.5184 +
    # 0.7744 = 1.968, unbiased var = 1.968 / 4 = 0.492; A' = dev / sqrt(0.492 + 1e-8).
    adv, _ = spo_chain(values, cuts.valid, np.array([1.0]), cuts.positions, MASK_HAND, LOGP_HAND)
    s = np.sqrt(0.492 + 1e-8)
    np.testing.assert_allclose(adv, [[0.28 / s, 0, 0.28 / s, 0, -0.72 / s, -0.72 / s, 0, 0.88 / s]],
                               rtol=1e-5, atol=1e-6)


def test_chain_first_segment_zero_without_prompt_cut():
    # p = [0.95, 0.5, 0.99, 0.3, 0.2], interval 1: candidates t = 1, 3, 4 -> cuts 0, 2, 3.
    # token 0 (segment 0, before the first cut): 0 (no baseline; also masked: p = 0.95)
    # tokens 1-2: V(2) - V(0) = 0.7 - 0.4 = 0.3 (token 2 masked: p = 0.99)
    # token 3: V(3) - V(2) = 0.1 - 0.7 = -0.6;  token 4: R - V(3) = 0 - 0.1 = -0.1
    p = np.array([[0.95, 0.5, 0.99, 0.3, 0.2]], np.float32)
    mask = np.ones((1, 5), bool)
    cuts, _ = spo_cutpoints(np.log(p), mask, num_cuts=3, interval=1)
    np.testing.assert_array_equal(cuts.positions, [[0, 2, 3]])
    raw, _ = spo_chain(np.array([[0.4, 0.7, 0.1]]), cuts.valid, np.array([0.0]), cuts.positions,
                       mask, np.log(p), whiten=False)
    np.testing.assert_allclose(raw, [[0, 0.3, 0, -0.6, -0.1]], atol=1e-6)
    # First segment really gets 0 even when its tokens are uncertain: p[0] = 0.5 here,
    # cuts at 1 and 3 given directly (token 0 and 1 lie in segment 0).
    p2 = np.array([[0.5, 0.5, 0.5, 0.5, 0.5]], np.float32)
    raw2, _ = spo_chain(np.array([[0.4, 0.7, 0.0]]), np.array([[True, True, False]]), np.array([1.0]),
                        np.array([[1, 3, -1]]), mask, np.log(p2), whiten=False)
    # tokens 0-1: 0; tokens 2-3: 0.7 - 0.4 = 0.3; token 4: 1 - 0.7 = 0.3
    np.testing.assert_allclose(raw2, [[0, 0, 0.3, 0.3, 0.3]], atol=1e-6)


def test_chain_only_prompt_cut_and_no_cut():
    # Only the prompt is a cut: every token gets R - V(-1) = 1 - 0.25 = 0.75.
    # No valid cut at all: every token 0 (official `len(cutpoints) == 0 -> 0`).
    p = np.full((2, 4), 0.5, np.float32)
    mask = np.ones((2, 4), bool)
    raw, _ = spo_chain(np.array([[0.25, 0.0], [0.3, 0.3]]), np.array([[True, False], [False, False]]),
                       np.array([1.0, 1.0]), np.array([[-1, -1], [-1, -1]]), mask, np.log(p),
                       whiten=False)
    np.testing.assert_allclose(raw, [[0.75] * 4, [0.0] * 4], atol=1e-7)


def test_chain_slot_order_does_not_matter_and_nonfinite_guard():
    # Same cuts as the hand example, slots permuted (valid cuts 6, -1, 3): same result.
    cuts, _ = spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=3, interval=2)
    ref, _ = spo_chain(np.array([[0.2, 0.6, 0.0]]), cuts.valid, np.array([1.0]), cuts.positions,
                       MASK_HAND, LOGP_HAND, whiten=False)
    got, _ = spo_chain(np.array([[0.0, 0.2, 0.6]]), np.array([[True, True, True]]), np.array([1.0]),
                       np.array([[6, -1, 3]]), MASK_HAND, LOGP_HAND, whiten=False)
    np.testing.assert_allclose(got, ref, atol=1e-7)
    # V(3) = NaN: the two segments that use it (tokens 0-3 and 4-6) get 0; token 7 keeps 1.
    got, m = spo_chain(np.array([[0.2, np.nan, 0.0]]), cuts.valid, np.array([1.0]), cuts.positions,
                       MASK_HAND, LOGP_HAND, whiten=False)
    np.testing.assert_allclose(got, [[0, 0, 0, 0, 0, 0, 0, 1.0]], atol=1e-7)
    assert int(m["nonfinite_segments"]) == 2


def test_probability_mask_zeroes_confident_tokens_and_leaves_stats():
    # All tokens in one segment with A = 0.5 except the confident ones; whitening must
    # ignore confident tokens: kept raw advantages [0.5, 0.5, -0.5, -0.5] (two segments)
    # have mean 0 and unbiased var 1/3: A' = +-0.5 / sqrt(1/3 + 1e-8).
    p = np.array([[0.5, 0.99, 0.5, 0.5, 0.999, 0.5]], np.float32)
    mask = np.ones((1, 6), bool)
    # cuts: prompt (-1) and 2 -> tokens 0-2: V(2) - V(-1) = 0.5; tokens 3-5: R - V(2) = -0.5
    adv, m = spo_chain(np.array([[0.0, 0.5]]), np.array([[True, True]]), np.array([0.0]),
                       np.array([[-1, 2]]), mask, np.log(p))
    s = np.sqrt(1 / 3 + 1e-8)
    np.testing.assert_allclose(adv, [[0.5 / s, 0, 0.5 / s, -0.5 / s, 0, -0.5 / s]], rtol=1e-5)
    assert int(m["prob_masked_tokens"]) == 2


# ------------------------------------------------------------------ numpy reference

def ref_cutpoints(p_row, length, k, S):
    """Official: np.where(p < 0.9)[0] - 1, then [::k]; rlx keeps the first S."""
    c = (np.where(p_row[:length] < 0.9)[0] - 1)[::k]
    return c[:S], len(c) - len(c[:S])


def ref_chain(p_row, length, cutpoints, cut_values, score):
    """The loops of the official `_compute_token_advantages` (lists, None = unset)."""
    token_values = [None] * length
    advantages = [None] * length
    token_values[-1] = score
    base = None
    cps, vals = list(cutpoints), list(cut_values)
    if len(cps) == 0:
        return np.zeros(length)
    if cps[0] == -1:
        base = vals[0]
        cps, vals = cps[1:], vals[1:]
    for idx, v in zip(cps, vals):
        token_values[idx] = v
    for i in range(length):
        if token_values[i] is not None:
            advantages[i] = 0.0 if base is None else token_values[i] - base
            base = token_values[i]
    for i in range(length - 1, -1, -1):
        if advantages[i] is None:
            advantages[i] = advantages[i + 1]
    for i in range(length):
        if p_row[i] > 0.9:
            advantages[i] = 0.0
    return np.asarray(advantages, np.float64)


def ref_whiten(adv_rows, keep_rows):
    flat = np.concatenate([a[k] for a, k in zip(adv_rows, keep_rows)])
    if flat.size < 2:
        return [np.zeros_like(a) for a in adv_rows]
    mean, var = flat.mean(), flat.var(ddof=1)
    return [np.where(k, (a - mean) / np.sqrt(var + 1e-8), 0.0) for a, k in zip(adv_rows, keep_rows)]


B, T, S = 4, 12, 4


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.sampled_from([1, 2, 3]))
def test_chain_matches_official_loops_on_random_inputs(seed, k):
    rng = np.random.default_rng(seed)
    # probabilities well away from 0.9 (float32 exp(log p) vs p cannot cross it)
    p = np.where(rng.random((B, T)) < 0.5, rng.uniform(0.01, 0.85, (B, T)),
                 rng.uniform(0.95, 1.0, (B, T))).astype(np.float32)
    lengths = rng.integers(2, T + 1, B)
    mask = np.arange(T)[None, :] < lengths[:, None]
    logp = np.log(p)
    p32 = np.exp(logp)
    values = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], (B, S)).astype(np.float32)
    rewards = rng.choice([0.0, 1.0], B).astype(np.float32)

    cuts, m = spo_cutpoints(logp, mask, num_cuts=S, interval=k)
    raw, _ = spo_chain(values, cuts.valid, rewards, cuts.positions, mask, logp, whiten=False)
    adv, _ = spo_chain(values, cuts.valid, rewards, cuts.positions, mask, logp)

    raws, keeps, dropped = [], [], 0
    for b in range(B):
        L = int(lengths[b])
        c, d = ref_cutpoints(p32[b], L, k, S)
        dropped += d
        np.testing.assert_array_equal(np.asarray(cuts.positions[b])[:len(c)], c)
        np.testing.assert_array_equal(np.asarray(cuts.valid[b]), np.arange(S) < len(c))
        r = ref_chain(p32[b], L, c, values[b, :len(c)], float(rewards[b]))
        keep = p32[b, :L] < 0.9
        np.testing.assert_allclose(np.asarray(raw[b, :L]), np.where(keep, r, 0.0), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(raw[b, L:]), 0.0)
        raws.append(r)
        keeps.append(keep)
    assert int(m["dropped_cutpoints"]) == dropped
    for b, w in enumerate(ref_whiten(raws, keeps)):
        L = int(lengths[b])
        np.testing.assert_allclose(np.asarray(adv[b, :L]), w, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------- jit, registry, errors

def test_jit_equals_no_jit():
    cuts, _ = spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=4, interval=2)
    args = (np.array([[0.2, 0.6, 0.0, 0.0]], np.float32), cuts.valid, np.array([1.0], np.float32),
            cuts.positions, MASK_HAND, LOGP_HAND)
    jitted, _ = spo_chain(*args)
    # the same Python functions without their jit (op by op)
    cuts2, _ = spo_cutpoints.__wrapped__(LOGP_HAND, MASK_HAND, num_cuts=4, interval=2)
    eager, _ = spo_chain.__wrapped__(*args)
    np.testing.assert_array_equal(cuts2.positions, cuts.positions)
    np.testing.assert_array_equal(cuts2.segment_ids, cuts.segment_ids)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-7)
    # and inside a caller's jit (inlined)
    outer = jax.jit(lambda *a: spo_chain(*a)[0])(*args)
    np.testing.assert_allclose(outer, jitted, rtol=1e-6, atol=1e-7)


def test_registered():
    assert A.get("spo_chain") is spo_chain


def test_bad_input_names_the_argument():
    cuts, _ = spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=4, interval=2)
    with pytest.raises(ValueError, match="rewards"):
        spo_chain(np.zeros((1, 4)), cuts.valid, np.zeros((2,)), cuts.positions, MASK_HAND, LOGP_HAND)
    with pytest.raises(ValueError, match="cut_valid"):
        spo_chain(np.zeros((1, 4)), cuts.valid[:, :3], np.zeros((1,)), cuts.positions, MASK_HAND,
                  LOGP_HAND)
    with pytest.raises(TypeError, match="cut_positions"):
        spo_chain(np.zeros((1, 4)), cuts.valid, np.zeros((1,)), jnp.zeros((1, 4)), MASK_HAND,
                  LOGP_HAND)
    with pytest.raises(ValueError, match="mask"):
        spo_cutpoints(LOGP_HAND, MASK_HAND[:, :5], num_cuts=2)
    with pytest.raises(ValueError, match="num_cuts"):
        spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=-1)
    with pytest.raises(ValueError, match="interval"):
        spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=2, interval=0)


def test_cutpoints_without_a_cap_keep_every_kept_candidate():
    # num_cuts=0: S = ceil(T / interval), enough for any response of T tokens (official:
    # an unbounded list). Worst case: every one of T = 7 tokens is a candidate, c = -1..5;
    # interval 3 keeps #0, #3, #6: c = -1, 2, 5 = ceil(7 / 3) = 3 slots, nothing dropped.
    cuts, m = spo_cutpoints(np.log(np.full((1, 7), 0.5, np.float32)), np.ones((1, 7), bool), num_cuts=0,
                            interval=3)
    np.testing.assert_array_equal(cuts.positions, [[-1, 2, 5]])
    assert int(m["dropped_cutpoints"]) == 0
    # The hand response (candidates c = -1, 1, 3, 4, 6), interval 1: S = 8 slots, all 5 kept.
    cuts, m = spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=0, interval=1)
    np.testing.assert_array_equal(cuts.positions, [[-1, 1, 3, 4, 6, -1, -1, -1]])
    np.testing.assert_array_equal(cuts.valid, [[True] * 5 + [False] * 3])
    assert int(m["dropped_cutpoints"]) == 0
    with pytest.raises(ValueError, match="num_cuts"):
        spo_cutpoints(LOGP_HAND, MASK_HAND, num_cuts=-1)
