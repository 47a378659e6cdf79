"""Tests for the pairwise preference losses (rlx/losses/preference.py, rlx/losses/pairwise.py).

Expected values come from an independent float64 numpy reference written here from the
papers' formulas (DPO, cDPO, rDPO, IPO, SLiC hinge, SPPO-hard, APO-zero/down, DiscoPOP),
from hand derivations (written next to each case) and from limiting identities.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.losses import jitted, np_logsig
from jax.test_util import check_grads

from rlx.losses import pairwise as pw
from rlx.losses import preference as pref

_STATIC = ("paired", "loss_type", "sign")


def J(fn):
    return jitted(fn, _STATIC)

# ----------------------------------------------------------------------- numpy reference


def np_sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_per_pair(name, lc, lr, b, eps=0.0, tau=0.05):
    """Per-pair losses from the papers (lc, lr: chosen/rejected log-ratios, b: beta)."""
    d = lc - lr
    if name == "dpo":  # DPO Eq. 7 / cDPO: soft label 1 - eps
        return -(1 - eps) * np_logsig(b * d) - eps * np_logsig(-b * d)
    if name == "robust_dpo":  # rDPO Eq. (unbiased loss)
        return (-(1 - eps) * np_logsig(b * d) + eps * np_logsig(-b * d)) / (1 - 2 * eps)
    if name == "ipo":  # IPO Eq. 17, tau = beta
        return (d - 1 / (2 * b)) ** 2
    if name == "hinge":  # SLiC / RSO hinge-norm
        return np.maximum(0.0, 1 - b * d)
    if name == "sppo_hard":  # SPPO Eq. 4.7 with P = 1 (winner), 0 (loser), TRL scale
        return (lc - 1 / (2 * b)) ** 2 + (lr + 1 / (2 * b)) ** 2
    if name == "apo_zero":  # APO Eq. 7
        return 1 - np_sig(b * lc) + np_sig(b * lr)
    if name == "apo_down":  # APO Eq. 8
        return np_sig(b * lc) + 1 - np_sig(b * d)
    if name == "discopop":  # DiscoPOP Eq. 5 (LRML)
        x = b * d
        w = np_sig(x / tau)
        return (1 - w) * -np_logsig(x) + w * np.exp(-x)
    raise AssertionError(name)


FNS = {"dpo": pref.dpo, "robust_dpo": pref.robust_dpo, "ipo": pref.ipo, "hinge": pref.hinge,
       "sppo_hard": pref.sppo_hard, "apo_zero": pw.apo_zero, "apo_down": pw.apo_down,
       "discopop": pw.discopop}


def random_pairs(seed, n=7, scale=3.0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n).astype(np.float32) * scale - 20.0 for _ in range(4)]


CASES = [("dpo", {}), ("dpo", {"label_smoothing": 0.1}), ("robust_dpo", {"label_smoothing": 0.2}),
         ("robust_dpo", {}), ("ipo", {}), ("hinge", {}), ("sppo_hard", {}), ("apo_zero", {}),
         ("apo_down", {}), ("discopop", {}), ("discopop", {"tau": 0.5})]


@jax.jit
def all_cases(pc, pr, rc, rr, beta, valid):
    """Every CASES loss in one compiled program (one compile instead of eleven)."""
    return [FNS[name](pc, pr, rc, rr, beta=beta, valid=valid, **kw) for name, kw in CASES]


def test_numpy_reference():
    valid = np.array([1, 1, 0, 1, 1, 0, 1], bool)
    for beta in (0.1, 0.5):
        for seed in (0, 1):
            pc, pr, rc, rr = random_pairs(seed + 10 * int(beta * 10))
            lc = pc.astype(np.float64) - rc
            lr = pr.astype(np.float64) - rr
            full = all_cases(pc, pr, rc, rr, beta, np.ones(7, bool))
            masked = all_cases(pc, pr, rc, rr, beta, valid)
            for (name, kw), (got, _), (got_masked, _) in zip(CASES, full, masked):
                per = ref_per_pair(name, lc, lr, beta, kw.get("label_smoothing", 0.0), kw.get("tau", 0.05))
                np.testing.assert_allclose(got, per.mean(), rtol=2e-5, atol=1e-5, err_msg=f"{name} {kw}")
                np.testing.assert_allclose(got_masked, per[valid].mean(), rtol=2e-5, atol=1e-5,
                                           err_msg=f"{name} {kw} masked")


def test_masked_pairs_may_hold_nan():
    pc, pr, rc, rr = random_pairs(3)
    pc[2] = np.nan
    valid = np.arange(7) != 2
    for loss, m in all_cases(pc, pr, rc, rr, 0.1, valid):
        assert np.isfinite(loss) and all(np.isfinite(v) for v in m.values())
    # ... and no NaN leaks into the gradient (the input is cut by a `where`, not multiplied)
    total = jax.jit(jax.grad(lambda a: sum(loss for loss, _ in all_cases(a, pr, rc, rr, 0.1, valid))))
    g = total(pc)
    assert np.all(np.isfinite(g)) and g[2] == 0 and np.all(g[valid] != 0)


# ----------------------------------------------------------------------- identities


def test_cdpo_and_robust_at_zero_smoothing_equal_dpo():
    pc, pr, rc, rr = random_pairs(4)
    plain = -np.mean(np_logsig(0.1 * ((pc - rc) - (pr - rr)).astype(np.float64)))
    for fn in (pref.dpo, pref.robust_dpo):
        np.testing.assert_allclose(J(fn)(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0)[0], plain, rtol=1e-5)


def test_robust_dpo_is_unbiased_under_label_flips():
    # rDPO's defining property: E_flip[l_rob] = (1-e) l_rob(h) + e l_rob(-h) = -log sig(h).
    # Expanding: [-((1-e)^2 - e^2) log sig(h) + (e(1-e) - e(1-e)) log sig(-h)]/(1-2e) = -log sig(h).
    pc, pr, rc, rr = random_pairs(5)
    eps = 0.3
    for i in range(3):
        args = (pc[i:i + 1], pr[i:i + 1], rc[i:i + 1], rr[i:i + 1])
        flipped = (pr[i:i + 1], pc[i:i + 1], rr[i:i + 1], rc[i:i + 1])
        clean = J(pref.robust_dpo)(*args, beta=0.2, label_smoothing=eps)[0]
        flip = J(pref.robust_dpo)(*flipped, beta=0.2, label_smoothing=eps)[0]
        dpo = J(pref.dpo)(*args, beta=0.2)[0]
        np.testing.assert_allclose((1 - eps) * clean + eps * flip, dpo, rtol=1e-5)


def test_cdpo_half_smoothing_is_symmetric():
    pc, pr, rc, rr = random_pairs(6)
    a = J(pref.dpo)(pc, pr, rc, rr, label_smoothing=0.5)[0]
    b = J(pref.dpo)(pr, pc, rr, rc, label_smoothing=0.5)[0]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_ipo_optimum_at_margin_one_over_two_beta():
    beta = 0.25  # optimum margin d* = 1/(2*0.25) = 2
    grid = np.linspace(-1, 5, 601).astype(np.float32)
    zeros = np.zeros_like(grid)
    losses = [J(pref.ipo)(grid[i:i + 1], zeros[:1], zeros[:1], zeros[:1], beta=beta)[0] for i in range(0, 601, 10)]
    np.testing.assert_allclose(grid[::10][int(np.argmin(losses))], 2.0, atol=1e-6)
    g = jax.grad(lambda x: J(pref.ipo)(x, jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=beta)[0])(jnp.array([2.0]))
    np.testing.assert_allclose(g, 0.0, atol=1e-6)
    assert float(J(pref.ipo)(jnp.array([2.0]), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), beta=beta)[0]) == 0.0


def test_dpo_gradient_by_hand():
    # l = mean_i -log sig(h_i), h = b((pc-rc)-(pr-rr)) -> dl/dpc_i = -b sig(-h_i)/N, dl/dpr_i = +b sig(-h_i)/N.
    pc, pr, rc, rr = random_pairs(7, n=4, scale=1.0)
    b = 0.3
    h = b * ((pc - rc) - (pr - rr)).astype(np.float64)
    gc, gr, g_ref = jax.grad(lambda x, y, r: J(pref.dpo)(x, y, r, rr, beta=b)[0], argnums=(0, 1, 2))(pc, pr, rc)
    np.testing.assert_allclose(gc, -b * np_sig(-h) / 4, rtol=1e-5)
    np.testing.assert_allclose(gr, b * np_sig(-h) / 4, rtol=1e-5)
    np.testing.assert_allclose(g_ref, -gc, rtol=1e-6)  # the reference log-probs are plain inputs


def test_hinge_zero_beyond_margin_and_slope():
    z = jnp.zeros(2)
    loss, _ = J(pref.hinge)(jnp.array([11.0, 5.0]), z, z, z, beta=0.1)  # b d = 1.1 -> 0; 0.5 -> 0.5
    np.testing.assert_allclose(loss, 0.25, rtol=1e-6)
    g = jax.grad(lambda x: J(pref.hinge)(x, z, z, z, beta=0.1)[0])(jnp.array([11.0, 5.0]))
    np.testing.assert_allclose(g, [0.0, -0.05], atol=1e-7)  # -beta / N on the active pair


def test_sppo_hard_minimum():
    # (lc - 1/(2b))^2 + (lr + 1/(2b))^2 = 0 at lc = 5, lr = -5 for b = 0.1.
    z = jnp.zeros(1)
    np.testing.assert_allclose(J(pref.sppo_hard)(jnp.array([5.0]), jnp.array([-5.0]), z, z, beta=0.1)[0], 0.0)
    np.testing.assert_allclose(J(pref.sppo_hard)(z, z, z, z, beta=0.1)[0], 50.0)  # 25 + 25


def test_nca_exo_bco_hand_values():
    z = jnp.zeros(1)
    ln2 = np.log(2.0)
    # NCA at r = 0: -log 1/2 - 1/2 log 1/2 - 1/2 log 1/2 = 2 log 2.
    np.testing.assert_allclose(J(pref.nca)(z, z, z, z)[0], 2 * ln2, rtol=1e-6)
    # EXO at h = 0 (q = 1/2): 1/2(log 1/2 - log(1-e)) + 1/2(log 1/2 - log e) = -log 2 - 1/2 log(e(1-e)).
    e = 0.01
    np.testing.assert_allclose(J(pref.exo)(z, z, z, z, label_smoothing=e)[0], -ln2 - 0.5 * np.log(e * (1 - e)),
                               rtol=1e-5)
    # EXO is KL(q || [1-e, e]) >= 0, zero (and stationary) where sigmoid(h) = 1 - e: h = log((1-e)/e).
    d_star = np.log((1 - e) / e) / 0.1
    loss_star = J(pref.exo)(jnp.array([d_star]), z, z, z, label_smoothing=e)[0]
    np.testing.assert_allclose(loss_star, 0.0, atol=1e-5)
    g = jax.grad(lambda x: J(pref.exo)(x, z, z, z, label_smoothing=e)[0])(jnp.array([d_star], jnp.float32))
    np.testing.assert_allclose(g, 0.0, atol=1e-5)
    # BCO at r = 0 and delta = 0: 2 log 2; with delta = 1: -log sig(-1) - log sig(1) = log(1+e)+log(1+e^-1).
    np.testing.assert_allclose(J(pref.bco)(z, z, z, z, delta=0.0)[0], 2 * ln2, rtol=1e-6)
    np.testing.assert_allclose(J(pref.bco)(z, z, z, z, delta=1.0)[0], np.log1p(np.e) + np.log1p(1 / np.e), rtol=1e-6)


def test_bco_running_mean_is_mean_of_all_rewards():
    m, c = 0.0, 1e-24
    m, c = J(pref.bco_running_mean)(m, c, jnp.array([1.0, 2.0]), jnp.array([3.0, 6.0]))
    np.testing.assert_allclose(m, 3.0, rtol=1e-6)  # (1+2+3+6)/4
    m, c = J(pref.bco_running_mean)(m, c, jnp.array([10.0, 99.0]), jnp.array([0.0, 99.0]),
                                 valid=jnp.array([True, False]))
    np.testing.assert_allclose(m, 22.0 / 6, rtol=1e-6)  # (12 + 10 + 0)/6
    np.testing.assert_allclose(c, 6.0, rtol=1e-6)


def test_apo_and_discopop_at_zero():
    z = jnp.zeros(1)
    np.testing.assert_allclose(J(pw.apo_zero)(z, z, z, z)[0], 1.0)  # 1 - 1/2 + 1/2
    np.testing.assert_allclose(J(pw.apo_down)(z, z, z, z)[0], 1.0)  # 1/2 + 1 - 1/2
    np.testing.assert_allclose(J(pw.discopop)(z, z, z, z)[0], 0.5 * np.log(2) + 0.5, rtol=1e-6)  # w = 1/2
    far, _ = J(pw.discopop)(jnp.array([-1e4]), z, z, z)  # official form is 0*inf = NaN here
    assert np.isfinite(far) and far > 900  # ~ -log sig(-1000) = 1000
    g = jax.grad(lambda x: J(pw.discopop)(x, z, z, z)[0])(jnp.array([-1e4]))
    assert np.all(np.isfinite(g))


def test_aot_paired_unpaired_by_hand():
    # paired: u = sort(pc - pr) = sort([3, -1]) = [-1, 3]; v = sort(rc - rr) = sort([0, 2]) = [0, 2]
    # delta = [-1, 1]; loss = mean(-log sig(b * delta)) with b = 1.
    pc, pr = jnp.array([3.0, 0.0]), jnp.array([0.0, 1.0])
    rc, rr = jnp.array([0.0, 2.0]), jnp.array([0.0, 0.0])
    loss, _ = J(pw.aot)(pc, pr, rc, rr, beta=1.0)
    np.testing.assert_allclose(loss, np.mean(-np_logsig(np.array([-1.0, 1.0]))), rtol=1e-6)
    # unpaired: u = sort(pc - rc) = sort([3, -2]) = [-2, 3], v = sort(pr - rr) = [0, 1]; delta = [-2, 2].
    loss_u, _ = J(pw.aot)(pc, pr, rc, rr, beta=1.0, paired=False)
    np.testing.assert_allclose(loss_u, np.mean(-np_logsig(np.array([-2.0, 2.0]))), rtol=1e-6)
    # N = 1: sorting is trivial and paired AOT is DPO.
    one = [x[:1] for x in (pc, pr, rc, rr)]
    np.testing.assert_allclose(J(pw.aot)(*one, beta=0.3)[0], J(pref.dpo)(*one, beta=0.3)[0], rtol=1e-6)


def np_aot(pc, pr, rc, rr, b, paired):
    """AOT from the paper: logistic loss on the quantile-matched (sorted) margins."""
    u, v = (pc - pr, rc - rr) if paired else (pc - rc, pr - rr)
    return np.mean(-np_logsig(b * (np.sort(u.astype(np.float64)) - np.sort(v))))


def test_aot_is_permutation_invariant_and_masks():
    pc, pr, rc, rr = random_pairs(8, n=6)
    perm = np.array([3, 0, 5, 1, 4, 2])
    valid = np.array([1, 0, 1, 1, 0, 1], bool)
    for paired in (True, False):
        a = J(pw.aot)(pc, pr, rc, rr, beta=0.1, paired=paired, valid=np.ones(6, bool))[0]
        b = J(pw.aot)(pc[perm], pr[perm], rc[perm], rr[perm], beta=0.1, paired=paired, valid=np.ones(6, bool))[0]
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(a, np_aot(pc, pr, rc, rr, 0.1, paired), rtol=1e-5)
        masked = J(pw.aot)(pc, pr, rc, rr, beta=0.1, paired=paired, valid=valid)[0]
        np.testing.assert_allclose(masked, np_aot(pc[valid], pr[valid], rc[valid], rr[valid], 0.1, paired), rtol=1e-5)


def test_tpo_triple_xpo_vpo_compose_dpo():
    pc, pr, rc, rr = random_pairs(9, n=3, scale=1.0)
    gold = np.array([[-1.0, -2.0, np.nan], [-3.0, np.nan, np.nan], [-0.5, -0.5, -0.5]], np.float32)
    gmask = ~np.isnan(gold)
    # NLL = token mean over the batch: (1+2+3+0.5*3)/6 = 7.5/6.
    d = (pc - pr).astype(np.float64)
    loss, m = J(pw.tpo_triple)(pc, pr, gold, gmask, beta=0.01, alpha=2.0, gamma=0.0)
    np.testing.assert_allclose(m["nll"], 7.5 / 6, rtol=1e-6)
    np.testing.assert_allclose(loss, np.mean(-np_logsig(0.01 * d)) + 2.0 * 7.5 / 6, rtol=1e-5)
    # gamma shifts the margin by gamma/beta: -log sig(b(d) - gamma)
    l_g, _ = J(pw.tpo_triple)(pc, pr, gold, gmask, beta=0.5, alpha=0.0, gamma=0.3)
    np.testing.assert_allclose(l_g, np.mean(-np_logsig(0.5 * (pc - pr).astype(np.float64) - 0.3)), rtol=1e-5)
    ref_lp = np.array([-4.0, -5.0, -6.0], np.float32)
    dr = d - (rc - rr)
    dpo, ipo = np.mean(-np_logsig(0.1 * dr)), np.mean((dr - 5.0) ** 2)
    x, mx = J(pw.xpo)(pc, pr, rc, rr, ref_lp, alpha=0.1)
    np.testing.assert_allclose(x, dpo - 0.5, rtol=1e-5)  # + 0.1 * mean(-4, -5, -6)
    np.testing.assert_allclose(mx["xpo_term"], -0.5, rtol=1e-6)
    xi, _ = J(pw.xpo)(pc, pr, rc, rr, ref_lp, alpha=0.1, loss_type="ipo")
    np.testing.assert_allclose(xi, ipo - 0.5, rtol=1e-5)
    for sign in (1, -1):
        vl, _ = J(pw.vpo)(pc, pr, rc, rr, ref_lp, alpha=0.1, sign=sign)
        np.testing.assert_allclose(vl, dpo - sign * 0.5, rtol=1e-5)


# ----------------------------------------------------------------------- metrics, grads, jit


def test_metrics_by_hand():
    # lr_c = [2, -1], lr_r = [0, 1], beta 0.5: rewards c = [1, -0.5], r = [0, 0.5]; margins [1, -1].
    pc, pr = jnp.array([2.0, -1.0]), jnp.array([0.0, 1.0])
    z = jnp.zeros(2)
    _, m = J(pref.dpo)(pc, pr, z, z, beta=0.5)
    np.testing.assert_allclose([m["chosen_reward"], m["rejected_reward"], m["reward_margin"], m["reward_accuracy"]],
                               [0.25, 0.25, 0.0, 0.5], atol=1e-7)


GRAD_FNS = [pref.dpo, pref.robust_dpo, pref.ipo, pref.exo, pref.nca, pref.bco, pref.sppo_hard, pw.aot,
            pw.apo_zero, pw.apo_down, pw.discopop]


def test_check_grads():
    rng = np.random.default_rng(11)
    pc, pr = (rng.normal(size=3).astype(np.float32) for _ in range(2))
    rc, rr = np.zeros(3, np.float32), np.full(3, 0.3, np.float32)

    @jax.jit
    def losses(a, b):  # all losses stacked: check_grads projects on random cotangents
        return jnp.stack([fn(a, b, rc, rr, beta=0.5, **({"label_smoothing": 0.2} if fn in (
            pref.robust_dpo, pref.exo) else {}))[0] for fn in GRAD_FNS])

    check_grads(losses, (pc, pr), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)
    for i in range(len(GRAD_FNS)):  # and each one on its own (cheap: the program is compiled)
        check_grads(lambda a, b: losses(a, b)[i], (pc, pr), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


def test_jit_matches_eager():
    pc, pr, rc, rr = random_pairs(12)
    f = jax.jit(lambda *a: J(pref.dpo)(*a, beta=0.2, label_smoothing=0.1))
    np.testing.assert_allclose(f(pc, pr, rc, rr)[0], pref.dpo(pc, pr, rc, rr, beta=0.2, label_smoothing=0.1)[0],
                               rtol=1e-6)


# ----------------------------------------------------------------------- errors, registry


def test_bad_inputs_name_the_argument():
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="ref_rejected_logp"):
        pref.dpo(x, x, x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="policy_chosen_logp"):
        pref.dpo(np.zeros((3, 2)), x, x, x)
    with pytest.raises(ValueError, match="valid"):
        pref.dpo(x, x, x, x, valid=np.ones(2, bool))
    with pytest.raises(ValueError, match="label_smoothing"):
        pref.robust_dpo(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        pref.robust_dpo(x, x, x, x, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        pref.exo(x, x, x, x, label_smoothing=0.0)
    with pytest.raises(ValueError, match="beta"):
        pref.ipo(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="loss_type"):
        pw.xpo(x, x, x, x, x, loss_type="hinge")
    with pytest.raises(ValueError, match="sign"):
        pw.vpo(x, x, x, x, x, sign=0)
    with pytest.raises(ValueError, match="gold_token_logp"):
        pw.tpo_triple(x, x, np.zeros((2, 2)), np.ones((2, 2), bool))


def test_registry():
    names = pref.names()
    for n in ("dpo", "robust_dpo", "ipo", "hinge", "exo", "nca", "bco", "sppo_hard", "aot", "apo_zero", "apo_down",
              "discopop", "tpo_triple", "xpo", "vpo", "lipo", "pro", "tpo_tree", "sppo", "nash_md", "dno", "inpo",
              "egpo", "copg", "p3o", "sparse_po", "tgdpo", "cpl"):
        assert n in names
    assert pref.get("ipo") is pref.ipo
    with pytest.raises(KeyError, match="known: .*dpo"):
        pref.get("dpoo")
