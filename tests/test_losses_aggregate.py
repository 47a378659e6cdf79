"""Tests for rlx.losses.aggregate: the four modes, empty masks, parts, and 8-device exactness.

References: hand-derived values (derivations in comments) and a float64 numpy loop over
rows on the *filtered* values x[i][mask[i]].
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rlx.losses import AGG_MODES, aggregate, aggregate_parts


def np_aggregate(x, mask, mode, max_len=None):
    """Independent float64 reference written from the mode definitions."""
    x = np.asarray(x, np.float64)
    mask = np.asarray(mask).astype(bool)
    B, T = x.shape
    rows = [x[i][mask[i]] for i in range(B)]
    nonempty = [r for r in rows if r.size]
    if mode == "token-mean":
        n = sum(r.size for r in rows)
        return sum(r.sum() for r in rows) / n if n else 0.0
    if mode == "seq-mean-token-sum":
        return np.mean([r.sum() for r in nonempty]) if nonempty else 0.0
    if mode == "seq-mean-token-mean":
        return np.mean([r.mean() for r in nonempty]) if nonempty else 0.0
    if mode == "seq-mean-token-sum-norm":
        return sum(r.sum() for r in rows) / (B * (T if max_len is None else max_len))
    raise AssertionError(mode)


def test_hand_derived_values():
    x = jnp.array([[1., 2, 3], [4, 5, 6], [7, 8, 9]])
    m = jnp.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]], bool)
    # valid values: row0 {1, 2}, row1 {} (empty), row2 {7, 8, 9}; total 27 over 5 tokens
    assert aggregate(x, m, "token-mean") == pytest.approx(27 / 5)
    # row sums 3 and 24 over the 2 non-empty rows
    assert aggregate(x, m, "seq-mean-token-sum") == pytest.approx(13.5)
    # row means 1.5 and 8 over the 2 non-empty rows
    assert aggregate(x, m, "seq-mean-token-mean") == pytest.approx(4.75)
    # 27 / (B=3 * T=3); with max_len=6: 27 / 18
    assert aggregate(x, m, "seq-mean-token-sum-norm") == pytest.approx(3.0)
    assert aggregate(x, m, "seq-mean-token-sum-norm", max_len=6) == pytest.approx(1.5)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_matches_numpy_on_random_inputs(mode):
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=(5, 7)).astype(np.float32)
        m = rng.random((5, 7)) < rng.choice([0.2, 0.6, 1.0])
        np.testing.assert_allclose(aggregate(x, m, mode), np_aggregate(x, m, mode), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_empty_rows_and_empty_mask_are_finite(mode):
    x = jnp.array([[np.nan, np.inf, 1.0], [2.0, -np.inf, np.nan]])
    none = jnp.zeros((2, 3), bool)
    out = aggregate(x, none, mode)
    assert np.isfinite(out) and out == 0.0
    # gradient of an empty aggregate is finite (zero)
    g = jax.grad(lambda v: aggregate(v, none, mode))(jnp.ones((2, 3)))
    assert np.all(g == 0)
    one = jnp.array([[False, False, True], [True, False, False]])
    np.testing.assert_allclose(aggregate(x, one, mode), np_aggregate(np.nan_to_num(x), one, mode))


def test_unknown_mode_and_bad_shapes_raise():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="'token-sum'"):
        aggregate(x, x > 0, "token-sum")
    with pytest.raises(ValueError, match="mask"):
        aggregate(x, jnp.ones((2, 4), bool), "token-mean")
    with pytest.raises(ValueError, match="x: expected a \\[B, T\\]"):
        aggregate(jnp.ones(3), jnp.ones(3, bool), "token-mean")


def test_float_mask_is_a_weight():
    x = jnp.array([[1.0, 3.0]])
    w = jnp.array([[0.25, 0.75]])
    # token-mean: (0.25*1 + 0.75*3) / (0.25 + 0.75) = 2.5
    assert aggregate(x, w, "token-mean") == pytest.approx(2.5)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_parts_sum_over_micro_batches_equals_full_batch(mode):
    """Gradient accumulation: Σ_m aggregate(x_m, den=D) == aggregate(x), D = Σ_m den_m."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    m = rng.random((6, 5)) < 0.5
    m[2] = False  # an empty row inside micro-batch 1
    full = aggregate(x, m, mode, max_len=8)
    chunks = [(x[i:i + 2], m[i:i + 2]) for i in range(0, 6, 2)]
    D = sum(aggregate_parts(xc, mc, mode, max_len=8)[1] for xc, mc in chunks)
    if mode == "seq-mean-token-sum-norm":  # constant: B_total * max_len
        assert D == 6 * 8
    accumulated = sum(aggregate(xc, mc, mode, max_len=8, denominator=D) for xc, mc in chunks)
    np.testing.assert_allclose(accumulated, full, rtol=1e-5, atol=1e-6)
    nums = sum(aggregate_parts(xc, mc, mode, max_len=8)[0] for xc, mc in chunks)
    np.testing.assert_allclose(nums / D, full, rtol=1e-5, atol=1e-6)


def test_each_mode_sharded_over_8_devices_equals_one_device(devices8):
    mesh = Mesh(np.array(devices8).reshape(8), ("data",))
    shard = NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(2)
    # 16 rows with very different token counts per device shard (and empty rows), so a
    # mean of per-device means would differ from the global mean.
    x = rng.normal(size=(16, 6)).astype(np.float32)
    lengths = np.array([6, 0, 1, 2, 6, 6, 0, 0, 3, 5, 1, 1, 6, 4, 2, 0])
    m = np.arange(6)[None, :] < lengths[:, None]
    xs, ms = jax.device_put(x, shard), jax.device_put(m, shard)
    for mode in AGG_MODES:
        f = jax.jit(lambda a, b, mode=mode: aggregate(a, b, mode))
        one = f(jnp.asarray(x), jnp.asarray(m))
        eight = f(xs, ms)
        np.testing.assert_allclose(eight, one, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(one, np_aggregate(x, m, mode), rtol=1e-5)
        # a per-device mean of means is not what we compute (guards the test's power)
        if mode == "token-mean":
            per_dev = [np_aggregate(x[2 * d:2 * d + 2], m[2 * d:2 * d + 2], mode) for d in range(8)]
            assert abs(np.mean(per_dev) - float(one)) > 1e-3
    # an all-empty mask, sharded, is still 0
    zeros = jax.device_put(np.zeros((16, 6), bool), shard)
    assert jax.jit(lambda a, b: aggregate(a, b, "seq-mean-token-mean"))(xs, zeros) == 0.0
