"""Tests for rlx.losses.policy (ppo_clip, gspo, cispo, reg_grpo) and the registry.

References: hand-derived cases (derivation in comments) and independent float64 numpy
transcriptions of the paper formulas (PPO / verl max-form, GSPO sequence ratio), with
their own aggregation written from the mode definitions.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import rlx.losses as L
from rlx.losses import AGG_MODES, cispo, gspo, ppo_clip, reg_grpo

# ------------------------------------------------------------------------ references


def np_agg(x, mask, mode):
    x, mask = np.asarray(x, np.float64), np.asarray(mask).astype(bool)
    B, T = x.shape
    rows = [x[i][mask[i]] for i in range(B)]
    ne = [r for r in rows if r.size]
    n = sum(r.size for r in rows)
    return {"token-mean": (sum(r.sum() for r in rows) / n) if n else 0.0,
            "seq-mean-token-sum": np.mean([r.sum() for r in ne]) if ne else 0.0,
            "seq-mean-token-mean": np.mean([r.mean() for r in ne]) if ne else 0.0,
            "seq-mean-token-sum-norm": sum(r.sum() for r in rows) / (B * T)}[mode]


def np_ppo(lp, old, A, M, eps_low, eps_high, dual=None, clamp=20.0, mode="token-mean"):
    """PPO clip in verl's max/min form (float64)."""
    lp, old, A = (np.asarray(a, np.float64) for a in (lp, old, A))
    d = np.clip(lp - old, -clamp, clamp)
    r = np.exp(d)
    loss = np.maximum(-A * r, -A * np.clip(r, 1 - eps_low, 1 + eps_high))
    if dual is not None:
        loss = np.where(A < 0, np.minimum(loss, -A * dual), loss)
    return np_agg(loss, M, mode)


def np_gspo(lp, old, A, M, eps_low, eps_high, mode="seq-mean-token-mean"):
    lp, old, A = (np.asarray(a, np.float64) for a in (lp, old, A))
    M = np.asarray(M).astype(bool)
    B, T = lp.shape
    loss = np.zeros((B, T))
    for i in range(B):
        s = np.exp(np.mean((lp[i] - old[i])[M[i]])) if M[i].any() else 1.0
        loss[i] = np.maximum(-A[i] * s, -A[i] * np.clip(s, 1 - eps_low, 1 + eps_high))
    return np_agg(loss, M, mode)


def random_batch(seed, B=4, T=6, spread=0.4, p=0.7):
    rng = np.random.default_rng(seed)
    lp = (rng.normal(size=(B, T)) * 0.5 - 1.5).astype(np.float32)
    old = (lp + rng.normal(size=(B, T)) * spread).astype(np.float32)
    A = rng.normal(size=(B, T)).astype(np.float32)
    M = rng.random((B, T)) < p
    M[1, :] = False  # an empty row
    return lp, old, A, M


# ------------------------------------------------------------------------- ppo_clip


