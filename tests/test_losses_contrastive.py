"""Tests for rlx.losses.contrastive (disco, drpo, trpa).

References: float64 numpy loops over prompts / pairs written from the paper formulas
(DisCO J_q with a true log-mean-exp, DRPO's length weights, TRPA's pairwise loss with
verl's clamped low_var_kl), plus hand-derived cases.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from rlx.losses import disco, drpo, trpa

# ------------------------------------------------------------------------ references


def np_disco(lp, old, M, r, G, score="logL", variant="disco", tau=10.0, delta=1e-4, beta=1e3,
             kl_est="k3", lam=None, max_len=None):
    lp, old = np.asarray(lp, np.float64), np.asarray(old, np.float64)
    M = np.asarray(M).astype(bool)
    B, T = lp.shape
    Pn = B // G
    d = np.where(M, lp - old, 0.0)
    s, length = np.zeros(B), M.sum(1)
    for i in range(B):
        if length[i]:
            s[i] = lp[i][M[i]].mean() if score == "logL" else np.exp(d[i][M[i]]).mean()
    total = 0.0
    for p in range(Pn):
        idx = range(p * G, (p + 1) * G)
        pos = [i for i in idx if length[i] and r[i] == 1]
        neg = [i for i in idx if length[i] and r[i] == 0]
        if not pos or not neg:
            continue
        if lam is None:
            pos_term = np.mean(s[pos])
        else:
            w = np.exp((1 - length[pos] / (max_len or T)) / lam)
            pos_term = np.sum(w * s[pos]) / np.sum(w)
        if variant == "disco":
            neg_term = tau * np.log(np.mean(np.exp(s[neg] / tau)))
        else:
            neg_term = np.mean(s[neg])
        total += pos_term - neg_term
    kl_tok = (np.exp(d) - 1 - d) if kl_est == "k3" else -d
    kl = kl_tok[M].mean() if M.any() else 0.0
    return -total / Pn + max(beta * (kl - delta), 0.0) * kl


def np_trpa(lp, old, ref, M, levels, G, beta=0.1, c=2.5, coef_old=1e-3, coef_ref=1e-3):
    lp, old, ref = (np.asarray(a, np.float64) for a in (lp, old, ref))
    M = np.asarray(M).astype(bool)
    B = lp.shape[0]
    lr = np.array([(lp[i] - ref[i])[M[i]].mean() if M[i].any() else 0.0 for i in range(B)])
    losses = []
    for p in range(B // G):
        for i, j in itertools.product(range(p * G, (p + 1) * G), repeat=2):
            if M[i].any() and M[j].any() and levels[i] < levels[j]:
                h = (c if levels[i] == 1 else 1.0) * beta * (lr[i] - lr[j])
                losses.append(-np.log(1 / (1 + np.exp(-h))))
    if losses:
        pref = np.mean(losses)
    else:
        ok = M.any(1)
        sign = np.where(np.asarray(levels) == 1, 1.0, -1.0)
        pref = np.mean(-np.log(1 / (1 + np.exp(-(sign * lr)[ok]))))

    def k3_verl(a, b):  # verl low_var_kl: kl = b - a clipped ±20, exp(kl) - kl - 1 clipped ±10
        k = np.clip(b - a, -20, 20)
        return np.clip(np.exp(k) - k - 1, -10, 10)[M].mean()

    return pref + coef_old * k3_verl(lp, old) + coef_ref * k3_verl(lp, ref)


def group_batch(seed, Pn=3, G=4, T=5, spread=0.05):
    rng = np.random.default_rng(seed)
    B = Pn * G
    lp = (rng.normal(size=(B, T)) * 0.5 - 1.0).astype(np.float32)
    old = (lp + rng.normal(size=(B, T)) * spread).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    M = np.arange(T)[None, :] < lengths[:, None]
    r = rng.integers(0, 2, size=B).astype(np.float32)
    r[:G] = [1, 0, 0, 0][:G]   # group 0 mixed
    r[G:2 * G] = 1             # group 1 all correct: skipped
    return lp, old, M, r


# ------------------------------------------------------------------------------ disco


def test_disco_hand_derived():
    # one group, rewards [1, 1, 0, 0], each row's log-probs constant: s = [-1, -2, -3, -5] (logL)
    # old = logp -> KL = 0, no constraint. τ = 10:
    #   J = mean(-1, -2) - 10 log((e^-0.3 + e^-0.5)/2) = -1.5 - 10 log(0.6736744...) = 2.4501...
    #   basic: J = -1.5 - (-4) = 2.5 ;  loss = -J / P (P = 1)
    lp = jnp.array([[-1.0] * 3, [-2.0] * 3, [-3.0] * 3, [-5.0] * 3])
    M = jnp.ones((4, 3), bool)
    r = jnp.array([1.0, 1.0, 0.0, 0.0])
    J = -1.5 - 10 * np.log((np.exp(-0.3) + np.exp(-0.5)) / 2)
    loss, m = disco(lp, lp, jnp.zeros((4, 3)), M, rewards=r, group_size=4)
    np.testing.assert_allclose(loss, -J, rtol=1e-6)
    np.testing.assert_allclose(m["pos_score_mean"], -1.5)
    np.testing.assert_allclose(m["neg_score_mean"], -4.0)
    assert m["kl"] == 0 and m["constraint_active"] == 0 and m["valid_group_frac"] == 1
    np.testing.assert_allclose(disco(lp, lp, jnp.zeros((4, 3)), M, rewards=r, group_size=4,
                                     variant="disco_b")[0], -2.5, rtol=1e-6)


@pytest.mark.parametrize("score,variant,tau", [("logL", "disco", 10.0), ("Lratio", "disco", 1.0),
                                               ("logL", "disco_b", 10.0), ("Lratio", "disco_b", 1.0)])
@pytest.mark.parametrize("kl_est", ["k3", "k1"])
def test_disco_matches_numpy(score, variant, tau, kl_est):
    for seed in range(2):
        lp, old, M, r = group_batch(seed, spread=0.05)  # KL ~ 1e-3 > δ: constraint active
        loss, m = disco(lp, old, np.zeros_like(lp), M, rewards=r.reshape(3, 4), group_size=4, score=score,
                        variant=variant, tau=tau, kl_estimator=kl_est)
        ref = np_disco(lp, old, M, r, 4, score=score, variant=variant, tau=tau, kl_est=kl_est)
        np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-6)
        assert m["valid_group_frac"] == pytest.approx(np.mean([len(set(r[p * 4:(p + 1) * 4])) == 2
                                                               for p in range(3)]))


def test_disco_constraint_gradient_and_skipped_groups():
    lp, old, M, r = group_batch(1, spread=0.1)
    _, m = disco(lp, old, np.zeros_like(lp), M, rewards=r, group_size=4)
    assert m["constraint_active"] == 1
    # all-0 / all-1 groups contribute nothing to the objective: with every group uniform the
    # loss is the constraint alone, and its gradient equals sg(β(KL-δ)) ∂KL.
    r_uniform = np.repeat([1.0, 0.0, 1.0], 4).astype(np.float32)
    loss, m = disco(lp, old, np.zeros_like(lp), M, rewards=r_uniform, group_size=4)
    kl = float(m["kl"])
    np.testing.assert_allclose(loss, 1e3 * (kl - 1e-4) * kl, rtol=1e-5)
    assert m["valid_group_frac"] == 0
    g = np.asarray(jax.grad(lambda x: disco(x, old, np.zeros_like(lp), M, rewards=r_uniform,
                                            group_size=4)[0])(jnp.asarray(lp)))
    d = (lp - old).astype(np.float64)
    np.testing.assert_allclose(g, 1e3 * (kl - 1e-4) * np.where(M, np.expm1(d), 0) / M.sum(), rtol=2e-4,
                               atol=1e-9)


@pytest.mark.parametrize("score,variant", [("logL", "disco"), ("Lratio", "disco_b")])
def test_disco_check_grads_without_active_constraint(score, variant):
    lp, old, M, r = group_batch(2, spread=0.05)
    check_grads(lambda x: disco(x, old, np.zeros_like(lp), M, rewards=r, group_size=4, score=score,
                                variant=variant, beta=0.0)[0],
                (jnp.asarray(lp),), order=1, modes=("rev",), atol=1e-2, rtol=1e-2, eps=1e-3)


def test_disco_bad_inputs_raise():
    lp, old, M, r = group_batch(0)
    z = np.zeros_like(lp)
    with pytest.raises(ValueError, match="group_size=5"):
        disco(lp, old, z, M, rewards=r, group_size=5)
    with pytest.raises(ValueError, match="rewards"):
        disco(lp, old, z, M, rewards=r[:5], group_size=4)
    with pytest.raises(ValueError, match="'logl'"):
        disco(lp, old, z, M, rewards=r, group_size=4, score="logl")


# ------------------------------------------------------------------------------- drpo


def test_drpo_hand_derived_weights():
    # one group G=3, T=4: positives rows 0 (2 tokens) and 1 (4 tokens), negative row 2.
    # w = exp((1 - L/4)/0.1): w0 = e^5, w1 = e^0 = 1. scores s0 = -1, s1 = -3, s2 = -2.
    # pos term = (e^5·(-1) + 1·(-3)) / (e^5 + 1); neg term = τ log exp(s2/τ) = s2 = -2
    lp = jnp.array([[-1.0] * 4, [-3.0] * 4, [-2.0] * 4])
    M = jnp.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    r = jnp.array([1.0, 1.0, 0.0])
    pos = (np.exp(5) * -1 - 3) / (np.exp(5) + 1)
    loss, _ = drpo(lp, lp, jnp.zeros((3, 4)), M, rewards=r, group_size=3)
    np.testing.assert_allclose(loss, -(pos + 2.0), rtol=1e-6)


def test_drpo_matches_numpy_and_check_grads():
    for seed in range(3):
        lp, old, M, r = group_batch(seed, T=6)
        for max_len in (None, 10):
            loss, _ = drpo(lp, old, np.zeros_like(lp), M, rewards=r, group_size=4, max_len=max_len)
            np.testing.assert_allclose(loss, np_disco(lp, old, M, r, 4, lam=0.1, max_len=max_len),
                                       rtol=1e-5, atol=1e-6)
    lp, old, M, r = group_batch(4)
    f = lambda x: drpo(x, old, np.zeros_like(lp), M, rewards=r, group_size=4)[0]  # noqa: E731
    np.testing.assert_allclose(jax.jit(f)(lp), f(lp), rtol=1e-6)
    check_grads(lambda x: drpo(x, old, np.zeros_like(lp), M, rewards=r, group_size=4, beta=0.0)[0],
                (jnp.asarray(lp),), order=1, modes=("rev",), atol=1e-2, rtol=1e-2, eps=1e-3)


# ------------------------------------------------------------------------------- trpa


def test_trpa_hand_derived():
    # G = 2, levels [1, 2]; old = logp (KL_old = 0); logp - ref = +0.5 on row 0, -0.5 on row 1.
    # h = 2.5 · 0.1 · (0.5 - (-0.5)) = 0.25 ; -log σ(0.25) = log(1 + e^-0.25) = 0.5759394...
    # KL_ref token-mean of k3: row0 e^-0.5 + 0.5 - 1 = 0.1065307, row1 e^0.5 - 0.5 - 1 = 0.1487213
    #   (equal lengths) -> 0.1276260 ; loss = 0.5759394 + 0.001 · 0.1276260
    lp = jnp.array([[-1.0, -2.0], [-1.5, -0.5]])
    ref = lp - jnp.array([[0.5], [-0.5]])
    M = jnp.ones((2, 2), bool)
    loss, m = trpa(lp, lp, jnp.zeros((2, 2)), M, ref_logp=ref, levels=jnp.array([1, 2]), group_size=2)
    kl_ref = (np.exp(-0.5) - 0.5 + np.exp(0.5) - 1.5) / 2
    np.testing.assert_allclose(loss, np.log1p(np.exp(-0.25)) + 1e-3 * kl_ref, rtol=1e-6)
    assert m["n_pairs"] == 1 and m["pair_acc"] == 1
    np.testing.assert_allclose(m["margin_mean"], 2.5, rtol=1e-6)  # h / β


@pytest.mark.parametrize("seed", range(4))
def test_trpa_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    lp, old, M, _ = group_batch(seed, Pn=3, G=4, spread=0.2)
    ref = (lp + rng.normal(size=lp.shape) * 0.3).astype(np.float32)
    levels = rng.integers(1, 5, size=12)
    levels[4:8] = 2  # a group with one level only: no pairs there
    loss, m = trpa(lp, old, np.zeros_like(lp), M, ref_logp=ref, levels=levels, group_size=4)
    np.testing.assert_allclose(loss, np_trpa(lp, old, ref, M, levels, 4), rtol=1e-5, atol=1e-6)


def test_trpa_fallback_without_pairs_and_check_grads():
    lp, old, M, _ = group_batch(5, Pn=2, G=3)
    ref = old - 0.1
    levels = np.array([1, 1, 1, 3, 3, 3])  # no within-group pair
    loss, m = trpa(lp, old, np.zeros_like(lp), M, ref_logp=ref, levels=levels, group_size=3)
    assert m["n_pairs"] == 0
    np.testing.assert_allclose(loss, np_trpa(lp, old, ref, M, levels, 3), rtol=1e-5)
    levels2 = np.array([1, 2, 4, 3, 1, 1])
    check_grads(lambda x: trpa(x, old, np.zeros_like(lp), M, ref_logp=ref, levels=levels2, group_size=3)[0],
                (jnp.asarray(lp),), order=1, modes=("rev",), atol=1e-2, rtol=1e-2, eps=1e-3)


# --------------------------------------------------------------------------- sharding


def test_group_losses_sharded_over_8_devices_equal_one_device(devices8):
    mesh = Mesh(np.array(devices8).reshape(8), ("data",))
    shard = NamedSharding(mesh, P("data"))
    lp, old, M, r = group_batch(6, Pn=8, G=2, T=4, spread=0.1)
    ref = old - 0.2
    levels = np.where(r > 0, 1, 2)
    z = np.zeros_like(lp)
    fns = {
        "disco": jax.jit(lambda a, b, c, m, rr: disco(a, b, c, m, rewards=rr, group_size=2)),
        "trpa": jax.jit(lambda a, b, c, m, rr, lv: trpa(a, b, c, m, ref_logp=rr, levels=lv, group_size=2)),
    }
    args = {"disco": (lp, old, z, M, r), "trpa": (lp, old, z, M, ref, levels)}
    for name, f in fns.items():
        one = f(*args[name])
        eight = f(*(jax.device_put(x, shard) for x in args[name]))
        np.testing.assert_allclose(eight[0], one[0], rtol=1e-6, atol=1e-7)
        g1 = jax.jit(jax.grad(lambda x, name=name: fns[name](x, *args[name][1:])[0]))(lp)
        g8 = jax.jit(jax.grad(lambda x, name=name: fns[name](x, *args[name][1:])[0]))(
            jax.device_put(lp, shard))
        np.testing.assert_allclose(g8, g1, rtol=1e-5, atol=1e-8)
