"""Tests for rlx.ops.

References are independent: numpy on the *filtered* arrays (x[mask]) for the masked
reductions, and a float64 numpy log-softmax + gather for the log-probs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from rlx import ops

# --------------------------------------------------------------------------- masked ops


@st.composite
def masked_arrays(draw):
    rows = draw(st.integers(1, 5))
    cols = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype(np.float32) * draw(st.sampled_from([1e-3, 1., 1e3]))
    mask = rng.random((rows, cols)) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    return x, mask


@settings(max_examples=40, deadline=None)
@given(masked_arrays())
def test_masked_reductions_equal_numpy_on_filtered(xm):
    x, mask = xm
    vals = x[mask].astype(np.float64)
    n = vals.size
    np.testing.assert_allclose(ops.masked_sum(x, mask), vals.sum(), rtol=1e-5, atol=1e-5 * abs(x).max())
    np.testing.assert_allclose(ops.masked_count(x, mask), n)
    exp_mean = vals.mean() if n else 0.0
    np.testing.assert_allclose(ops.masked_mean(x, mask), exp_mean, rtol=1e-5, atol=1e-6 * abs(x).max())
    for ddof in (0, 1):
        exp_var = vals.var(ddof=ddof) if n > ddof else 0.0
        np.testing.assert_allclose(ops.masked_var(x, mask, ddof=ddof), exp_var,
                                   rtol=1e-4, atol=1e-6 * abs(x).max() ** 2)
        np.testing.assert_allclose(ops.masked_std(x, mask, ddof=ddof), np.sqrt(exp_var),
                                   rtol=1e-4, atol=1e-5 * abs(x).max())


@settings(max_examples=30, deadline=None)
@given(masked_arrays())
def test_masked_reductions_per_row_equal_numpy(xm):
    x, mask = xm
    for r in range(x.shape[0]):
        vals = x[r][mask[r]].astype(np.float64)
        exp_mean = vals.mean() if vals.size else 0.0
        exp_var = vals.var(ddof=1) if vals.size > 1 else 0.0
        np.testing.assert_allclose(ops.masked_mean(x, mask, axis=1)[r], exp_mean,
                                   rtol=1e-5, atol=1e-6 * abs(x).max())
        np.testing.assert_allclose(ops.masked_var(x, mask, ddof=1, axis=1)[r], exp_var,
                                   rtol=1e-4, atol=1e-6 * abs(x).max() ** 2)


@settings(max_examples=30, deadline=None)
@given(masked_arrays())
def test_whiten_equals_numpy_on_filtered(xm):
    x, mask = xm
    vals = x[mask].astype(np.float64)
    out = np.asarray(ops.masked_whiten(x, mask, ddof=1, eps=1e-8))
    if vals.size > 1:
        exp = (vals - vals.mean()) / np.sqrt(vals.var(ddof=1) + 1e-8)
    else:
        exp = np.zeros_like(vals)  # documented: var 0 -> (x - mean) = 0
    np.testing.assert_allclose(out[mask], exp, rtol=1e-3, atol=1e-4)
    assert np.all(out[~mask] == 0)


def test_empty_and_single_element_are_finite_and_documented():
    x = jnp.array([[3.0, np.nan, np.inf]])
    none = jnp.zeros((1, 3), bool)
    one = jnp.array([[True, False, False]])
    # Masked-out NaN / Inf never leak into a reduction.
    assert ops.masked_sum(x, one) == 3.0
    assert ops.masked_mean(x, none) == 0.0
    assert ops.masked_mean(x, one) == 3.0
    assert ops.masked_var(x, none, ddof=0) == 0.0
    assert ops.masked_var(x, one, ddof=1) == 0.0      # count - ddof = 0 -> 0
    assert ops.masked_var(x, one, ddof=0) == 0.0      # a single value has variance 0
    np.testing.assert_array_equal(ops.masked_whiten(x, none), np.zeros((1, 3)))
    np.testing.assert_array_equal(ops.masked_whiten(x, one), np.zeros((1, 3)))
    # shift_mean=False puts the mean back: the single valid element maps to itself.
    np.testing.assert_array_equal(ops.masked_whiten(x, one, shift_mean=False), [[3.0, 0, 0]])


def test_float_mask_is_a_weight():
    x = jnp.array([1.0, 2.0, 4.0])
    w = jnp.array([0.5, 0.0, 1.0])
    # By hand: sum = 0.5*1 + 1*4 = 4.5; count = 1.5; mean = 3.
    assert ops.masked_sum(x, w) == 4.5
    assert ops.masked_mean(x, w) == 3.0


def test_mask_rank_mismatch_is_an_error():
    with pytest.raises(ValueError, match="mask rank"):
        ops.masked_sum(jnp.ones((2, 3)), jnp.ones((3,), bool))


def test_group_stats_hand_case():
    # Group 0: [1, 2, 3] all valid: mean 2, std(ddof=1) = 1.
    # Group 1: [5, x, 7] middle invalid: mean 6, std(ddof=1) = sqrt(2), ddof=0: 1.
    # Group 2: one valid element: std 0 for both ddofs; count 1.
    r = jnp.array([[1.0, 2.0, 3.0], [5.0, 100.0, 7.0], [4.0, 0.0, 0.0]])
    v = jnp.array([[1, 1, 1], [1, 0, 1], [1, 0, 0]], bool)
    s1 = ops.group_stats(r, v, ddof=1)
    np.testing.assert_allclose(s1.mean, [2.0, 6.0, 4.0])
    np.testing.assert_allclose(s1.std, [1.0, np.sqrt(2.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(s1.count, [3, 2, 1])
    s0 = ops.group_stats(r, v, ddof=0)
    np.testing.assert_allclose(s0.std, [np.sqrt(2 / 3), 1.0, 0.0], rtol=1e-6)


def test_finite_mask():
    x = jnp.array([1.0, np.nan, np.inf, 2.0])
    np.testing.assert_array_equal(ops.finite_mask(x), [True, False, False, True])
    np.testing.assert_array_equal(ops.finite_mask(x, jnp.array([0, 1, 1, 1], bool)),
                                  [False, False, False, True])


def test_masked_ops_gradients():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 5)))
    mask = jnp.asarray(rng.random((3, 5)) < 0.7)
    for fn in (lambda x: ops.masked_mean(x, mask),
               lambda x: ops.masked_var(x, mask, ddof=1, axis=1),
               lambda x: ops.masked_std(x, mask, ddof=1, axis=1),
               lambda x: ops.masked_whiten(x, mask, ddof=1)):
        check_grads(fn, (x,), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_masked_ops_jit_equals_eager():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    mask = jnp.asarray(rng.random((4, 6)) < 0.5)
    f = lambda x, m: ops.masked_whiten(x, m, ddof=1)  # noqa: E731
    np.testing.assert_allclose(jax.jit(f)(x, mask), f(x, mask), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------ log-probs


def _np_logprobs(logits, tokens, temperature=1.0):
    z = logits.astype(np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return np.take_along_axis(logp, tokens[..., None], -1)[..., 0], logp


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_logprobs_equal_float64_numpy(temperature, dtype):
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(3, 5, 11)) * 4).astype(np.float32)
    tokens = rng.integers(0, 11, size=(3, 5))
    logits_in = jnp.asarray(logits, dtype)
    exp, logp_full = _np_logprobs(np.asarray(logits_in.astype(jnp.float32)), tokens, temperature)
    got = ops.logprobs_from_logits(logits_in, jnp.asarray(tokens), temperature)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5)
    ent = ops.entropy_from_logits(logits_in, temperature)
    np.testing.assert_allclose(ent, -(np.exp(logp_full) * logp_full).sum(-1), rtol=1e-5, atol=1e-5)


def test_entropy_of_uniform_is_log_v():
    # A constant row is the uniform distribution over V = 7: H = log 7.
    np.testing.assert_allclose(ops.entropy_from_logits(jnp.zeros((1, 1, 7))), [[np.log(7)]],
                               rtol=1e-6)


@pytest.mark.parametrize("V,chunk", [(37, 8), (40, 8), (16, 64), (13, 1)])
def test_chunked_logprobs_equal_plain(V, chunk):
    rng = np.random.default_rng(3)
    h = jnp.asarray(rng.normal(size=(2, 4, 6)), jnp.float32)
    W = jnp.asarray(rng.normal(size=(6, V)) * 2, jnp.float32)
    tok = jnp.asarray(rng.integers(0, V, size=(2, 4)))
    logits = jnp.einsum("btd,dv->btv", h, W)
    plain = ops.logprobs_from_logits(logits, tok, 0.8)
    ent = ops.entropy_from_logits(logits, 0.8)
    lp, en = ops.chunked_logprobs(h, W, tok, temperature=0.8, chunk_size=chunk, with_entropy=True)
    np.testing.assert_allclose(lp, plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(en, ent, rtol=1e-5, atol=1e-5)
    # Gradients with respect to hidden states and the unembedding agree too.
    def f_plain(h, W):
        lg = jnp.einsum("btd,dv->btv", h, W)
        return jnp.sum(ops.logprobs_from_logits(lg, tok, 0.8)) + jnp.sum(ops.entropy_from_logits(lg, 0.8))

    def f_chunk(h, W):
        a, b = ops.chunked_logprobs(h, W, tok, temperature=0.8, chunk_size=chunk, with_entropy=True)
        return jnp.sum(a) + jnp.sum(b)

    gp = jax.grad(f_plain, argnums=(0, 1))(h, W)
    gc = jax.jit(jax.grad(f_chunk, argnums=(0, 1)))(h, W)
    for a, b in zip(gp, gc):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_chunked_logprobs_never_materializes_full_vocab():
    # Inspect the compiled program: no [B, T, V] float32 buffer may appear.
    B, T, D, V, C = 2, 3, 4, 1000, 100
    h = jnp.ones((B, T, D))
    W = jnp.ones((D, V))
    tok = jnp.zeros((B, T), jnp.int32)
    f = jax.jit(jax.grad(lambda h, W: jnp.sum(ops.chunked_logprobs(h, W, tok, chunk_size=C)),
                         argnums=(0, 1)))
    hlo = f.lower(h, W).compile().as_text()
    assert f"f32[{B},{T},{V}]" not in hlo
    assert f"f32[{B},{T},{C}]" in hlo


def test_logprob_gradients():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(2, 3, 5)))
    tok = jnp.asarray(rng.integers(0, 5, size=(2, 3)))
    check_grads(lambda z: ops.logprobs_from_logits(z, tok, 0.9), (logits,), order=1,
                modes=("rev",), atol=1e-2, rtol=1e-2)
    check_grads(lambda z: ops.entropy_from_logits(z), (logits,), order=1, modes=("rev",),
                atol=1e-2, rtol=1e-2)
