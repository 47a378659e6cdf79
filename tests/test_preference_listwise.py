"""Tests for the listwise losses (rlx/losses/listwise.py): LiPO-λ, PRO, TPO-tree.

References: float64 numpy loops written here from the papers' formulas (LiPO's lambda
weights, PRO's Plackett–Luce stages with the official dynamic temperature), hand
derivations and limiting identities (PRO with two responses = Bradley–Terry; LiPO on
two items = a weighted pairwise logistic (DPO) loss).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.losses import jitted, np_logsig
from jax.test_util import check_grads

from rlx.losses import listwise as lw
from rlx.losses import preference as pref

_STATIC = ("weighting", "num_steps")


def J(fn):
    return jitted(fn, _STATIC)


# ----------------------------------------------------------------------- PRO


def np_pro(s, r=None):
    """PRO per list (best first): sum_k [log sum_{j>=k} exp(s_j T_kj) - s_k T_kk]."""
    K = len(s)
    total = 0.0
    for k in range(K - 1):
        if r is None:
            t_self, t = 1.0, np.ones(K)
        else:
            t = r[k] - r
            t_self = max(t[k + 1:])
        z = np.concatenate([[s[k] * t_self], s[k + 1:] * t[k + 1:]])
        total += np.logaddexp.reduce(z) - s[k] * t_self
    return total


def test_pro_two_responses_is_bradley_terry():
    s = np.array([[1.5, -0.5], [0.2, 0.9]], np.float32)
    loss, _ = J(lw.pro)(s)
    np.testing.assert_allclose(loss, np.mean(-np_logsig(s[:, 0] - s[:, 1].astype(np.float64))), rtol=1e-6)


def test_pro_matches_numpy_with_and_without_rewards():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 4)).astype(np.float32)
    r = np.sort(rng.normal(size=(3, 4)), axis=1)[:, ::-1].astype(np.float32)  # best first
    np.testing.assert_allclose(J(lw.pro)(s)[0], np.mean([np_pro(x) for x in s.astype(np.float64)]), rtol=1e-5)
    np.testing.assert_allclose(J(lw.pro)(s, rewards_NK=r)[0],
                               np.mean([np_pro(x, y) for x, y in zip(s.astype(np.float64), r)]), rtol=1e-5)


def test_pro_ranks_mask_and_sft():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(2, 3)).astype(np.float32)
    perm = np.array([[2, 0, 1], [1, 2, 0]])  # response perm[i, j] is put at position j
    shuffled = np.take_along_axis(s, perm, axis=1)
    ranks = perm  # s is best first, so the response at position j has rank perm[i, j]
    np.testing.assert_allclose(J(lw.pro)(shuffled, ranks_NK=ranks)[0], J(lw.pro)(s)[0], rtol=1e-6)
    # a padded 4th response (invalid) changes nothing
    padded = np.concatenate([s, np.full((2, 1), np.nan, np.float32)], axis=1)
    valid = np.array([[1, 1, 1, 0]] * 2, bool)
    np.testing.assert_allclose(J(lw.pro)(padded, valid_NK=valid)[0], J(lw.pro)(s)[0], rtol=1e-6)
    g = jax.jit(jax.grad(lambda x: lw.pro(x, valid_NK=valid, rewards_NK=padded)[0]))(padded)
    assert np.all(np.isfinite(g)) and np.all(g[:, 3] == 0)  # NaN padding leaks into no gradient
    # SFT term: 0.05 * (K-1)^2 * mean(-sft) = 0.05 * 4 * 3 = 0.6 for K = 3, sft = [-2, -4]
    loss, m = J(lw.pro)(s, sft_logp_N=np.array([-2.0, -4.0], np.float32))
    np.testing.assert_allclose(m["sft_loss"], 0.6, rtol=1e-6)
    np.testing.assert_allclose(loss, J(lw.pro)(s)[0] + 0.6, rtol=1e-6)


# ----------------------------------------------------------------------- LiPO


def np_lipo(lp, ref, labels, beta, valid=None, weighting="lambda"):
    """LiPO-λ per the paper: sum over label-ordered pairs of Δ_ij (-log σ(s_i - s_j))."""
    losses = []
    for n in range(lp.shape[0]):
        idx = [k for k in range(lp.shape[1]) if valid is None or valid[n, k]]
        s = beta * (lp[n] - ref[n])
        order = sorted(idx, key=lambda k: (-s[k], k))  # rank by current score, descending
        tau = {k: order.index(k) + 1 for k in idx}
        total, pairs = 0.0, 0
        for i, j in itertools.permutations(idx, 2):
            if labels[n, i] > labels[n, j]:
                w = 1.0
                if weighting == "lambda":
                    w = abs((2 ** labels[n, i] - 1) - (2 ** labels[n, j] - 1)) * abs(
                        1 / np.log2(1 + tau[i]) - 1 / np.log2(1 + tau[j]))
                total += w * -np_logsig(s[i] - s[j])
                pairs += 1
        if pairs:
            losses.append(total)
    return np.mean(losses)


def test_lipo_two_items_is_weighted_dpo():
    rng = np.random.default_rng(2)
    lp, ref = (rng.normal(size=(3, 2)).astype(np.float32) for _ in range(2))
    labels = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.25]], np.float32)
    # winner / loser per row, and Δ = |G_w - G_l| (1/log2(2) - 1/log2(3)) whatever the current order
    w = np.argmax(labels, axis=1)
    l_ = 1 - w
    r = np.arange(3)
    per_dpo = -np_logsig(0.2 * ((lp[r, w] - ref[r, w]) - (lp[r, l_] - ref[r, l_])).astype(np.float64))
    gain = 2.0 ** labels - 1
    delta = np.abs(gain[:, 0] - gain[:, 1]) * (1 - 1 / np.log2(3))
    np.testing.assert_allclose(J(lw.lipo)(lp, ref, labels, beta=0.2)[0], np.mean(delta * per_dpo), rtol=1e-5)
    # unit weights: plain DPO on each pair
    dpo, _ = J(pref.dpo)(lp[r, w], lp[r, l_], ref[r, w], ref[r, l_], beta=0.2)
    np.testing.assert_allclose(J(lw.lipo)(lp, ref, labels, beta=0.2, weighting="none")[0], dpo, rtol=1e-5)


@pytest.mark.parametrize("weighting", ["lambda", "none"])
def test_lipo_matches_numpy(weighting):
    rng = np.random.default_rng(3)
    lp, ref = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(2))
    labels = rng.integers(0, 3, size=(3, 4)).astype(np.float32)  # ties produce no pair
    labels[0] = [2, 1, 0, 1]
    valid = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [1, 0, 1, 1]], bool)
    got, m = J(lw.lipo)(lp, ref, labels, beta=0.5, valid_NK=valid, weighting=weighting)
    np.testing.assert_allclose(got, np_lipo(lp.astype(np.float64), ref, labels, 0.5, valid, weighting),
                               rtol=1e-5)
    nan_lp, nan_labels = np.where(valid, lp, np.nan), np.where(valid, labels, np.nan)
    g = jax.jit(jax.grad(lambda x: lw.lipo(x, ref, nan_labels, beta=0.5, valid_NK=valid, weighting=weighting)[0]))(
        nan_lp)
    assert np.all(np.isfinite(g)) and np.all(g[~valid] == 0)


def test_lipo_lists_without_pairs_do_not_count():
    lp = np.array([[1.0, 0.0], [0.3, 0.1]], np.float32)
    labels = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)  # second list: a tie, no ordered pair
    both, m = J(lw.lipo)(lp, np.zeros_like(lp), labels)
    first, _ = J(lw.lipo)(lp[:1], np.zeros((1, 2), np.float32), labels[:1])
    np.testing.assert_allclose(both, first, rtol=1e-6)
    np.testing.assert_allclose(m["pairs"], 0.5)
    np.testing.assert_allclose(m["top1_accuracy"], 1.0)


def test_rank_positions_and_lambda_weights_by_hand():
    s = jnp.array([[0.1, 0.9, 0.5, 7.0]])
    v = jnp.array([[True, True, True, False]])
    np.testing.assert_array_equal(J(lw.rank_positions)(s, v), [[3, 1, 2, 4]])
    w = J(lw.lambda_weights)(jnp.array([[1.0, 0.0, 2.0, 0.0]]), s, v)
    # items 0 (G=1, tau=3) and 2 (G=3, tau=2): |1-3| * |1/log2(4) - 1/log2(3)| = 2 (1/log2 3 - 1/2)
    np.testing.assert_allclose(w[0, 0, 2], 2 * (1 / np.log2(3) - 0.5), rtol=1e-6)
    np.testing.assert_allclose(w[0, 2, 0], w[0, 0, 2])


def test_listwise_check_grads():
    rng = np.random.default_rng(4)
    lp = rng.normal(size=(2, 3)).astype(np.float32)
    ref = np.zeros((2, 3), np.float32)
    labels = np.array([[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]], np.float32)
    rewards = np.array([[3.0, 2.0, 0.5], [1.0, 0.0, -1.0]], np.float32)

    @jax.jit
    def losses(x):
        return jnp.stack([lw.lipo(x, ref, labels, beta=1.0)[0], lw.pro(x, rewards_NK=rewards)[0],
                          lw.pro(x)[0]])

    for i in range(3):
        check_grads(lambda x: losses(x)[i], (lp,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


# ----------------------------------------------------------------------- TPO tree


def test_step_means_and_step_weights_by_hand():
    x = jnp.array([[[1.0, 3.0, 5.0, 100.0]]])
    mask = jnp.array([[[True, True, True, False]]])
    steps = jnp.array([[[1, 1, 2, 2]]])  # step 1 = tokens 0, 1; step 2 = token 2 (token 3 masked)
    means, present = J(lw.step_means)(x, mask, steps, num_steps=3)
    np.testing.assert_allclose(means, [[[2.0, 5.0, 0.0]]])
    np.testing.assert_array_equal(present, [[[True, True, False]]])
    h = jnp.array([[[[1.0, 0.0], [1.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [1.0, 1.0]]]])  # [1,3,2,2]
    present = jnp.array([[[True, True], [True, True], [True, False]]])
    w = J(lw.tpo_step_weights)(h, present)
    # cos with response 0's step: same direction -> 2, orthogonal -> 1, opposite -> 0; missing step -> 0
    np.testing.assert_allclose(w, [[[2.0, 2.0], [2.0, 1.0], [0.0, 0.0]]], atol=1e-6)


def test_tpo_tree_reduces_to_lipo_and_matches_weighted_scores():
    rng = np.random.default_rng(5)
    N, K, T = 2, 3, 4
    lr = rng.normal(size=(N, K, T)).astype(np.float32)
    mask = np.ones((N, K, T), bool)
    mask[0, 1, 3] = False
    labels = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0]], np.float32)
    one_step = np.where(mask, 1, 0)
    # one step per response, unit weights: score = mean token log-ratio -> lipo on those means
    means = (lr * mask).sum(-1) / mask.sum(-1)
    got, _ = J(lw.tpo_tree)(lr, mask, one_step, labels, num_steps=1, beta=0.7)
    want, _ = J(lw.lipo)(means, np.zeros((N, K), np.float32), labels, beta=0.7)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # two steps with weights: score = (w1 m1 + w2 m2)/(w1 + w2)
    steps = np.array([1, 1, 2, 2])[None, None].repeat(N, 0).repeat(K, 1)
    wts = rng.uniform(0.5, 2.0, size=(N, K, 2)).astype(np.float32)
    m1 = lr[..., :2].mean(-1)
    m2 = np.where(mask[..., 2:], lr[..., 2:], 0).sum(-1) / mask[..., 2:].sum(-1)
    score = (wts[..., 0] * m1 + wts[..., 1] * m2) / wts.sum(-1)
    got, _ = J(lw.tpo_tree)(lr, mask, steps, labels, num_steps=2, beta=0.7, step_weights_NKS=wts, weighting="none")
    want, _ = J(lw.lipo)(score.astype(np.float32), np.zeros((N, K), np.float32), labels, beta=0.7, weighting="none")
    np.testing.assert_allclose(got, want, rtol=1e-5)
    g = jax.grad(lambda x: J(lw.tpo_tree)(x, mask, one_step, labels, num_steps=1)[0])(lr)
    assert np.all(g[~mask] == 0) and np.any(g != 0)


def test_listwise_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="ref_logp_NK"):
        lw.lipo(x, np.zeros((2, 2)), x)
    with pytest.raises(ValueError, match="weighting"):
        lw.lipo(x, x, x, weighting="ndcg")
    with pytest.raises(ValueError, match="sft_logp_N"):
        lw.pro(x, sft_logp_N=np.zeros(3))
    with pytest.raises(ValueError, match="step_ids_NKT"):
        lw.tpo_tree(np.zeros((2, 3, 4)), np.ones((2, 3, 4)), np.ones((2, 3, 5), int), x, num_steps=1)