def test_ppo_hand_derived():
    # ρ = [1.5, 0.9, 0.5, 4.0], A = [1, 1, -1, -1], ε = 0.2, dual c = 3:
    #  t0 A>0, ρ>1.2: clipped, L = -1.2;  t1: L = -0.9;  t2 A<0, ρ<0.8: L = max(0.5, 0.8) = 0.8
    #  t3 A<0, ρ=4: max(4, 1.2) = 4, dual: min(4, 3) = 3.  token-mean = (-1.2-0.9+0.8+3)/4 = 0.425
    #  without dual: (-1.2-0.9+0.8+4)/4 = 0.675
    lp = jnp.log(jnp.array([[1.5, 0.9, 0.5, 4.0]]))
    old = jnp.zeros((1, 4))
    A = jnp.array([[1.0, 1.0, -1.0, -1.0]])
    M = jnp.ones((1, 4), bool)
    loss, m = ppo_clip(lp, old, A, M, dual_clip=3.0)
    np.testing.assert_allclose(loss, 0.425, rtol=1e-6)
    assert m["clip_frac_low"] == 0.25 and m["clip_frac_high"] == 0.25 and m["dual_clip_frac"] == 0.25
    np.testing.assert_allclose(m["ratio_max"], 4.0, rtol=1e-6)
    np.testing.assert_allclose(m["ratio_min"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(ppo_clip(lp, old, A, M)[0], 0.675, rtol=1e-6)


@pytest.mark.parametrize("eps_low,eps_high,dual", [(0.2, 0.2, None), (0.2, 0.28, None), (0.2, 0.28, 3.0),
                                                   (0.1, 0.5, 1.5)])
@pytest.mark.parametrize("mode", AGG_MODES)
def test_ppo_matches_numpy(eps_low, eps_high, dual, mode):
    for seed in range(3):
        lp, old, A, M = random_batch(seed, spread=0.6)
        loss, _ = ppo_clip(lp, old, A, M, eps_low=eps_low, eps_high=eps_high, dual_clip=dual, agg=mode)
        np.testing.assert_allclose(loss, np_ppo(lp, old, A, M, eps_low, eps_high, dual, mode=mode),
                                   rtol=2e-5, atol=1e-6)


def test_ppo_log_ratio_clamp():
    lp = jnp.array([[30.0]])
    old = jnp.zeros((1, 1))
    A = jnp.array([[-1.0]])
    # ρ = exp(clip(30, ±20)) = e^20; A < 0 -> L = max(e^20, 0.8) = e^20 (no dual clip)
    np.testing.assert_allclose(ppo_clip(lp, old, A, jnp.ones((1, 1), bool))[0], np.exp(20.0), rtol=1e-5)
    np.testing.assert_allclose(ppo_clip(lp, old, A, jnp.ones((1, 1), bool), log_ratio_clamp=5.0)[0],
                               np.exp(5.0), rtol=1e-5)


def test_ppo_gradient_zero_exactly_where_clipping_is_active():
    lp, old, A, M = random_batch(7, B=6, T=8, spread=0.8, p=1.0)
    M[1, :] = True
    for dual in (None, 1.6):
        g = np.asarray(jax.grad(lambda x: ppo_clip(x, old, A, M, eps_low=0.2, eps_high=0.28,
                                                   dual_clip=dual)[0])(jnp.asarray(lp)))
        r = np.exp(lp.astype(np.float64) - old)
        active = ((A > 0) & (r > 1.28)) | ((A < 0) & (r < 0.8))
        if dual is not None:
            active |= (A < 0) & (r > dual)
        assert active.any() and (~active).any()
        assert np.all(g[active] == 0.0)
        # elsewhere: d/dlogp of -Aρ / N = -Aρ / N (token-mean over N valid tokens)
        np.testing.assert_allclose(g[~active], (-A * r / M.sum())[~active], rtol=1e-5)


def test_ppo_bad_arguments_raise():
    lp, old, A, M = random_batch(0)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_clip(lp, old, A, M, dual_clip=0.9)
    with pytest.raises(ValueError, match="eps_low"):
        ppo_clip(lp, old, A, M, eps_low=1.5)
    with pytest.raises(ValueError, match="old_logp"):
        ppo_clip(lp, old[:, :3], A, M)
    with pytest.raises(ValueError, match="'mean'"):
        ppo_clip(lp, old, A, M, agg="mean")


# ---------------------------------------------------------------------- ρ = 1 invariant


@pytest.mark.parametrize("mode", AGG_MODES)
def test_every_ppo_family_loss_is_minus_agg_adv_at_ratio_one(mode):
    lp, _, A, M = random_batch(3)
    expected = -np_agg(A, M, mode)
    variants = [functools.partial(ppo_clip), functools.partial(ppo_clip, eps_high=0.28),
                functools.partial(ppo_clip, dual_clip=3.0), functools.partial(gspo, variant="seq"),
                functools.partial(gspo, variant="token")]
    for fn in variants:
        loss, m = fn(lp, lp, A, M, agg=mode)
        np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
        assert m["clip_frac"] == 0 and abs(float(m["approx_kl"])) < 1e-7


# ------------------------------------------------------------------------------ gspo


def test_gspo_hand_derived():
    # row0: Δ = [0.1, -0.1, 0.3] -> s = e^0.1 = 1.10517 > 1 + 4e-4, A = 1 -> L = -(1 + 4e-4)
    # row1: Δ = [0, 0], s = 1, A = -2 -> L = 2.   seq-mean-token-mean = (-1.0004 + 2) / 2
    lp = jnp.array([[0.1, -0.1, 0.3], [0.0, 0.0, 5.0]])
    old = jnp.zeros((2, 3))
    A = jnp.array([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    M = jnp.array([[True, True, True], [True, True, False]])
    loss, m = gspo(lp, old, A, M)
    np.testing.assert_allclose(loss, (-1.0004 + 2.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["clip_frac_high"], 3 / 5)
    np.testing.assert_allclose(m["seq_ratio_mean"], (np.exp(0.1) + 1) / 2, rtol=1e-6)


@pytest.mark.parametrize("variant", ["seq", "token"])
@pytest.mark.parametrize("eps", [(3e-4, 4e-4), (0.2, 0.2)])
def test_gspo_matches_numpy(variant, eps):
    for seed in range(3):
        lp, old, A, M = random_batch(seed, spread=0.05)
        for mode in ("seq-mean-token-mean", "token-mean"):
            loss, _ = gspo(lp, old, A, M, eps_low=eps[0], eps_high=eps[1], variant=variant, agg=mode)
            np.testing.assert_allclose(loss, np_gspo(lp, old, A, M, *eps, mode=mode), rtol=2e-5, atol=1e-6)


def test_gspo_gradients_seq_vs_token_variant():
    # Unclipped (wide eps), seq-mean-token-mean over B' rows, L_i = -(1/|y_i|) Σ_t A_t s_i(t):
    #  token variant: ∂L/∂logp_t = -A_t s_i / (|y_i| B')            (sg(s_i)·π_t/sg(π_t))
    #  seq variant:   ∂L/∂logp_t = -(Σ_u A_u / |y_i|) s_i / (|y_i| B')   (s_i depends on all t)
    lp, old, A, M = random_batch(5, spread=0.1, p=1.0)
    M[1, :] = True
    B = lp.shape[0]
    kw = dict(eps_low=0.9, eps_high=10.0)
    g_tok = np.asarray(jax.grad(lambda x: gspo(x, old, A, M, variant="token", **kw)[0])(jnp.asarray(lp)))
    g_seq = np.asarray(jax.grad(lambda x: gspo(x, old, A, M, variant="seq", **kw)[0])(jnp.asarray(lp)))
    n = M.sum(1, keepdims=True)
    s = np.exp(((lp - old.astype(np.float64)) * M).sum(1, keepdims=True) / n)
    np.testing.assert_allclose(g_tok, -A * s / (n * B), rtol=1e-4)
    np.testing.assert_allclose(g_seq, -(A * M).sum(1, keepdims=True) / n * s / (n * B) * M, rtol=1e-4)
    # with a constant advantage per row both variants have the same gradient
    A_row = np.repeat(A[:, :1], A.shape[1], axis=1)
    g1 = jax.grad(lambda x: gspo(x, old, A_row, M, variant="token", **kw)[0])(jnp.asarray(lp))
    g2 = jax.grad(lambda x: gspo(x, old, A_row, M, variant="seq", **kw)[0])(jnp.asarray(lp))
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)
    # clipped sequence (default ε 3e-4/4e-4, ratios far outside) -> zero gradient
    lp2 = lp + 0.5 * np.sign(A[:, :1])  # s far above 1 where A > 0, far below where A < 0
    g0 = jax.grad(lambda x: gspo(x, old, A_row, M)[0])(jnp.asarray(lp2))
    np.testing.assert_array_equal(g0, 0.0)


def test_gspo_seq_variant_check_grads():
    lp, old, A, M = random_batch(9, spread=0.05)
    check_grads(lambda x: gspo(x, old, A, M, eps_low=0.9, eps_high=10.0)[0], (jnp.asarray(lp),), order=1,
                modes=("rev",), atol=1e-2, rtol=1e-2, eps=1e-3)


# ----------------------------------------------------------------------------- cispo


def test_cispo_value_weight_and_gradient():
    # ρ = [2.0, 0.5, 1.1], eps_low 1.0 (no lower bound), eps_high 0.28:
    #  weights sg(clip ρ) = [1.28, 0.5, 1.1];  L_t = -w A logπ; token-mean over 3
    lp = jnp.array([[np.log(0.4), np.log(0.1), np.log(0.22)]])
    old = lp - jnp.log(jnp.array([[2.0, 0.5, 1.1]]))
    A = jnp.array([[1.0, -1.0, 2.0]])
    M = jnp.ones((1, 3), bool)
    w = np.array([1.28, 0.5, 1.1])
    expected = np.mean(-w * np.array([1.0, -1.0, 2.0]) * np.log([0.4, 0.1, 0.22]))
    loss, m = cispo(lp, old, A, M)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(m["clip_frac_high"], 1 / 3)
    assert m["clip_frac_low"] == 0
    # every token keeps a gradient -w A / N, even the clipped one
    g = jax.grad(lambda x: cispo(x, old, A, M)[0])(lp)
    np.testing.assert_allclose(g, [-w * np.array([1.0, -1.0, 2.0]) / 3], rtol=1e-5)


def test_cispo_gradient_equals_ppo_gradient_at_ratio_one():
    lp, _, A, M = random_batch(4)
    g_c = jax.grad(lambda x: cispo(x, jnp.asarray(lp), A, M)[0])(jnp.asarray(lp))
    g_p = jax.grad(lambda x: ppo_clip(x, jnp.asarray(lp), A, M)[0])(jnp.asarray(lp))
    np.testing.assert_allclose(g_c, g_p, rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------- reg_grpo


def test_reg_grpo_hand_derived_and_check_grads():
    # row0: Δ = [0.2, 0.4] -> mean 0.3, β = 2 -> Â = 0.6; A = 1 -> (0.6 - 1)² = 0.16
    # row1: Δ = [-0.5] (one token) -> Â = -1.0; A = -0.5 -> (-1.0 + 0.5)² = 0.25
    # seq-mean-token-mean: (0.16 + 0.25) / 2 = 0.205;  reduce="sum": row0 Â = 1.2 -> 0.04
    lp = jnp.array([[0.2, 0.4], [-0.5, 7.0]])
    old = jnp.zeros((2, 2))
    A = jnp.array([[1.0, 1.0], [-0.5, 3.0]])
    M = jnp.array([[True, True], [True, False]])
    np.testing.assert_allclose(reg_grpo(lp, old, A, M, beta=2.0)[0], 0.205, rtol=1e-6)
    np.testing.assert_allclose(reg_grpo(lp, old, A, M, beta=2.0, reduce="sum")[0], (0.04 + 0.25) / 2,
                               rtol=1e-6)
    lp_r, old_r, A_r, M_r = random_batch(6)
    check_grads(lambda x: reg_grpo(x, old_r, A_r, M_r, beta=0.5)[0], (jnp.asarray(lp_r),), order=1,
                modes=("rev",), atol=1e-2, rtol=1e-2, eps=1e-3)


def test_ppo_unclipped_region_check_grads():
    lp, old, A, M = random_batch(8, spread=0.05)
    check_grads(lambda x: ppo_clip(x, old, A, M, eps_low=0.9, eps_high=10.0)[0], (jnp.asarray(lp),),
                order=1, modes=("rev",), atol=1e-2, rtol=1e-2, eps=1e-3)


# -------------------------------------------------------------------- common behavior


def test_registry_names_and_lookup():
    assert {"ppo_clip", "gspo", "cispo", "reg_grpo", "disco", "drpo", "trpa"} <= set(L.names())
    assert L.get("ppo_clip") is ppo_clip
    with pytest.raises(KeyError, match="ppo_clip"):
        L.get("ppo_clipp")


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo", "reg_grpo"])
def test_jit_equals_eager_and_padding_is_inert(name):
    fn = L.get(name)
    lp, old, A, M = random_batch(11)
    eager = fn(lp, old, A, M)
    jitted = jax.jit(fn)(lp, old, A, M)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6, atol=1e-7)
    assert set(jitted[1]) == set(eager[1]) and all(v.shape == () for v in eager[1].values())
    # NaN / -inf in masked positions changes neither the value nor a gradient
    bad_lp = np.where(M, lp, -np.inf).astype(np.float32)
    bad_old = np.where(M, old, np.nan).astype(np.float32)
    bad_A = np.where(M, A, np.nan).astype(np.float32)
    np.testing.assert_allclose(fn(bad_lp, bad_old, bad_A, M)[0], eager[0], rtol=1e-6, atol=1e-7)
    g = jax.grad(lambda x: fn(x, bad_old, bad_A, M)[0])(jnp.asarray(bad_lp))
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~M] == 0)
    # all-empty mask: finite zero loss
    empty = np.zeros_like(M)
    assert fn(lp, old, A, empty)[0] == 0.0


def test_ppo_clip_sharded_over_8_devices_equals_one_device(devices8):
    mesh = Mesh(np.array(devices8).reshape(8), ("data",))
    shard = NamedSharding(mesh, P("data"))
    lp, old, A, M = random_batch(12, B=16, T=5, spread=0.6, p=0.5)
    f = jax.jit(lambda *a: ppo_clip(*a, eps_high=0.28, dual_clip=3.0, agg="seq-mean-token-mean"))
    one = f(lp, old, A, M)
    eight = f(*(jax.device_put(x, shard) for x in (lp, old, A, M)))
    np.testing.assert_allclose(eight[0], one[0], rtol=1e-6, atol=1e-7)
    for k in one[1]:
        np.testing.assert_allclose(eight[1][k], one[1][k], rtol=1e-6, atol=1e-7)
