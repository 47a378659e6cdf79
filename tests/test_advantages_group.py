"""Tests for the group-relative estimators (rlx.advantages.group / reweight) and the
shared registry / to_tokens.

Expected values are derived by hand in comments, or come from independent numpy
references written below from the papers' formulas (loops over groups on the
*filtered* valid rewards — no code shared with rlx).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.advantages as A

# ------------------------------------------------------------------ numpy references


def _groups(r, valid):
    valid = np.ones(r.shape, bool) if valid is None else valid
    ok = valid & np.isfinite(r)
    for p in range(r.shape[0]):
        yield p, ok[p], r[p][ok[p]].astype(np.float64)


def np_grpo(r, valid=None, ddof=1, eps=1e-6):
    out = np.zeros(r.shape)
    for p, ok, x in _groups(r, valid):
        if x.size >= 2 and x.max() > x.min():
            out[p, ok] = (x - x.mean()) / (x.std(ddof=ddof) + eps)
    return out


def np_dr_grpo(r, valid=None):
    out = np.zeros(r.shape)
    for p, ok, x in _groups(r, valid):
        if x.size >= 2:
            out[p, ok] = x - x.mean()
    return out


def np_rloo(r, valid=None):
    out = np.zeros(r.shape)
    for p, ok, x in _groups(r, valid):
        if x.size >= 2:
            # literally the mean of the *other* samples
            out[p, ok] = [x[i] - np.delete(x, i).mean() for i in range(x.size)]
    return out


def np_ngrpo(r, valid=None, r_max=1.0, eps=1e-6):
    out = np.zeros(r.shape)
    for p, ok, x in _groups(r, valid):
        if x.size >= 2 and not np.all(x == r_max):
            aug = np.append(x, r_max)  # one virtual sample with the maximum reward
            out[p, ok] = (x - aug.mean()) / (aug.std(ddof=1) + eps)
    return out


def np_lite_ppo(r, valid=None, eps=1e-6):
    valid = np.ones(r.shape, bool) if valid is None else valid
    ok = valid & np.isfinite(r)
    batch_std = r[ok].astype(np.float64).std(ddof=1) if ok.sum() > 1 else 0.0
    out = np.zeros(r.shape)
    for p, okp, x in _groups(r, valid):
        if x.size >= 2 and x.max() > x.min():
            out[p, okp] = (x - x.mean()) / (batch_std + eps)
    return out


def random_groups(seed, P=6, G=5, binary=False, p_valid=0.8):
    rng = np.random.default_rng(seed)
    r = (rng.random((P, G)) < 0.5).astype(np.float32) if binary else rng.normal(size=(P, G)).astype(np.float32)
    valid = rng.random((P, G)) < p_valid
    valid[0] = True            # one full group
    valid[1] = False           # one empty group
    valid[2] = False
    valid[2, 0] = True         # one single-sample group
    return r, valid


# ------------------------------------------------------------------ references agree


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ddof", [0, 1])
def test_grpo_matches_numpy_reference(seed, ddof):
    r, valid = random_groups(seed, binary=seed % 2 == 0)
    adv, m = A.grpo(r, valid, ddof=ddof)
    np.testing.assert_allclose(adv, np_grpo(r, valid, ddof=ddof), rtol=1e-4, atol=1e-5)
    assert int(m["degenerate_groups"]) == int(np.sum(valid.sum(1) < 2))


@pytest.mark.parametrize("seed", range(4))
def test_rloo_dr_grpo_ngrpo_lite_ppo_match_numpy(seed):
    r, valid = random_groups(seed, binary=seed % 2 == 1)
    np.testing.assert_allclose(A.rloo(r, valid)[0], np_rloo(r, valid), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(A.dr_grpo(r, valid)[0], np_dr_grpo(r, valid), rtol=1e-4, atol=1e-5)
    rr = np.clip(r, -1, 1)  # NGRPO assumes rewards <= r_max
    np.testing.assert_allclose(A.ngrpo(rr, valid)[0], np_ngrpo(rr, valid), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(A.lite_ppo(r, valid)[0], np_lite_ppo(r, valid), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ hand-derived cases


def test_grpo_hand_case_both_ddof():
    # r = [1,0,0,0]: mean 0.25, deviations [.75,-.25,-.25,-.25], sum of squares 0.75.
    # ddof=1: std = sqrt(.75/3) = 0.5 -> A = [1.5, -.5, -.5, -.5] (eps 1e-6 aside).
    # ddof=0: std = sqrt(.75/4) = 0.4330127 -> A = [1.7320508, -0.5773503, ...].
    r = jnp.array([[1.0, 0, 0, 0]])
    np.testing.assert_allclose(A.grpo(r, eps=0.0)[0], [[1.5, -0.5, -0.5, -0.5]], rtol=1e-6)
    np.testing.assert_allclose(A.grpo(r, ddof=0, eps=0.0)[0],
                               [[1.7320508, -0.5773503, -0.5773503, -0.5773503]], rtol=1e-6)
    # eps enters the denominator: 0.75 / (0.5 + 0.25) = 1.0 for the first sample.
    np.testing.assert_allclose(A.grpo(r, eps=0.25)[0][0, 0], 1.0, rtol=1e-6)


def test_dr_grpo_rloo_hand_case():
    # r = [1,0,0,0]: dr_grpo = r - .25; rloo: 1 - mean(0,0,0) = 1 and 0 - mean(1,0,0) = -1/3.
    r = jnp.array([[1.0, 0, 0, 0]])
    np.testing.assert_allclose(A.dr_grpo(r)[0], [[0.75, -0.25, -0.25, -0.25]], rtol=1e-6)
    np.testing.assert_allclose(A.rloo(r)[0], [[1.0, -1 / 3, -1 / 3, -1 / 3]], rtol=1e-6)


def test_ngrpo_hand_case_all_wrong_group_gets_negative_signal():
    # r = [0,0,0,0] + virtual 1: mean' = 0.2; var' = (4 * 0.04 + 0.64) / 4 = 0.2,
    # std' = 0.4472136 -> A = -0.2 / 0.4472136 = -0.4472136 for every sample.
    adv, _ = A.ngrpo(jnp.zeros((1, 4)), eps=0.0)
    np.testing.assert_allclose(adv, np.full((1, 4), -0.4472136), rtol=1e-6)
    # an all-correct group equals the virtual sample: exactly 0.
    assert np.all(np.asarray(A.ngrpo(jnp.ones((1, 4)))[0]) == 0)


def test_lite_ppo_hand_case():
    # groups [1,0] and [1,1]: group means .5 and 1; batch rewards [1,0,1,1] have mean .75,
    # squared deviations .0625+.5625+.0625+.0625 = .75, unbiased var .25, std .5.
    # A = [[.5/.5, -.5/.5], [0, 0]] (the second group is constant).
    adv, m = A.lite_ppo(jnp.array([[1.0, 0], [1, 1]]), eps=0.0)
    np.testing.assert_allclose(adv, [[1.0, -1.0], [0, 0]], rtol=1e-6)
    np.testing.assert_allclose(m["batch_std"], 0.5, rtol=1e-6)


def test_opo_hand_case():
    # r = [1,0,1], lengths [1,2,3]: baseline (1*1 + 2*0 + 3*1) / 6 = 2/3.
    adv, _ = A.opo(jnp.array([[1.0, 0, 1]]), jnp.array([[1, 2, 3]]))
    np.testing.assert_allclose(adv, [[1 / 3, -2 / 3, 1 / 3]], rtol=1e-6)
    # all lengths 0: falls back to the plain mean 2/3 (documented), not 0/0.
    adv0, _ = A.opo(jnp.array([[1.0, 0, 1]]), jnp.zeros((1, 3)))
    np.testing.assert_allclose(adv0, [[1 / 3, -2 / 3, 1 / 3]], rtol=1e-6)


def test_passk_hand_case():
    # r = [.2,.9,.5,.4]: best is index 1, second best .5 -> diff .4.
    # std (ddof 1): mean .5, squared deviations .09+.16+0+.01 = .26, var .0866667,
    # std .2943920 -> A_1 = .4 / (.2943920 + 1e-6) = 1.358733.
    r = jnp.array([[0.2, 0.9, 0.5, 0.4]])
    adv, _ = A.passk(r)
    np.testing.assert_allclose(adv, [[0, 1.358733, 0, 0]], rtol=1e-5)
    adv, _ = A.passk(r, norm_by_std=False)
    np.testing.assert_allclose(adv, [[0, 0.4, 0, 0]], rtol=1e-6)
    # a tie at the top: the first best gets r_max - r_second = 0.
    adv, _ = A.passk(jnp.array([[0.9, 0.2, 0.9]]))
    assert np.all(np.asarray(adv) == 0)


def np_kalman(r, Q=1e-5, R=1e-2, eps=1e-8):
    # straight from the KRPO equations: predict P- = P + Q, gain K = P- / (P- + R),
    # update x += K (z - x), P = (1 - K) P-, advantage (z - x) / (sqrt(P) + eps).
    x, P, out = 0.0, 1.0, []
    for z in r:
        Pm = P + Q
        K = Pm / (Pm + R)
        x = x + K * (z - x)
        P = (1 - K) * Pm
        out.append((z - x) / (math.sqrt(P) + eps))
    return out


def test_kalman_hand_case_and_reference():
    # first sample, x0 = 0, P0 = 1: A_1 = r (1 - K) / sqrt((1 - K) P-) = r sqrt((1 - K) / P-)
    # with 1 - K = R / (P- + R) = 0.01 / 1.01001 and P- = 1.00001:
    # sqrt(0.01 / (1.01001 * 1.00001)) = sqrt(0.01 / 1.0100201) = sqrt(0.0099008) = 0.0995027
    # (float32: r - x cancels ~2 digits, hence rtol 1e-4).
    r = np.array([[1.0, 0.0, 1.0, 1.0, 0.0]], np.float32)
    adv, _ = A.kalman(r)
    np.testing.assert_allclose(adv[0, 0], 0.0995027, rtol=1e-4)
    np.testing.assert_allclose(adv[0], np_kalman(r[0].tolist()), rtol=1e-4)
    # an invalid sample is skipped: same as filtering it out.
    valid = np.array([[True, False, True, True, True]])
    adv_m, _ = A.kalman(r, valid)
    np.testing.assert_allclose(adv_m[0][valid[0]], np_kalman(r[0][valid[0]].tolist()), rtol=1e-4)
    assert adv_m[0, 1] == 0


def test_hardness_weighted_hand_case():
    # R = [1,-1,-1,-1]: mu = -0.5, weight = -0.256 * -0.5 + 1.256 = 1.384;
    # A = [1.5, -.5, -.5, -.5] * 1.384 = [2.076, -0.692, ...].
    adv, _ = A.hardness_weighted(jnp.array([[1.0, -1, -1, -1]]))
    np.testing.assert_allclose(adv, [[2.076, -0.692, -0.692, -0.692]], rtol=1e-5)


def test_unlikeliness_hand_case():
    # r = [1,1,0,0], logp = [-1,-3,-2,-.5]; ascending ranks: idx1 (-3) 0, idx2 (-2) 1,
    # idx0 (-1) 2, idx3 (-.5) 3. r' = r (1 - .25 rank / 4) = [1 - .125, 1, 0, 0]
    # = [.875, 1, 0, 0], then GRPO (ddof 1, eps 1e-6) of r'.
    r = jnp.array([[1.0, 1, 0, 0]])
    lp = jnp.array([[-1.0, -3, -2, -0.5]])
    shaped = np.array([[0.875, 1.0, 0, 0]])
    np.testing.assert_allclose(A.unlikeliness(r, lp)[0], np_grpo(shaped), rtol=1e-5)
    # ties are ranked by position: equal logp -> ranks 0,1,2,3 in index order
    # r' = [1, .9375, .875, .8125]
    adv_t, _ = A.unlikeliness(jnp.ones((1, 4)), jnp.zeros((1, 4)))
    np.testing.assert_allclose(adv_t, np_grpo(np.array([[1, 0.9375, 0.875, 0.8125]])), rtol=1e-5)


def test_seed_grpo_hand_case():
    # r = [1,0,0,0], clusters [0,1,1,2] -> sizes 1,2,1: p = .25,.5,.25;
    # SE = -(2 * .25 ln .25 + .5 ln .5) = 1.0397208; SE_max = ln 4 = 1.3862944;
    # ratio .75 -> scale 1 - .75 = .25; A = grpo(r) * .25 = [.375, -.125, -.125, -.125].
    r = jnp.array([[1.0, 0, 0, 0]])
    adv, m = A.seed_grpo(r, jnp.array([[0, 1, 1, 2]]))
    np.testing.assert_allclose(adv, [[0.375, -0.125, -0.125, -0.125]], rtol=1e-5)
    np.testing.assert_allclose(m["mean_semantic_entropy"], 1.0397208, rtol=1e-6)
    # one cluster (all answers agree): SE = 0, plain GRPO.
    adv1, _ = A.seed_grpo(r, jnp.zeros((1, 4), jnp.int32))
    np.testing.assert_allclose(adv1, np_grpo(np.asarray(r)), rtol=1e-5)
    # all different: SE = SE_max, alpha = 1 -> no update.
    assert np.all(np.asarray(A.seed_grpo(r, jnp.arange(4)[None])[0]) == 0)


def test_to_tokens_row_layout():
    adv = jnp.array([[1.0, 2.0], [3.0, 4.0]])           # P = 2, G = 2
    mask = jnp.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], bool)
    out = A.to_tokens(adv, mask)
    # row p*G+g = sample g of prompt p: rows carry 1, 2, 3, 4; zeros off the mask.
    np.testing.assert_array_equal(out, [[1, 1, 0], [2, 0, 0], [3, 3, 3], [0, 0, 0]])
    with pytest.raises(ValueError, match="B = P \\* G"):
        A.to_tokens(adv, jnp.ones((3, 2), bool))


# ------------------------------------------------------------------ all group estimators

CLUSTERS = np.array([[0, 1, 1, 2, 0]] * 6)
LENGTHS = np.arange(1, 31).reshape(6, 5)
LOGP = -np.linspace(0.1, 3.0, 30).reshape(6, 5)

ESTIMATORS = {
    "grpo": lambda r, v: A.grpo(r, v),
    "grpo_ddof0": lambda r, v: A.grpo(r, v, ddof=0),
    "dr_grpo": lambda r, v: A.dr_grpo(r, v),
    "rloo": lambda r, v: A.rloo(r, v),
    "lite_ppo": lambda r, v: A.lite_ppo(r, v),
    "ngrpo": lambda r, v: A.ngrpo(r, v),
    "opo": lambda r, v: A.opo(r, LENGTHS[: r.shape[0], : r.shape[1]], v),
    "passk": lambda r, v: A.passk(r, v),
    "kalman": lambda r, v: A.kalman(r, v),
    "hardness_weighted": lambda r, v: A.hardness_weighted(r, v),
    "unlikeliness": lambda r, v: A.unlikeliness(r, LOGP[: r.shape[0], : r.shape[1]], v),
    "seed_grpo": lambda r, v: A.seed_grpo(r, CLUSTERS[: r.shape[0], : r.shape[1]], v),
    "bnpo": lambda r, v: A.bnpo(r, v),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_jit_equals_no_jit(name):
    r, valid = random_groups(7, binary=False)
    r = np.clip(r * 0.3 + 0.5, 0, 1).astype(np.float32)
    fn = ESTIMATORS[name]
    with jax.disable_jit():   # estimators jit themselves; this runs them op by op
        adv, m = fn(r, valid)
    adv_j, m_j = fn(r, valid)  # compiled (the estimator's own jit)
    np.testing.assert_allclose(adv_j, adv, rtol=1e-5, atol=1e-6)
    assert set(m) == set(m_j)
    for k in m:
        assert jnp.shape(m[k]) == (), f"metric {k} is not a scalar"
        np.testing.assert_allclose(m_j[k], m[k], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_degenerate_inputs_are_finite_zero_and_counted(name):
    fn = ESTIMATORS[name]
    ones = np.ones((6, 5), bool)
    # G = 1: every group is degenerate.
    adv, m = fn(np.linspace(0, 1, 6, dtype=np.float32)[:, None], None)
    assert np.all(np.asarray(adv) == 0) and int(m["degenerate_groups"]) == 6
    # all rewards equal (0 and 1): finite; group-relative estimators give exactly 0.
    # Three documented exceptions, each the method's point: NGRPO's virtual r_max sample
    # makes all-0 groups negative; the unlikeliness rank penalty separates equal correct
    # answers; KRPO's filter starts at x0 = 0 and lags behind a constant reward of 1.
    for c in (0.0, 1.0):
        adv, m = fn(np.full((6, 5), c, np.float32), ones)
        adv = np.asarray(adv)
        assert np.all(np.isfinite(adv))
        if (name, c) == ("ngrpo", 0.0):
            assert np.all(adv < 0)
        elif (name, c) == ("kalman", 1.0):
            assert np.all(adv > 0)
        elif (name, c) == ("unlikeliness", 1.0):
            np.testing.assert_allclose(adv.sum(axis=1), 0, atol=1e-5)
        else:
            assert np.all(adv == 0), (name, c)
    # all samples invalid
    adv, m = fn(np.ones((6, 5), np.float32), ~ones)
    assert np.all(np.asarray(adv) == 0)
    assert int(m["invalid_samples"]) == 30 and int(m["degenerate_groups"]) == 6
    # NaN / Inf rewards are invalid and counted; the rest is unaffected.
    r = np.tile(np.array([[1, 0, np.nan, 1, 0], [0, np.inf, 1, 1, 0], [1, 0, 0, 1, 1]], np.float32),
                (2, 1))
    r[3:] = np.where(np.isfinite(r[3:]), r[3:], 0.5)
    adv, m = fn(r, ones)
    assert np.all(np.isfinite(adv)) and adv[0, 2] == 0 and adv[1, 1] == 0
    assert int(m["nonfinite_rewards"]) == 2 and int(m["invalid_samples"]) == 2


PERMUTABLE = ["grpo", "dr_grpo", "rloo", "lite_ppo", "ngrpo", "hardness_weighted", "bnpo"]


@pytest.mark.parametrize("name", PERMUTABLE)
def test_permutation_within_group_permutes_advantages(name):
    r, valid = random_groups(3, binary=True)
    perm = np.array([3, 0, 4, 1, 2])
    adv, _ = ESTIMATORS[name](r, valid)
    adv_p, _ = ESTIMATORS[name](r[:, perm], valid[:, perm])
    np.testing.assert_allclose(adv_p, np.asarray(adv)[:, perm], rtol=1e-5, atol=1e-6)


def test_permutation_with_side_inputs():
    r, valid = random_groups(5, binary=True)
    perm = np.array([4, 2, 0, 3, 1])
    adv, _ = A.opo(r, LENGTHS, valid)
    adv_p, _ = A.opo(r[:, perm], LENGTHS[:, perm], valid[:, perm])
    np.testing.assert_allclose(adv_p, np.asarray(adv)[:, perm], rtol=1e-5, atol=1e-6)
    adv, _ = A.seed_grpo(r, CLUSTERS, valid)
    adv_p, _ = A.seed_grpo(r[:, perm], CLUSTERS[:, perm], valid[:, perm])
    np.testing.assert_allclose(adv_p, np.asarray(adv)[:, perm], rtol=1e-5, atol=1e-6)
    logp = np.random.default_rng(0).normal(size=r.shape)  # distinct: no tie-order effects
    adv, _ = A.unlikeliness(r, logp, valid)
    adv_p, _ = A.unlikeliness(r[:, perm], logp[:, perm], valid[:, perm])
    np.testing.assert_allclose(adv_p, np.asarray(adv)[:, perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("a,b", [(3.0, -2.0), (0.01, 5.0), (250.0, 0.0)])
def test_grpo_shift_and_scale_invariance(a, b):
    # (a r + b - mean) / (a std + a eps) = (r - mean) / (std + eps) exactly in math.
    r, valid = random_groups(11)
    adv, _ = A.grpo(r, valid, eps=1e-6)
    adv2, _ = A.grpo(a * r + b, valid, eps=a * 1e-6)
    np.testing.assert_allclose(adv2, adv, rtol=1e-3, atol=1e-4)
    # dr_grpo and rloo are shift invariant and scale linearly.
    np.testing.assert_allclose(A.dr_grpo(a * r + b, valid)[0], a * np.asarray(A.dr_grpo(r, valid)[0]),
                               rtol=1e-3, atol=1e-3 * a)
    np.testing.assert_allclose(A.rloo(a * r + b, valid)[0], a * np.asarray(A.rloo(r, valid)[0]),
                               rtol=1e-3, atol=1e-3 * a)


def test_grpo_advantages_sum_to_zero_per_group():
    r, valid = random_groups(2)
    for fn in (A.grpo, A.dr_grpo, A.rloo):
        adv = np.asarray(fn(r, valid)[0])
        np.testing.assert_allclose(adv.sum(axis=1), 0, atol=1e-5)


def test_masked_equals_filtered():
    # an invalid sample changes nothing for the others: same as deleting it.
    r = np.array([[0.3, 5.0, 0.9, 0.1, 0.4]], np.float32)
    valid = np.array([[True, False, True, True, True]])
    keep = valid[0]
    for name in ["grpo", "rloo", "ngrpo"]:
        adv_m, _ = ESTIMATORS[name](r, valid)
        adv_f, _ = ESTIMATORS[name](r[:, keep], None)
        np.testing.assert_allclose(np.asarray(adv_m)[:, keep], adv_f, rtol=1e-5, atol=1e-6)
        assert adv_m[0, 1] == 0


# ------------------------------------------------------------------ registry and errors


def test_registry_lists_every_estimator():
    expected = {"grpo", "dr_grpo", "rloo", "lite_ppo", "ngrpo", "opo", "passk", "kalman",
                "hardness_weighted", "unlikeliness", "seed_grpo", "bnpo", "gae", "egae",
                "reinforce_pp", "reinforce_pp_baseline", "gigpo", "brpo", "s_grpo",
                "single_stream", "history_length"}
    assert expected <= set(A.names())
    assert A.get("grpo") is A.grpo
    with pytest.raises(KeyError, match="unknown advantage estimator 'grpoo'"):
        A.get("grpoo")


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="grpo: rewards must be \\[P, G\\]"):
        A.grpo(jnp.zeros(4))
    with pytest.raises(ValueError, match="grpo: valid has shape"):
        A.grpo(jnp.zeros((2, 3)), jnp.ones((3, 2), bool))
    with pytest.raises(TypeError, match="grpo: valid must be a bool mask"):
        A.grpo(jnp.zeros((2, 3)), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="grpo: ddof must be 0 or 1"):
        A.grpo(jnp.zeros((2, 3)), ddof=2)
    with pytest.raises(ValueError, match="opo: lengths has shape"):
        A.opo(jnp.zeros((2, 3)), jnp.ones((2, 2)))
    with pytest.raises(TypeError, match="seed_grpo: cluster_ids must be an integer array"):
        A.seed_grpo(jnp.zeros((2, 3)), jnp.zeros((2, 3)))


def test_static_keywords_under_jit():
    r, valid = random_groups(1)
    f = jax.jit(functools.partial(A.grpo, ddof=0, eps=1e-4))
    np.testing.assert_allclose(f(r, valid)[0], np_grpo(r, valid, ddof=0, eps=1e-4), rtol=1e-4, atol=1e-5)
    g = jax.jit(A.passk, static_argnames=("norm_by_std",))
    assert np.all(np.isfinite(g(r, valid, norm_by_std=False)[0]))
