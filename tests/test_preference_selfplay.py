"""Tests for self-play / online preference objectives (rlx/losses/selfplay.py,
rlx/losses/online_pairs.py): SPPO, Nash-MD, DNO, INPO, EGPO (+ extragradient step), APO
extrapolation, RSO rejection sampling, CoPG, P3O.

Expected values: float64 numpy formulas written here from the papers (or the official /
TRL code where the module docstrings say so), hand derivations written next to each case,
and limiting identities (SPPO with hard labels = SPPO-hard / 2, INPO at τ = η = IPO,
CoPG with a ½ reward gap = β² IPO, DNO with a saturated target = DPO against π_t).
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.losses import jitted, np_logsig
from jax.test_util import check_grads

from rlx.losses import online_pairs as op
from rlx.losses import preference as pref
from rlx.losses import selfplay as sp

_STATIC = ("variant", "log_ratio_clamp", "max_accept")


def J(fn):
    return jitted(fn, _STATIC)


def vecs(seed, k=6, n=4, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=n) * scale).astype(np.float32) for _ in range(k)]


# ----------------------------------------------------------------------- SPPO, Nash-MD


def test_sppo_numpy_and_hard_label_identity():
    lp, prev, p = vecs(0, 3)
    p = np.clip(np.abs(p), 0, 1)
    got, _ = J(sp.sppo)(lp, prev, p, beta=0.5)
    np.testing.assert_allclose(got, np.mean((lp - prev.astype(np.float64) - (p - 0.5) / 0.5) ** 2), rtol=1e-5)
    # winners with P = 1, losers with P = 0: mean over the 2N responses = sppo_hard / 2
    pc, pr, rc, rr = vecs(1, 4)
    soft, _ = J(sp.sppo)(np.concatenate([pc, pr]), np.concatenate([rc, rr]),
                         np.concatenate([np.ones(4), np.zeros(4)]).astype(np.float32), beta=0.5)
    hard, _ = J(pref.sppo_hard)(pc, pr, rc, rr, beta=0.5)
    np.testing.assert_allclose(soft, hard / 2, rtol=1e-5)


def test_geometric_mixture_logits():
    rng = np.random.default_rng(2)
    z, zr = rng.normal(size=(2, 3, 5)).astype(np.float32), rng.normal(size=(2, 3, 5)).astype(np.float32)
    f = J(sp.geometric_mixture_logits)

    def np_logsoftmax(x):
        x = x.astype(np.float64)
        return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)

    np.testing.assert_allclose(f(z, zr, 0.0), np_logsoftmax(z), atol=1e-5)
    np.testing.assert_allclose(f(z, zr, 1.0), np_logsoftmax(zr), atol=1e-5)
    np.testing.assert_allclose(f(z, zr, 0.3), np_logsoftmax(0.3 * zr + 0.7 * z), atol=1e-5)


def test_nash_md_value_and_gradient_by_hand():
    rng = np.random.default_rng(3)
    lp = rng.normal(size=(2, 3)).astype(np.float32) - 1
    ref = rng.normal(size=(2, 3)).astype(np.float32) - 1
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    lp[0, 2] = np.nan  # masked: ignored
    sc, mix = np.array([1.0, -0.5], np.float32), np.array([0.0, 0.5], np.float32)
    prob = 1 / (1 + np.exp(-(sc - mix).astype(np.float64)))  # sigma(score - mixture score)
    lr = np.where(mask, lp - ref, 0.0)
    seq = np.where(mask, lp, 0.0).sum(1)
    want = np.mean(0.2 * (lr * np.where(mask, lp, 0.0)).sum(1) - (prob - 0.5) * seq)
    loss, m = J(sp.nash_md)(lp, ref, mask, sc, mix, beta=0.2)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(m["probability"], prob.mean(), rtol=1e-6)
    # d/dlogp_t = (beta * sg(logp_t - ref_t) - (P - 1/2)) / B on valid tokens, 0 elsewhere
    g = jax.grad(lambda x: J(sp.nash_md)(x, ref, mask, sc, mix, beta=0.2)[0])(np.where(mask, lp, 0.0))
    want_g = np.where(mask, (0.2 * lr - (prob[:, None] - 0.5)) / 2, 0.0)
    np.testing.assert_allclose(g, want_g, rtol=1e-5, atol=1e-7)
    g_nan = jax.grad(lambda x: J(sp.nash_md)(x, ref, mask, sc, mix, beta=0.2)[0])(lp)  # NaN at a masked token
    np.testing.assert_allclose(g_nan, want_g, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------- DNO, INPO, EGPO


def test_dno_numpy_and_saturated_target_is_dpo():
    p1, p2, q1, q2, w1, w2 = vecs(4)
    z = 0.3 * ((p1 - q1) - (p2 - q2)).astype(np.float64)
    t = 1 / (1 + np.exp(-(w1 - w2).astype(np.float64)))
    want = np.mean(-t * np_logsig(z) - (1 - t) * np_logsig(-z))
    np.testing.assert_allclose(J(sp.dno)(p1, p2, q1, q2, w1, w2, beta=0.3)[0], want, rtol=1e-5)
    big = np.full(4, 100.0, np.float32)  # target sigma(100) = 1: DPO with the previous iterate as reference
    np.testing.assert_allclose(J(sp.dno)(p1, p2, q1, q2, big, 0 * big, beta=0.3)[0],
                               J(pref.dpo)(p1, p2, q1, q2, beta=0.3)[0], rtol=1e-5)


def test_inpo_numpy_and_ipo_limits():
    pc, pr, rc, rr, qc, qr = vecs(5)
    eta, tau = 0.5, 0.2
    a = tau / eta
    h = (pc - pr).astype(np.float64) - a * (rc - rr) - (1 - a) * (qc - qr)
    np.testing.assert_allclose(J(sp.inpo)(pc, pr, rc, rr, qc, qr, eta=eta, tau=tau)[0],
                               np.mean((h - 1 / (2 * eta)) ** 2), rtol=1e-5)
    # tau = eta: IPO against the reference with beta = eta; tau = 0: IPO against the previous iterate
    ipo = J(pref.ipo)
    np.testing.assert_allclose(J(sp.inpo)(pc, pr, rc, rr, qc, qr, eta=eta, tau=eta)[0],
                               ipo(pc, pr, rc, rr, beta=eta)[0], rtol=1e-5)
    np.testing.assert_allclose(J(sp.inpo)(pc, pr, rc, rr, qc, qr, eta=eta, tau=0.0)[0],
                               ipo(pc, pr, qc, qr, beta=eta)[0], rtol=1e-5)


def test_egpo_numpy_and_optimum():
    p1, p2, r1, r2, a, b = vecs(6)
    d = (p1 - r1).astype(np.float64) - (p2 - r2)
    np.testing.assert_allclose(J(sp.egpo)(p1, p2, r1, r2, a, b, beta=0.4)[0],
                               np.mean((d - (a - b) / 0.4) ** 2), rtol=1e-5)
    # zero at log-ratio contrast (p1 - p2)/beta
    z = np.zeros(4, np.float32)
    np.testing.assert_allclose(J(sp.egpo)((a - b) / 0.4, z, z, z, a, b, beta=0.4)[0], 0.0, atol=1e-9)


def test_extragradient_converges_on_bilinear_game_where_gradient_descent_spirals_out():
    # min_x max_y x*y: the descent field is F(x, y) = (y, -x). Plain simultaneous steps
    # multiply the norm by sqrt(1 + lr^2) each step; extragradient multiplies it by
    # sqrt(1 - lr^2 + lr^4) < 1 (hand-derived from the 2x2 linear maps).
    def field(params, target):
        return {"x": target["y"], "y": -target["x"]}

    lr = 0.5
    eg = {"x": jnp.array(1.0), "y": jnp.array(0.0)}
    gd = dict(eg)
    for _ in range(20):
        eg = sp.extragradient_step(eg, field, lr)
        gd = jax.tree.map(lambda p, g: p - lr * g, gd, field(gd, gd))
    norm = lambda t: float(jnp.sqrt(t["x"] ** 2 + t["y"] ** 2))  # noqa: E731
    np.testing.assert_allclose(norm(eg), (1 - lr ** 2 + lr ** 4) ** 10, rtol=1e-4)
    np.testing.assert_allclose(norm(gd), (1 + lr ** 2) ** 10, rtol=1e-4)


def test_apo_extrapolate():
    new = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
    prev = {"w": jnp.array([0.0, 2.0]), "b": jnp.array(1.0)}
    out = sp.apo_extrapolate(new, prev, 0.5)  # new + 0.5 (new - prev)
    np.testing.assert_allclose(out["w"], [1.5, 2.0])
    np.testing.assert_allclose(out["b"], 4.0)
    np.testing.assert_allclose(sp.apo_extrapolate(new, prev, 0.0)["b"], 3.0)  # alpha 0: plain iterate


# ----------------------------------------------------------------------- RSO


def test_rso_acceptance_probabilities():
    rewards = np.array([[0.0, -0.5, -1.0, -2.0, 5.0]], np.float32)
    valid = np.array([[1, 1, 1, 1, 0]], bool)  # the invalid 5.0 neither counts as max nor is accepted
    keys = jax.random.split(jax.random.key(0), 4000)
    acc = jax.jit(jax.vmap(lambda k: op.rso_accept(k, rewards, beta=0.5, valid_PG=valid)))(keys)
    freq = np.asarray(acc).mean(axis=0)[0]
    want = np.exp(np.array([0.0, -0.5, -1.0, -2.0]) / 0.5)  # exp((r - r_max)/beta): 1, e^-1, e^-2, e^-4
    np.testing.assert_allclose(freq[:4], want, atol=0.03)  # 4000 draws: std <= 0.008
    assert freq[4] == 0


def test_rso_limits_and_cap():
    rewards = np.array([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    key = jax.random.key(1)
    f = J(op.rso_accept)
    np.testing.assert_array_equal(f(key, rewards, beta=1e-3), [[0, 0, 1, 0], [1, 1, 1, 1]])  # only the max (ties)
    np.testing.assert_array_equal(f(key, rewards, beta=1e6), np.ones((2, 4), bool))  # flat target
    capped = f(key, rewards, beta=1e6, max_accept=2)
    np.testing.assert_array_equal(np.asarray(capped).sum(1), [2, 2])


# ----------------------------------------------------------------------- CoPG, P3O


def test_copg_numpy_and_ipo_identity():
    p1, p2, r1, r2, w1, w2 = vecs(7)
    d = (p1 - r1).astype(np.float64) - (p2 - r2)
    np.testing.assert_allclose(J(op.copg)(p1, p2, r1, r2, w1, w2, beta=0.3)[0],
                               np.mean((w1 - w2 - 0.3 * d) ** 2), rtol=1e-5)
    half, zero = np.full(4, 0.5, np.float32), np.zeros(4, np.float32)
    np.testing.assert_allclose(J(op.copg)(p1, p2, r1, r2, half, zero, beta=0.3)[0],
                               0.09 * J(pref.ipo)(p1, p2, r1, r2, beta=0.3)[0], rtol=1e-5)


def test_p3o_on_policy_gradient_and_clipping_by_hand():
    z = np.zeros(2, np.float32)
    r1, r2 = np.array([1.0, 0.0], np.float32), np.array([0.0, 2.0], np.float32)  # A = (r1 - r2)/2 = [0.5, -1]
    for variant in ("joint", "separate"):
        f = lambda a, b: J(op.p3o)(a, b, z, z, r1, r2, variant=variant)[0]  # noqa: E731
        # at pi = pi_old: loss = -mean A (joint) or -mean(A - A) = 0 (separate), and the gradient is
        # the pairwise policy gradient: dl/dlogp_1 = -A/N, dl/dlogp_2 = +A/N
        g1, g2 = jax.grad(f, argnums=(0, 1))(z, z)
        np.testing.assert_allclose(g1, [-0.25, 0.5], rtol=1e-6)
        np.testing.assert_allclose(g2, [0.25, -0.5], rtol=1e-6)
    np.testing.assert_allclose(J(op.p3o)(z, z, z, z, r1, r2)[0], 0.25)  # -mean([0.5, -1])
    # joint ratio rho = e^{0.5} > 1.2 with A > 0 (row 0): clipped at 1.2, no gradient there.
    # row 1: rho = e^{0.5}, A = -1 < 0: min picks rho * A (unclipped), gradient -(-1) rho / 2.
    a = np.array([0.5, 0.5], np.float32)
    loss, m = J(op.p3o)(a, z, z, z, r1, r2)
    np.testing.assert_allclose(loss, -np.mean([1.2 * 0.5, -np.exp(0.5)]), rtol=1e-5)
    np.testing.assert_allclose(m["clip_frac"], 1.0)
    g = jax.grad(lambda x: J(op.p3o)(x, z, z, z, r1, r2)[0])(a)
    np.testing.assert_allclose(g, [0.0, np.exp(0.5) / 2], rtol=1e-5)


def test_selfplay_check_grads():
    p1, p2, q1, q2, w1, w2 = vecs(8)

    @jax.jit
    def losses(a, b):
        return jnp.stack([sp.sppo(a, q1, jnp.clip(jnp.abs(w1), 0, 1), beta=0.5)[0],
                          sp.dno(a, b, q1, q2, w1, w2, beta=0.5)[0],
                          sp.inpo(a, b, q1, q2, w1, w2, eta=0.5, tau=0.1)[0],
                          sp.egpo(a, b, q1, q2, w1, w2, beta=0.5)[0],
                          op.copg(a, b, q1, q2, w1, w2, beta=0.5)[0],
                          op.p3o(a, b, q1 - 0.05, q2 + 0.05, w1, w2)[0]])

    for i in range(6):
        check_grads(lambda a, b: losses(a, b)[i], (p1, p2), order=1, modes=["rev"], atol=2e-2, rtol=2e-2,
                    eps=1e-3)


def test_selfplay_errors():
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="tau"):
        sp.inpo(x, x, x, x, x, x, eta=0.1, tau=0.2)
    with pytest.raises(ValueError, match="prev_logp_2"):
        sp.dno(x, x, x, np.zeros(2), x, x)
    with pytest.raises(ValueError, match="variant"):
        op.p3o(x, x, x, x, x, x, variant="both")
    with pytest.raises(ValueError, match="rewards_PG"):
        op.rso_accept(jax.random.key(0), x, beta=1.0)
    with pytest.raises(ValueError, match="mask_BT"):
        sp.nash_md(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 2), bool), x[:2], x[:2])
