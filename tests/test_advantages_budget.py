"""Tests for BRPO and S-GRPO (rlx.advantages.budget).

The BRPO reference mirrors the official per-(b, g, s) loops of `compute_cot_advantage`
and `compute_summary_advantage`; rlx computes the same with cumulative sums.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.advantages as A


def np_brpo(scores, probs, valid=None):
    P, G, S, Asum = scores.shape
    probs = np.asarray(probs, np.float64) / np.sum(probs)
    valid = np.ones((P, G), bool) if valid is None else valid
    ok = valid & np.all(np.isfinite(scores), axis=(2, 3))
    think = np.zeros((P, G, S))
    summ = np.zeros(scores.shape)
    for p in range(P):
        good = np.flatnonzero(ok[p])
        rbar = scores[p].astype(np.float64).mean(-1)
        for g in good:
            for s in range(S):
                ret = (rbar[g, s:] * probs[s:]).sum()
                avg = np.mean([(rbar[h, s:] * probs[s:]).sum() for h in good]) if good.size >= 2 else 0.0
                last = 0.0
                if s > 0:
                    d = 2.0 ** np.arange(s)
                    last = (rbar[g, :s] * d).sum() / d.sum() * probs[s:].sum()
                think[p, g, s] = ret - (s * last + (S - s) * avg) / S
                for a in range(Asum):
                    if Asum == 1:
                        if good.size >= 2:
                            summ[p, g, s, a] = scores[p, g, s, a] - scores[p, good, s, 0].mean()
                    else:
                        summ[p, g, s, a] = scores[p, g, s, a] - scores[p, g, s].mean()
    return think, summ


def test_brpo_hand_case():
    # P=1, G=2, S=2, A=1, prior [.5, .5]; rbar: g0 = [0, 1], g1 = [1, 1].
    # R_{g,0} = .5 r0 + .5 r1 = [.5, 1];  R_{g,1} = .5 r1 = [.5, .5].
    # V2 = [.75, .5].  V1_{g,1} = r_{g,0} * tail_1 = [0, .5];  V1_{g,0} = 0.
    # b_{g,0} = (0 + 2 * .75) / 2 = .75 -> thinking s=0: [-.25, .25].
    # b_{g,1} = (V1 + .5) / 2 = [.25, .5] -> thinking s=1: [.5 - .25, .5 - .5] = [.25, 0].
    # summaries (A = 1): score - mean over g at that budget: s0 mean .5 -> [-.5, .5]; s1 -> 0.
    scores = np.array([[[[0.0], [1.0]], [[1.0], [1.0]]]], np.float32)
    (think, summ), m = A.brpo(scores, np.array([0.5, 0.5]))
    np.testing.assert_allclose(think, [[[-0.25, 0.25], [0.25, 0.0]]], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(summ[..., 0], [[[-0.5, 0.0], [0.5, 0.0]]], rtol=1e-6)
    np.testing.assert_allclose(m["mean_return"], 0.75, rtol=1e-6)


@pytest.mark.parametrize("A_", [1, 3])
def test_brpo_matches_reference(A_):
    rng = np.random.default_rng(A_)
    scores = (rng.random((3, 4, 4, A_)) < 0.5).astype(np.float32)
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    valid = np.ones((3, 4), bool)
    valid[1, 2] = False
    valid[2, 1:] = False                             # one valid sample: V2 = 0
    (think, summ), m = A.brpo(scores, probs, valid)
    rt, rs = np_brpo(scores, probs, valid)
    np.testing.assert_allclose(think, rt, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(summ, rs, rtol=1e-5, atol=1e-6)
    assert int(m["degenerate_groups"]) == 1 and int(m["invalid_samples"]) == 4


def test_brpo_degenerate_and_errors():
    scores = np.ones((2, 3, 2, 1), np.float32)
    scores[0, 1, 0, 0] = np.nan
    (think, summ), m = A.brpo(scores, jnp.array([1.0, 1.0]))
    assert np.all(np.isfinite(think)) and np.all(np.isfinite(summ))
    assert np.all(np.asarray(think[0, 1]) == 0) and int(m["nonfinite_rewards"]) == 1
    # all scores 1: R_s = V1_s = V2_s = tail prior mass, so every thinking advantage is 0.
    np.testing.assert_allclose(think[1], 0, atol=1e-6)
    # G = 1: no group baseline (V2 = 0) and no summary baseline: finite, summaries 0.
    (think1, summ1), m1 = A.brpo(scores[:, :1], jnp.array([1.0, 1.0]))
    assert np.all(np.isfinite(think1)) and np.all(np.asarray(summ1) == 0)
    assert int(m1["degenerate_groups"]) == 2
    with pytest.raises(ValueError, match="brpo: budget_probs must be >= 0"):
        A.brpo(scores, np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match="brpo: budget_probs has shape"):
        A.brpo(scores, np.ones(3))


def test_s_grpo_hand_case():
    # exits correct [0, 1, 1, 0, 1], decay 1/2: the k-th correct exit gets 2^-(k-1):
    # r = [0, 1, .5, 0, .25]; mean 1.75 / 5 = .35 -> A = [-.35, .65, .15, -.35, -.1].
    adv, m = A.s_grpo(jnp.array([[0, 1, 1, 0, 1]]))
    np.testing.assert_allclose(adv, [[-0.35, 0.65, 0.15, -0.35, -0.1]], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m["mean_reward"], 0.35, rtol=1e-6)
    # with std scaling (ddof 1): std of r = sqrt(sum sq dev / 4)
    r = np.array([0, 1, 0.5, 0, 0.25])
    adv_s, _ = A.s_grpo(jnp.array([[0, 1, 1, 0, 1]]), scale_by_std=True)
    np.testing.assert_allclose(adv_s[0], (r - r.mean()) / (r.std(ddof=1) + 1e-6), rtol=1e-5)
    # an invalid exit neither counts as correct nor gets an advantage.
    adv_v, _ = A.s_grpo(jnp.array([[1, 1, 1]]), jnp.array([[True, False, True]]))
    # valid exits: r = [1, .5] -> A = [.25, 0, -.25]
    np.testing.assert_allclose(adv_v, [[0.25, 0.0, -0.25]], rtol=1e-6)


def test_s_grpo_degenerate():
    for c in (jnp.zeros((2, 4)), jnp.ones((2, 1))):
        adv, m = A.s_grpo(c)
        assert np.all(np.asarray(adv) == 0)
    adv, m = A.s_grpo(jnp.array([[1.0, jnp.nan, 0.0]]))
    assert np.all(np.isfinite(adv)) and int(m["nonfinite_rewards"]) == 1


def test_jit_equals_no_jit():
    rng = np.random.default_rng(0)
    scores = rng.random((2, 3, 3, 2)).astype(np.float32)
    probs = np.array([0.2, 0.3, 0.5])
    with jax.disable_jit():
        (t, s), _ = A.brpo(scores, probs)
        a, _ = A.s_grpo(scores[:, :, 0, 0] > 0.5)
    (tj, sj), _ = jax.jit(A.brpo)(scores, probs)
    aj, _ = A.s_grpo(scores[:, :, 0, 0] > 0.5)
    np.testing.assert_allclose(tj, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sj, s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aj, a, rtol=1e-5, atol=1e-6)
