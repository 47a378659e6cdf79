"""Tests for token-level preference objectives (rlx/losses/token_pref.py): SparsePO,
TGDPO, RTO token rewards, CPL, and the per-token KL helper.

Expected values: float64 numpy formulas written here from the official code's equations
(SparsePO, TGDPO, CPL) or the paper (RTO), hand derivations, and limiting identities
(unit weights and no KL = DPO on summed log-ratios; TGDPO with α = 0 = DPO; CPL with
λ = 1 = reference-free DPO with β = α).
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.losses import jitted, np_logsig
from jax.test_util import check_grads

from rlx.losses import preference as pref
from rlx.losses import token_pref as tp

J = jitted  # one compile per function and shape (cheaper than eager dispatch)


def token_case(seed=0, N=3, T=4):
    rng = np.random.default_rng(seed)
    lc, lr, gc, gr = (rng.normal(size=(N, T)).astype(np.float32) for _ in range(4))
    mc = np.ones((N, T), bool)
    mr = np.ones((N, T), bool)
    mc[0, 3] = mr[1, 2:] = False
    lc[0, 3] = np.nan  # masked positions may hold anything
    return lc, lr, mc, mr, gc, gr


def msum(x, m):
    return np.where(m, x, 0.0).astype(np.float64).sum(1)


def test_sparse_po_unit_weights_is_dpo_and_numpy_with_weights_and_kl():
    lc, lr, mc, mr, wc, wr = token_case(0)
    z = np.zeros(3, np.float32)
    dpo, _ = J(pref.dpo)(msum(lc, mc).astype(np.float32), msum(lr, mr).astype(np.float32), z, z, beta=0.3)
    np.testing.assert_allclose(J(tp.sparse_po)(lc, lr, mc, mr, beta=0.3)[0], dpo, rtol=1e-5)
    wc, wr = np.abs(wc), np.abs(wr)
    kc, kr = np.abs(wr) * 0.1, np.abs(wc) * 0.2
    dc, dr = np.full((3, 4), 0.5, np.float32), np.full((3, 4), 2.0, np.float32)
    u = msum(wc * np.where(mc, lc, 0), mc) - msum(wr * lr, mr)
    delta = msum(dr * kr, mr) - msum(dc * kc, mc)  # KL(ref||pi) weighted: rejected minus chosen
    l1 = 0.01 * (msum(wc, mc) + msum(wr, mr)) + 0.02 * (msum(dc, mc) + msum(dr, mr))
    want = np.mean(-np_logsig(0.3 * (u - delta)) + l1)
    got, m = J(tp.sparse_po)(lc, lr, mc, mr, beta=0.3, reward_weights_chosen=wc, reward_weights_rejected=wr,
                             kl_chosen_NT=kc, kl_rejected_NT=kr, kl_weights_chosen=dc, kl_weights_rejected=dr,
                             l1_reward=0.01, l1_kl=0.02)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    wc0 = wc.copy()
    wc0[:, :2] = 0.0  # columns 0, 1 of the 3 rows: 6 of the 11 valid chosen tokens get weight 0
    _, m = J(tp.sparse_po)(lc, lr, mc, mr, reward_weights_chosen=wc0)
    np.testing.assert_allclose(m["reward_weight_sparsity"], 6 / 11, rtol=1e-6)


def test_token_kl_matches_numpy():
    rng = np.random.default_rng(1)
    zp, zr = rng.normal(size=(2, 3, 5)).astype(np.float32), rng.normal(size=(2, 3, 5)).astype(np.float32)

    def lsm(x):
        x = x.astype(np.float64)
        return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)

    want = (np.exp(lsm(zr)) * (lsm(zr) - lsm(zp))).sum(-1)  # KL(ref || pi)
    np.testing.assert_allclose(J(tp.token_kl)(zp, zr), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(J(tp.token_kl)(zr, zr), 0.0, atol=1e-6)


def test_tgdpo_numpy_alpha_zero_and_no_gradient_into_guide():
    lc, lr, mc, mr, gc, gr = token_case(2)
    zc = msum(0.2 * (1 + 0.5 * 0.2 * gc) * np.where(mc, lc, 0), mc)
    zr = msum(0.2 * (1 - 0.5 * 0.2 * gr) * lr, mr)
    np.testing.assert_allclose(J(tp.tgdpo)(lc, lr, mc, mr, gc, gr, beta=0.2, alpha=0.5)[0],
                               np.mean(-np_logsig(zc - zr)), rtol=1e-5)
    z = np.zeros(3, np.float32)
    dpo, _ = J(pref.dpo)(msum(lc, mc).astype(np.float32), msum(lr, mr).astype(np.float32), z, z, beta=0.2)
    np.testing.assert_allclose(J(tp.tgdpo)(lc, lr, mc, mr, gc, gr, beta=0.2, alpha=0.0)[0], dpo, rtol=1e-5)
    g = jax.grad(lambda x: J(tp.tgdpo)(np.where(mc, lc, 0), lr, mc, mr, x, gr, beta=0.2, alpha=0.5)[0])(gc)
    np.testing.assert_array_equal(g, 0.0)


def test_rto_token_rewards_by_hand():
    dpo = np.array([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    ref = np.array([[-1.5, -1.0, -3.0], [-2.0, -2.0, -2.0], [0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], bool)
    r = J(tp.rto_token_rewards)(dpo, ref, mask, beta=0.5, final_reward_B=np.array([2.0, -1.0, 7.0], np.float32),
                                final_coef=0.5)
    # 0.5 * (dpo - ref) on valid tokens; + 0.5 * final at the last valid token; an empty row stays 0
    np.testing.assert_allclose(r, [[0.25, -0.5 + 1.0, 0.0], [0.5, 0.5, 0.5 - 0.5], [0.0, 0.0, 0.0]], atol=1e-7)
    g = jax.grad(lambda d: J(tp.rto_token_rewards)(d, ref, mask).sum())(dpo)
    np.testing.assert_array_equal(g, 0.0)  # rewards are data


def test_cpl_numpy_limit_and_bc():
    lc, lr, mc, mr, _, _ = token_case(3)
    lc, lr = -np.abs(lc) - 1, -np.abs(lr) - 1
    ac, ar = 0.5 * msum(lc, mc), 0.5 * msum(lr, mr)
    np.testing.assert_allclose(J(tp.cpl)(lc, mc, lr, mr, alpha=0.5, contrastive_bias=0.7)[0],
                               np.mean(-np_logsig(ac - 0.7 * ar)), rtol=1e-5)
    z = np.zeros(3, np.float32)
    dpo, _ = J(pref.dpo)(msum(lc, mc).astype(np.float32), msum(lr, mr).astype(np.float32), z, z, beta=0.5)
    np.testing.assert_allclose(J(tp.cpl)(lc, mc, lr, mr, alpha=0.5)[0], dpo, rtol=1e-5)
    bc = (msum(-lc, mc).sum() + msum(-lr, mr).sum()) / (mc.sum() + mr.sum())  # token mean of -log pi
    loss, m = J(tp.cpl)(lc, mc, lr, mr, alpha=0.5, bc_coeff=0.1)
    np.testing.assert_allclose(m["bc_loss"], bc, rtol=1e-5)
    np.testing.assert_allclose(loss, dpo + 0.1 * bc, rtol=1e-5)


def test_token_check_grads():
    lc, lr, mc, mr, gc, gr = token_case(4)
    lc = np.where(mc, lc, 0.0)
    w = np.abs(gc)

    @jax.jit
    def losses(a, b):
        return jnp.stack([tp.sparse_po(a, b, mc, mr, beta=0.5, reward_weights_chosen=w, kl_chosen_NT=w * 0.1,
                                       kl_rejected_NT=np.abs(gr) * 0.1)[0],
                          tp.tgdpo(a, b, mc, mr, gc, gr, beta=0.5)[0],
                          tp.cpl(a, mc, b, mr, alpha=0.3, contrastive_bias=0.5, bc_coeff=0.1)[0]])

    for i in range(3):
        check_grads(lambda a, b: losses(a, b)[i], (lc, lr), order=1, modes=["rev"], atol=2e-2, rtol=2e-2,
                    eps=1e-3)
    # NaN in masked tokens and in a whole invalid pair leaks into no gradient
    valid = np.array([True, False, True])
    nan_c = np.where(mc, lc, np.nan)
    nan_c[1] = np.nan

    @jax.jit
    def masked_grads(a):
        return jax.grad(lambda x: tp.sparse_po(x, lr, mc, mr, valid=valid)[0] + tp.tgdpo(
            x, lr, mc, mr, gc, gr, valid=valid)[0] + tp.cpl(x, mc, lr, mr, valid=valid)[0])(a)

    g = masked_grads(nan_c)
    assert np.all(np.isfinite(g)) and np.all(g[1] == 0) and np.all(g[~mc] == 0)
    # the learned-mask case: gradients reach the reward weights
    g = jax.jit(jax.grad(lambda x: tp.sparse_po(lc, lr, mc, mr, reward_weights_chosen=x)[0]))(w)
    assert np.any(g != 0) and np.all(g[~mc] == 0)


def test_token_errors():
    x = np.zeros((2, 3), np.float32)
    m = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="mask_rejected_NT"):
        tp.sparse_po(x, x, m, np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="given together"):
        tp.sparse_po(x, x, m, m, kl_chosen_NT=x)
    with pytest.raises(ValueError, match="guide_logratio_rejected_NT"):
        tp.tgdpo(x, x, m, m, x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="contrastive_bias"):
        tp.cpl(x, m, x, m, contrastive_bias=1.5)
    with pytest.raises(ValueError, match="final_reward_B"):
        tp.rto_token_rewards(x, x, m, final_reward_B=np.zeros(3))
