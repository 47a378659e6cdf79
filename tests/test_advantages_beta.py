"""Tests for BNPO (rlx.advantages.beta).

The reference below is written from the BNPO formulas with plain numpy/math: the Beta
density as x^(a-1) (1-x)^(b-1) / B(a, b) with B from math.lgamma (rlx works in log
space with jax.scipy.special), and the fit from the moment formulas.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import rlx.advantages as A


def np_beta_fit(p):
    if p.size < 2 or not p.var(ddof=1) > 0:
        return 1.0, 1.0
    m, v = p.mean(), p.var(ddof=1)
    k = m * (1 - m) / v - 1
    return max(1 + k * m / 3, 1.0), max(1 + k * (1 - m) / 3, 1.0)


def np_beta_pdf(x, a, b):
    log_b = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return x ** (a - 1) * (1 - x) ** (b - 1) / math.exp(log_b)


def np_bnpo(r, valid=None, r_min=0.0, r_max=1.0):
    r_CPG = r if r.ndim == 3 else r[None]
    C, P, G = r_CPG.shape
    ok = (np.ones((P, G), bool) if valid is None else valid) & np.all(np.isfinite(r_CPG), 0)
    out = np.zeros((C, P, G))
    fits = []
    for c in range(C):
        s = (r_CPG[c].astype(np.float64) - r_min) / (r_max - r_min)
        fit = ok.sum(1) >= 2
        p = np.array([s[q][ok[q]].mean() if fit[q] else 0.0 for q in range(P)])
        a, b = np_beta_fit(p[fit])
        fits.append((a, b))
        for q in np.flatnonzero(fit):
            pdf = np_beta_pdf(min(max(p[q], 0.0), 1.0), a, b)
            w = 1e6 if pdf == 0 else min(1.0 / pdf, 1e6)
            out[c, q, ok[q]] = w * (s[q][ok[q]] - p[q])
    return out.mean(0), fits


WORKED = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], np.float32)


def test_worked_case_alpha_beta():
    # group means p = [.25, .5, .75, 0]: m = 0.375; deviations -.125, .125, .375, -.375,
    # squares sum to .3125, unbiased v = .3125 / 3 = .1041667; m (1 - m) / v = .234375 /
    # .1041667 = 2.25, minus 1 = 1.25; a = 1.25 * .375 = .46875, b = 1.25 * .625 = .78125;
    # alpha = 1 + a / 3 = 1.15625, beta = 1 + b / 3 = 1.2604167.
    adv, m = A.bnpo(WORKED)
    np.testing.assert_allclose(m["alpha"], 1.15625, rtol=1e-6)
    np.testing.assert_allclose(m["beta"], 1.2604167, rtol=1e-6)
    assert int(m["fallback"]) == 0
    # advantages: (r - p) / Beta_pdf(p; alpha, beta), pdf from scipy (a third implementation)
    p = WORKED.mean(1)
    with np.errstate(divide="ignore"):
        w = np.minimum(1.0 / stats.beta.pdf(p, 1.15625, 1.2604167), 1e6)
    np.testing.assert_allclose(adv, w[:, None] * (WORKED - p[:, None]), rtol=1e-5, atol=1e-6)
    # the p = 0 group: pdf(0) = 0 for alpha > 1, weight clipped to 1e6, times (0 - 0) = 0.
    assert np.all(np.asarray(adv[3]) == 0)


@pytest.mark.parametrize("seed", range(4))
def test_bnpo_matches_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    r = (rng.random((8, 6)) < rng.random((8, 1))).astype(np.float32)
    if seed % 2:
        r = rng.random((8, 6)).astype(np.float32)   # continuous rewards in [0, 1]
    valid = rng.random((8, 6)) < 0.85
    valid[0] = False                                 # empty group: left out of the fit
    adv, m = A.bnpo(r, valid)
    ref, ((a, b),) = np_bnpo(r, valid)
    np.testing.assert_allclose(m["alpha"], a, rtol=1e-5)
    np.testing.assert_allclose(m["beta"], b, rtol=1e-5)
    np.testing.assert_allclose(adv, ref, rtol=1e-4, atol=1e-5)


def test_decomposition_matches_reference_and_component_average():
    rng = np.random.default_rng(3)
    r = (rng.random((3, 8, 6)) < rng.random((3, 8, 1))).astype(np.float32)   # C = 3 components
    valid = rng.random((8, 6)) < 0.9
    adv, m = A.bnpo(r, valid)
    ref, fits = np_bnpo(r, valid)
    np.testing.assert_allclose(adv, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m["alpha"], np.mean([f[0] for f in fits]), rtol=1e-5)
    # each component has its own Beta fit; the advantage is their average.
    per_comp = [np.asarray(A.bnpo(r[c], valid)[0]) for c in range(3)]
    np.testing.assert_allclose(adv, np.mean(per_comp, axis=0), rtol=1e-5, atol=1e-6)


def test_reward_range_rescaling():
    # rewards in [2, 6] with r_min=2, r_max=6 are the same problem as rewards in [0, 1].
    r = WORKED * 4 + 2
    np.testing.assert_allclose(A.bnpo(r, r_min=2.0, r_max=6.0)[0], A.bnpo(WORKED)[0], rtol=1e-5)
    _, m = A.bnpo(WORKED * 2)    # outside [0, 1] without rescaling: counted
    assert int(m["out_of_range_samples"]) == 6
    with pytest.raises(ValueError, match="r_max > r_min"):
        A.bnpo(WORKED, r_min=1.0, r_max=1.0)


def test_zero_variance_and_single_prompt_fall_back_to_uniform_beta():
    # every prompt has p = .5: v = 0, where the official code divides by zero.
    # Fallback alpha = beta = 1: pdf = 1, weight 1, A = r - .5.
    r = jnp.array([[1.0, 0], [0, 1], [1, 0]])
    adv, m = A.bnpo(r)
    assert float(m["alpha"]) == 1.0 and float(m["beta"]) == 1.0 and int(m["fallback"]) == 1
    np.testing.assert_allclose(adv, np.asarray(r) - 0.5, rtol=1e-6)
    # one prompt: alpha = beta = 1 (the official code's m = 0, v = 1 gives the same).
    adv, m = A.bnpo(jnp.array([[1.0, 0, 0, 1]]))
    assert float(m["alpha"]) == 1.0 and float(m["beta"]) == 1.0
    np.testing.assert_allclose(adv, [[0.5, -0.5, -0.5, 0.5]], rtol=1e-6)
    # all rewards equal: everything 0, finite.
    for c in (0.0, 1.0):
        adv, m = A.bnpo(jnp.full((4, 3), c))
        assert np.all(np.asarray(adv) == 0)


def test_degenerate_and_nonfinite():
    r = WORKED.copy()
    r[1, 2] = np.nan
    valid = np.ones(r.shape, bool)
    valid[2, 1:] = False                              # group 2 keeps one sample
    adv, m = A.bnpo(r, valid)
    assert np.all(np.isfinite(adv))
    assert adv[1, 2] == 0 and np.all(np.asarray(adv[2]) == 0)
    assert int(m["nonfinite_rewards"]) == 1 and int(m["degenerate_groups"]) == 1
    ref, _ = np_bnpo(r, valid)
    np.testing.assert_allclose(adv, ref, rtol=1e-4, atol=1e-5)
    # NaN in one component invalidates the sample in all components.
    r3 = np.stack([WORKED, WORKED])
    r3[1, 0, 0] = np.inf
    adv3, m3 = A.bnpo(r3)
    assert adv3[0, 0] == 0 and int(m3["invalid_samples"]) == 1


def test_inside_a_callers_jit():
    # (op-by-op execution vs compiled is covered for [P, G] in test_advantages_group.)
    rng = np.random.default_rng(0)
    r = (rng.random((2, 8, 6)) < 0.4).astype(np.float32)
    adv, m = A.bnpo(r)
    adv_j, m_j = jax.jit(functools.partial(A.bnpo, r_min=0.0, r_max=1.0))(r)
    np.testing.assert_allclose(adv_j, adv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m_j["alpha"], m["alpha"], rtol=1e-6)


def test_bnpo_generalizes_reinforce_with_group_mean_baseline():
    # BNPO's claim: with alpha = beta = 1 the weight is 1 -> REINFORCE with the group-mean
    # baseline, i.e. exactly dr_grpo.
    r = jnp.array([[1.0, 0, 1], [0, 1, 1], [1, 0, 1]])   # p = 2/3 for all prompts -> v = 0
    np.testing.assert_allclose(A.bnpo(r)[0], A.dr_grpo(r)[0], rtol=1e-6)


def test_permutations_of_prompts_and_samples():
    # the Beta fit is over the batch's prompts (order-free); samples within a group are
    # exchangeable.
    rng = np.random.default_rng(5)
    r = (rng.random((8, 6)) < rng.random((8, 1))).astype(np.float32)
    valid = rng.random((8, 6)) < 0.9
    adv, _ = A.bnpo(r, valid)
    rows, cols = rng.permutation(8), rng.permutation(6)
    adv_p, _ = A.bnpo(r[rows][:, cols], valid[rows][:, cols])
    np.testing.assert_allclose(adv_p, np.asarray(adv)[rows][:, cols], rtol=1e-5, atol=1e-6)
