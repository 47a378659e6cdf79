"""Tests for rlx.losses.regularizers: entropy bonus, targeted entropy, SPO probability mask.

Expected values are derived by hand in the comments.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rlx.losses import entropy_bonus, spo_probability_mask, targeted_entropy

H = jnp.array([[0.2, 0.4, 9.0], [1.0, np.nan, np.nan]])
M = jnp.array([[True, True, False], [True, False, False]])
# valid entropies 0.2, 0.4, 1.0: token-mean 1.6/3 = 0.5333..; seq-mean-token-mean (0.3 + 1.0)/2 = 0.65


def test_entropy_bonus_values_and_gradient():
    loss, m = entropy_bonus(H, M, coef=0.01)
    np.testing.assert_allclose(m["entropy"], 1.6 / 3, rtol=1e-6)
    np.testing.assert_allclose(loss, -0.01 * 1.6 / 3, rtol=1e-6)
    np.testing.assert_allclose(entropy_bonus(H, M, coef=1.0, agg="seq-mean-token-mean")[0], -0.65, rtol=1e-6)
    g = jax.grad(lambda h: entropy_bonus(h, M, coef=0.01)[0])(H)
    # d/dH_t of -c·ΣH/3 = -c/3 on valid tokens, 0 elsewhere (NaN padding never leaks)
    np.testing.assert_allclose(g, np.where(M, -0.01 / 3, 0.0), rtol=1e-6)
    check_grads(lambda h: entropy_bonus(h, M)[0], (jnp.nan_to_num(H),), order=1, modes=("rev",),
                atol=1e-2, rtol=1e-2)


def test_targeted_entropy_pushes_toward_target_from_both_sides():
    # token-mean entropy 0.5333 < 0.55: term = 0.001·|0.5333 - 0.55| = 0.001·0.016667
    loss, m = targeted_entropy(H, M)
    np.testing.assert_allclose(loss, 0.001 * (0.55 - 1.6 / 3), rtol=1e-5)
    np.testing.assert_allclose(m["entropy_gap"], 1.6 / 3 - 0.55, rtol=1e-5)
    g_low = jax.grad(lambda h: targeted_entropy(h, M)[0])(H)
    assert np.all(np.asarray(g_low)[np.asarray(M)] < 0)      # below target: minimizing raises H
    loss_hi, _ = targeted_entropy(H, M, agg="seq-mean-token-mean")  # 0.65 > 0.55
    np.testing.assert_allclose(loss_hi, 0.001 * 0.1, rtol=1e-5)
    g_hi = jax.grad(lambda h: targeted_entropy(h, M, agg="seq-mean-token-mean")[0])(H)
    assert np.all(np.asarray(g_hi)[np.asarray(M)] > 0)       # above target: minimizing lowers H
    assert np.all(np.asarray(g_hi)[~np.asarray(M)] == 0)


def test_spo_probability_mask_matches_official_rule():
    # p_old = [0.95, 0.5, 0.91, 0.2] ; SPO keeps exp(old_logp) < 0.9 (p_old >= 0.9 masked out)
    old = jnp.log(jnp.array([[0.95, 0.5, 0.91, 0.2]]))
    m = jnp.array([[True, True, True, False]])
    keep = spo_probability_mask(old, m)
    np.testing.assert_array_equal(keep, [[False, True, False, False]])
    assert keep.dtype == jnp.bool_
    np.testing.assert_array_equal(spo_probability_mask(old, m, threshold=0.99), [[True, True, True, False]])
    with pytest.raises(ValueError, match="threshold"):
        spo_probability_mask(old, m, threshold=1.5)
    with pytest.raises(ValueError, match="mask"):
        spo_probability_mask(old, m[:, :2])
