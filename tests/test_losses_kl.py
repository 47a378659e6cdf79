"""Tests for rlx.losses.kl.

References: hand values, and an independent numpy transcription of verl's `kl_penalty`
conventions (k3 written the way verl writes it: kl = ref − logp, exp(kl) − kl − 1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rlx.losses import KL_KINDS, kl, kl_in_reward, kl_loss


def np_kl_verl(logp, ref, kind, clamp=None):
    """numpy float64, verl's formulas; `clamp` reproduces verl's low_var_kl clipping."""
    logp, ref = np.asarray(logp, np.float64), np.asarray(ref, np.float64)
    if kind == "k1":
        out = logp - ref
    elif kind == "k2":
        out = 0.5 * (logp - ref) ** 2
    elif kind == "abs":
        out = np.abs(logp - ref)
    elif kind == "k3":
        k = ref - logp
        if clamp is not None:
            k = np.clip(k, -20, 20)
        out = np.exp(k) - k - 1
    else:
        raise AssertionError(kind)
    return out if clamp is None else np.clip(out, -clamp, clamp)


def test_hand_values():
    lp = jnp.array([0.5, -1.0])
    ref = jnp.zeros(2)
    # Δ = 0.5: k1 0.5, k2 0.125, k3 e^-0.5 + 0.5 - 1 = 0.1065306597, abs 0.5
    # Δ = -1:  k1 -1,  k2 0.5,   k3 e^1 - 1 - 1 = 0.7182818285,    abs 1
    np.testing.assert_allclose(kl(lp, ref, "k1"), [0.5, -1.0])
    np.testing.assert_allclose(kl(lp, ref, "k2"), [0.125, 0.5])
    np.testing.assert_allclose(kl(lp, ref, "k3"), [0.1065306597, 0.7182818285], rtol=1e-6)
    np.testing.assert_allclose(kl(lp, ref, "abs"), [0.5, 1.0])


@pytest.mark.parametrize("kind", ["k1", "k2", "k3", "abs"])
def test_matches_verl_convention(kind):
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(4, 6)).astype(np.float32) - 2
    ref = lp + rng.normal(size=(4, 6)).astype(np.float32) * 0.7
    np.testing.assert_allclose(kl(lp, ref, kind), np_kl_verl(lp, ref, kind), rtol=1e-5, atol=1e-6)
    # k3 >= 0 always; k1 can be negative
    if kind in ("k2", "k3", "abs"):
        assert np.all(np.asarray(kl(lp, ref, kind)) >= 0)


def test_k3_clamp_reproduces_verl_low_var_kl():
    # extreme log-ratios: verl clips ref - logp to [-20, 20], then the estimate to [-10, 10]
    lp = jnp.array([0.0, 0.0, 0.0, -30.0, -3.0])
    ref = jnp.array([30.0, -30.0, 1.0, 0.0, -3.5])
    out = kl(lp, ref, "k3", clamp=10.0)
    np.testing.assert_allclose(out, np_kl_verl(lp, ref, "k3", clamp=10.0), rtol=1e-6)
    assert out[0] == 10.0 and out[3] == 10.0
    # without clamp, a moderate value is untouched and equals the formula
    np.testing.assert_allclose(kl(lp[2:3], ref[2:3], "k3"), [np.exp(1) - 2], rtol=1e-6)
    with pytest.raises(ValueError, match="clamp"):
        kl(lp, ref, "k3", clamp=0.0)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="'k4'"):
        kl(jnp.zeros(2), jnp.zeros(2), "k4")
    with pytest.raises(ValueError, match="ref_logp shape"):
        kl(jnp.zeros(2), jnp.zeros(3), "k1")


@pytest.mark.parametrize("kind", ["k1+", "k3+", "abs+"])
def test_straight_through_value_of_kind_gradient_of_k2(kind):
    lp = jnp.array([0.3, -0.8, 1.2])
    ref = jnp.array([0.0, 0.1, 0.4])
    np.testing.assert_allclose(kl(lp, ref, kind), kl(lp, ref, kind[:-1]), rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(kl(x, ref, kind)))(lp)
    np.testing.assert_allclose(g, lp - ref, rtol=1e-6)  # d/dx ½(x - ref)² = x - ref


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_smooth_kinds_check_grads(kind):
    rng = np.random.default_rng(1)
    lp = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    ref = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    check_grads(lambda x: jnp.sum(kl(x, ref, kind)), (lp,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_kl_loss_masks_padding_and_aggregates():
    lp = jnp.array([[0.5, -np.inf, np.nan], [-1.0, 0.0, 2.0]])
    ref = jnp.zeros((2, 3))
    m = jnp.array([[True, False, False], [True, True, False]])
    loss, metrics = kl_loss(lp, ref, m, kind="k3", coef=0.5)
    # valid Δ: 0.5, -1, 0 -> k3: 0.1065306597, 0.7182818285, 0 ; token-mean = 0.2749374961
    np.testing.assert_allclose(metrics["kl"], 0.2749374961, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.5 * 0.2749374961, rtol=1e-6)
    g = jax.grad(lambda x: kl_loss(x, ref, m)[0])(lp)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~np.asarray(m)] == 0)


def test_kl_in_reward():
    r = jnp.array([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    lp = jnp.array([[0.2, 0.4, -0.1], [0.3, 0.0, 9.0]])
    ref = jnp.zeros((2, 3))
    m = jnp.array([[True, True, True], [True, True, False]])
    out = kl_in_reward(r, lp, ref, m, coef=0.1, kind="k1")
    np.testing.assert_allclose(out, [[-0.02, -0.04, 1.01], [-0.03, 2.0, 0.0]], rtol=1e-6, atol=1e-7)
    # a reward carries no gradient into the log-probs
    g = jax.grad(lambda x: jnp.sum(kl_in_reward(r, x, ref, m, coef=0.1)))(lp)
    assert np.all(g == 0)
    assert set(KL_KINDS) >= {"k1", "k2", "k3", "abs"}
