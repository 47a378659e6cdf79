"""Tests for the token-level estimators (rlx.advantages.gae): GAE, EGAE, REINFORCE++.

The numpy references compact each row to its masked-in tokens and run the textbook
backward recursions in float64; rlx instead scans the padded row and skips masked
positions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.advantages as A


def np_gae_row(r, v, gamma, lam, bootstrap=0.0):
    adv = np.zeros(len(r))
    last, next_v = 0.0, bootstrap
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * next_v - v[t]
        last = delta + gamma * lam * last
        adv[t] = last
        next_v = v[t]
    return adv


def np_gae(r, v, mask, gamma, lam, bootstrap=None):
    out = np.zeros(r.shape)
    for b in range(r.shape[0]):
        m = mask[b]
        boot = 0.0 if bootstrap is None else bootstrap[b]
        out[b, m] = np_gae_row(r[b, m].astype(np.float64), v[b, m].astype(np.float64), gamma, lam, boot)
    return out


def np_whiten(x, mask, eps=1e-8):
    vals = x[mask]
    out = np.zeros(x.shape)
    if vals.size > 1:
        out[mask] = (vals - vals.mean()) / np.sqrt(vals.var(ddof=1) + eps)
    return out


def random_tokens(seed, B=5, T=7):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(B, T)).astype(np.float32)
    v = rng.normal(size=(B, T)).astype(np.float32)
    lengths = np.array([7, 4, 1, 0, 5])
    mask = np.arange(T)[None, :] < lengths[:, None]
    mask[4, 2] = False                       # a hole (e.g. a tool output in a multi-turn row)
    return r, v, mask


def test_gae_hand_case():
    # gamma .9, lam .5, r = [0, 1], V = [.5, .2], finished (V after the end = 0):
    # delta_1 = 1 + 0 - .2 = .8, A_1 = .8; delta_0 = 0 + .9 * .2 - .5 = -.32,
    # A_0 = -.32 + .9 * .5 * .8 = .04. Returns A + V = [.54, 1.0].
    r = jnp.array([[0.0, 1.0]])
    v = jnp.array([[0.5, 0.2]])
    m = jnp.ones((1, 2), bool)
    adv, _ = A.gae(r, v, m, gamma=0.9, lam=0.5, whiten=False)
    np.testing.assert_allclose(adv, [[0.04, 0.8]], rtol=1e-5, atol=1e-7)
    adv2, ret = A.gae_advantages_and_returns(r, v, m, gamma=0.9, lam=0.5)
    np.testing.assert_allclose(ret, [[0.54, 1.0]], rtol=1e-5)


def test_gae_gamma_lam_one_is_return_minus_value():
    # gamma = lam = 1: A_t = sum_{k>=t} r_k - V_t (Monte-Carlo return minus the value).
    r, v, mask = random_tokens(0)
    mask[4, 2] = True
    adv, _ = A.gae(r, v, mask, whiten=False)
    rm = np.where(mask, r, 0)
    mc = np.flip(np.cumsum(np.flip(rm, 1), 1), 1)
    np.testing.assert_allclose(adv, np.where(mask, mc - v, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_gae_matches_numpy_reference(seed):
    r, v, mask = random_tokens(seed)
    raw, _ = A.gae(r, v, mask, gamma=0.95, lam=0.9, whiten=False)
    ref = np_gae(r, v, mask, 0.95, 0.9)
    np.testing.assert_allclose(raw, ref, rtol=1e-5, atol=1e-5)
    white, _ = A.gae(r, v, mask, gamma=0.95, lam=0.9)
    np.testing.assert_allclose(white, np_whiten(ref, mask), rtol=1e-4, atol=1e-5)


def test_egae_hand_case_and_reference():
    # gamma = lam = 1, r = [0, 0], V = [.5, .2], truncated:
    # with bootstrap V(cut) = .7: A_1 = 0 + .7 - .2 = .5; A_0 = 0 + .2 - .5 + .5 = .2.
    # without bootstrap, V(cut) ~ V_last = .2: A_1 = 0; A_0 = -.3.
    r = jnp.zeros((1, 2))
    v = jnp.array([[0.5, 0.2]])
    m = jnp.ones((1, 2), bool)
    t = jnp.array([True])
    adv, _ = A.egae(r, v, m, t, bootstrap=jnp.array([0.7]), whiten=False)
    np.testing.assert_allclose(adv, [[0.2, 0.5]], rtol=1e-5)
    adv, _ = A.egae(r, v, m, t, whiten=False)
    np.testing.assert_allclose(adv, [[-0.3, 0.0]], rtol=1e-5, atol=1e-7)
    # finished rows are plain GAE; random truncated rows match the reference.
    rr, vv, mask = random_tokens(4)
    trunc = np.array([True, False, True, True, False])
    boot = np.linspace(-1, 1, 5).astype(np.float32)
    adv, m_ = A.egae(rr, vv, mask, trunc, gamma=0.9, lam=0.8, bootstrap=boot, whiten=False)
    ref = np_gae(rr, vv, mask, 0.9, 0.8, np.where(trunc & mask.any(1), boot, 0))
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-5)
    assert int(m_["truncated_samples"]) == 3
    adv_f, _ = A.egae(rr, vv, mask, np.zeros(5, bool), gamma=0.9, lam=0.8, whiten=False)
    np.testing.assert_allclose(adv_f, A.gae(rr, vv, mask, gamma=0.9, lam=0.8, whiten=False)[0])


def test_outcome_token_rewards_hand_case():
    # score on the last masked-in token, minus kl_coef * kl on every token.
    m = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    kl = jnp.full((2, 4), 0.5)
    r = A.outcome_token_rewards(jnp.array([2.0, -1.0]), m, kl, kl_coef=0.1)
    np.testing.assert_allclose(r, [[-0.05, -0.05, 1.95, 0], [-1.05, 0, 0, 0]], rtol=1e-6)


def test_reinforce_pp_hand_case():
    # gamma .5, r = [0, 0, 1]: returns G = [.25, .5, 1]; then whitened over the 3 tokens:
    # mean .5833333, unbiased var ((-.3333)^2 + (-.0833)^2 + .4167^2) / 2 = .1458333.
    r = jnp.array([[0.0, 0.0, 1.0]])
    m = jnp.ones((1, 3), bool)
    adv, met = A.reinforce_pp(r, m, gamma=0.5)
    np.testing.assert_allclose(met["returns_mean"], 0.5833333, rtol=1e-6)
    g = np.array([0.25, 0.5, 1.0])
    np.testing.assert_allclose(adv[0], (g - g.mean()) / np.sqrt(0.1458333 + 1e-8), rtol=1e-5)


def test_reinforce_pp_passes_through_masked_positions():
    # gamma 1, r = [1, 2, 9, 4] with token 2 masked out (an observation span): the masked
    # token adds nothing and the return passes through it: G = [1 + 2 + 4, 2 + 4, -, 4]
    # = [7, 6, -, 4] (verl's loop would restart there: [3, 2, -, 4]).
    r = jnp.array([[1.0, 2.0, 9.0, 4.0], [0.5, 0.0, 0.0, 0.0]])
    m = jnp.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool)
    adv, _ = A.reinforce_pp(r, m)
    G = np.array([[7.0, 6.0, 0.0, 4.0], [0.5, 0, 0, 0]])
    np.testing.assert_allclose(adv, np_whiten(G, np.asarray(m)), rtol=1e-5, atol=1e-6)
    # gamma .5 discounts per model token, not per position: r = [1, 0, 0, 2], mask
    # [1, 0, 1, 1]: G_3 = 2, G_2 = 0 + .5 * 2 = 1, G_0 = 1 + .5 * G_2 = 1.5 (the masked
    # token in between neither discounts nor resets).
    _, met = A.reinforce_pp(jnp.array([[1.0, 0.0, 0.0, 2.0]]), jnp.array([[1, 0, 1, 1]], bool), gamma=0.5)
    np.testing.assert_allclose(met["returns_mean"], (1.5 + 1 + 2) / 3, rtol=1e-6)


def np_reinforce_pp_baseline(r, mask, valid, eps=1e-8):
    P, G = r.shape
    seq = np.zeros((P, G))
    keep = np.zeros((P, G), bool)
    for p in range(P):
        ok = valid[p] & np.isfinite(r[p])
        if ok.sum() >= 2:
            seq[p, ok] = r[p, ok] - r[p, ok].mean()
            keep[p, ok] = True
    tok_mask = mask & keep.reshape(-1, 1)
    return np_whiten(np.where(tok_mask, seq.reshape(-1, 1), 0), tok_mask, eps)


def test_reinforce_pp_baseline_matches_reference():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(3, 4)).astype(np.float32)
    valid = np.ones((3, 4), bool)
    valid[2, 1:] = False                             # degenerate group: excluded, 0
    mask = np.arange(6)[None, :] < rng.integers(1, 7, size=(12, 1))
    adv, m = A.reinforce_pp_baseline(r, mask, valid)
    np.testing.assert_allclose(adv, np_reinforce_pp_baseline(r, mask, valid), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(adv[8:]) == 0) and int(m["degenerate_groups"]) == 1


def test_nonfinite_rows_are_invalid_and_empty_masks_are_finite():
    r, v, mask = random_tokens(2)
    r[0, 3] = np.nan                 # inside the mask: row 0 is invalid
    v[1, 6] = np.inf                 # outside the mask of row 1: ignored
    for fn in (lambda: A.gae(r, v, mask), lambda: A.egae(r, v, mask, np.ones(5, bool)),
               lambda: A.reinforce_pp(r, mask)):
        adv, m = fn()
        assert np.all(np.isfinite(adv)) and np.all(np.asarray(adv[0]) == 0)
        assert int(m["invalid_samples"]) == 1
    ref = np_whiten(np_gae(np.nan_to_num(r), v, mask & (np.arange(5) > 0)[:, None], 1.0, 1.0),
                    mask & (np.arange(5) > 0)[:, None])
    np.testing.assert_allclose(A.gae(r, v, mask)[0], ref, rtol=1e-4, atol=1e-5)
    zero_mask = np.zeros_like(mask)
    for adv in (A.gae(r, v, zero_mask)[0], A.reinforce_pp(r, zero_mask)[0],
                A.egae(r, v, zero_mask, np.ones(5, bool))[0]):
        assert np.all(np.asarray(adv) == 0)


@pytest.mark.parametrize("name", ["gae", "egae", "reinforce_pp", "reinforce_pp_baseline"])
def test_jit_equals_no_jit(name):
    r, v, mask = random_tokens(5)
    calls = {
        "gae": lambda: A.gae(r, v, mask, gamma=0.9, lam=0.7),
        "egae": lambda: A.egae(r, v, mask, np.array([1, 0, 1, 0, 1], bool), gamma=0.9),
        "reinforce_pp": lambda: A.reinforce_pp(r, mask, gamma=0.9),
        "reinforce_pp_baseline": lambda: A.reinforce_pp_baseline(r[:1, :5], mask),  # P=1, G=5
    }
    with jax.disable_jit():
        adv, _ = calls[name]()
    adv_j, _ = calls[name]()
    np.testing.assert_allclose(adv_j, adv, rtol=1e-5, atol=1e-6)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="gae: values has shape"):
        A.gae(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.ones((2, 3), bool))
    with pytest.raises(ValueError, match="egae: truncated has shape"):
        A.egae(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.ones((2, 3), bool), jnp.ones(3, bool))
    with pytest.raises(ValueError, match="reinforce_pp_baseline: mask has shape"):
        A.reinforce_pp_baseline(jnp.zeros((2, 3)), jnp.ones((5, 4), bool))
