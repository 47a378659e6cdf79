"""Group-contrastive policy losses: DisCO, DRPO and TRPA.

These compare the G responses of one prompt with each other instead of weighting tokens
by an advantage. Group layout (rlx/types.py): B = P·G rows, row p·G + g is sample g of
prompt p; `group_size` is the static G. Per-row inputs (`rewards`, `levels`, `valid`)
may be given as `[B]` or `[P, G]`. They follow the common policy-loss signature of
`rlx.losses.policy`; the `adv` argument is accepted and ignored (these losses build
their own signal from rewards / preference levels).

All three reduce over the whole batch at once: group terms are summed over all prompts
and the KL terms are global token means. Under `jit` with a batch sharded over devices
the sums are global (exact under data parallelism, as the official code's all-gather
is). They are NOT decomposable over micro-batches: a trainer must pass whole groups,
and the whole batch the official code reduces over, in one call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.aggregate import aggregate, check_bt, safe_div
from rlx.losses.kl import kl
from rlx.losses.policy import POLICY_LOSSES, prepare, sg

Array = jax.Array


def _rows(x, B: int, G: int, name: str, dtype) -> Array:
    """A per-row input given as [B] or [P, G] -> [B] of dtype (error names `name`)."""
    x = jnp.asarray(x)
    if x.shape not in ((B,), (B // G, G)):
        raise ValueError(f"{name}: expected shape [B]=({B},) or [P, G]=({B // G}, {G}), got {x.shape}")
    return x.reshape(B).astype(dtype)


def _groups(B: int, group_size: int) -> int:
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if B % group_size:
        raise ValueError(f"batch of {B} rows is not a whole number of groups of group_size={group_size}")
    return B // group_size


def discriminative_objective(score_PG: Array, pos_PG: Array, neg_PG: Array, *, tau: float,
                             variant: str, pos_logw_PG: Array | None = None):
    """Σ over valid groups of J_q, and per-group validity (pos and neg both present).

    J_q = wmean_{o+} s − τ log mean_{o−} exp(s/τ)   (variant "disco", DRO / log-sum-exp)
    J_q = wmean_{o+} s − mean_{o−} s                (variant "disco_b", the basic form)
    wmean is a plain mean, or the mean weighted by exp(pos_logw) (DRPO).
    """
    n_pos = jnp.sum(pos_PG, axis=1)
    n_neg = jnp.sum(neg_PG, axis=1)
    ok_P = (n_pos > 0) & (n_neg > 0)
    if pos_logw_PG is None:
        w = pos_PG.astype(score_PG.dtype)
    else:  # weights exp(logw) normalized within the group; shift by the max for stability
        lw = jnp.where(pos_PG, pos_logw_PG, -jnp.inf)
        lw_max = jnp.where(n_pos > 0, jnp.max(lw, axis=1), 0.0)
        w = jnp.where(pos_PG, jnp.exp(jnp.where(pos_PG, pos_logw_PG - lw_max[:, None], 0.0)), 0.0)
    pos_term = safe_div(jnp.sum(w * score_PG, axis=1), jnp.sum(w, axis=1))
    if variant == "disco_b":
        neg_term = ops.masked_mean(score_PG, neg_PG, axis=1)
    else:
        z = score_PG / tau
        z_max = sg(jnp.where(n_neg > 0, jnp.max(jnp.where(neg_PG, z, -jnp.inf), axis=1), 0.0))
        sum_exp = jnp.sum(jnp.where(neg_PG, jnp.exp(jnp.where(neg_PG, z - z_max[:, None], 0.0)), 0.0), axis=1)
        lme = z_max + jnp.log(jnp.where(n_neg > 0, sum_exp, 1.0)) - jnp.log(jnp.maximum(n_neg, 1))
        neg_term = tau * lme
    J_P = jnp.where(ok_P, pos_term - neg_term, 0.0)
    return jnp.sum(J_P), ok_P


def _disco_core(logp, old_logp, adv, mask, *, rewards, group_size, valid, score, variant, tau,
                delta, beta, kl_estimator, threshold, agg, pos_logw_fn=None):
    if score not in ("logL", "Lratio"):
        raise ValueError(f"score must be 'logL' or 'Lratio', got {score!r}")
    if variant not in ("disco", "disco_b"):
        raise ValueError(f"variant must be 'disco' or 'disco_b', got {variant!r}")
    if kl_estimator not in ("k3", "k1"):
        raise ValueError(f"kl_estimator must be 'k3' or 'k1', got {kl_estimator!r}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    _, lp, d, _ = prepare(logp, old_logp, adv, mask, log_ratio_clamp=None, agg=agg)
    B, T = d.shape
    P = _groups(B, group_size)
    G = group_size
    r_B = _rows(rewards, B, G, "rewards", jnp.float32)
    ok_B = ops.masked_count(d, mask, axis=1) > 0  # rows without tokens have no score
    if valid is not None:
        ok_B = ok_B & _rows(valid, B, G, "valid", bool)
    score_B = ops.masked_mean(lp if score == "logL" else jnp.exp(d), mask, axis=1)
    pos_B, neg_B = ok_B & (r_B > threshold), ok_B & (r_B <= threshold)
    pos_logw_PG = None if pos_logw_fn is None else pos_logw_fn(d, mask).reshape(P, G)
    total_J, ok_P = discriminative_objective(score_B.reshape(P, G), pos_B.reshape(P, G),
                                             neg_B.reshape(P, G), tau=tau, variant=variant,
                                             pos_logw_PG=pos_logw_PG)
    objective = total_J / P
    per_tok_kl = jnp.expm1(d) - d if kl_estimator == "k3" else -d
    kl_value = aggregate(per_tok_kl, mask, agg)
    constraint = sg(beta * jnp.maximum(kl_value - delta, 0.0)) * kl_value
    loss = -objective + constraint
    in_group_B = jnp.repeat(ok_P, G)
    metrics = {"objective": sg(objective), "kl": sg(kl_value),
               "constraint_active": (sg(kl_value) > delta).astype(jnp.float32),
               "valid_group_frac": jnp.mean(ok_P.astype(jnp.float32)),
               "pos_score_mean": ops.masked_mean(sg(score_B), pos_B & in_group_B),
               "neg_score_mean": ops.masked_mean(sg(score_B), neg_B & in_group_B)}
    return loss, metrics


@POLICY_LOSSES.register()
def disco(logp: Array, old_logp: Array, adv: Array, mask: Array, *, rewards: Array, group_size: int,
          valid: Array | None = None, score: str = "logL", variant: str = "disco", tau: float = 10.0,
          delta: float = 1e-4, beta: float = 1e3, kl_estimator: str = "k3", threshold: float = 0.5,
          agg: str = "token-mean") -> tuple[Array, dict[str, Array]]:
    """DisCO: discriminative objective over each group's positive and negative answers,
    with a KL trust region enforced by a squared-hinge penalty.

    Paper: "DisCO: Reinforcing Large Reasoning Models with Discriminative Constrained
    Optimization" (Li et al. 2025); official code github.com/Optimization-AI/DisCO
    (`compute_policy_loss_disco_{logL,Lratio}`, `..._discob_*`).

        s(o) = mean_t log π_θ(o_t)                   (score "logL")
             = mean_t π_θ(o_t)/π_old(o_t)             (score "Lratio")
        J_q  = mean_{o+} s − τ · log mean_{o−} exp(s/τ)     (variant "disco")
             = mean_{o+} s − mean_{o−} s                    (variant "disco_b")
        KL   = agg_t(ρ − 1 − log ρ)  (kl_estimator "k3") or agg_t(log π_old − log π_θ) ("k1")
        loss = −(1/P) Σ_{q valid} J_q + sg(β · max(KL − δ, 0)) · KL

    o+ / o− are the samples with reward > `threshold` / <= `threshold` (the official code
    uses reward == 1 / == 0; identical for binary rewards). Groups with no positive or no
    negative are skipped but still count in P (the official code divides by the number
    of all questions). `rewards`: `[B]` or `[P, G]`; `valid` (optional, same shapes)
    excludes samples; `adv` is ignored. Defaults from the official scripts: τ = 10 for
    logL (the authors recommend τ = 1 for Lratio), δ = 1e-4, β = 1e3. In the paper
    DisCO-b is the *basic* objective (mean difference); the log-sum-exp form is the one
    that handles the imbalance of many negatives.

    Deviations from the official code: (1) its KL default: the function signature
    defaults to "low_var_kl" (= k3 here, rlx's default) but the released training
    scripts pass `ppo_kl_type=kl` (= "k1"); pass kl_estimator="k1" to reproduce them.
    (2) the official code replaces log-mean-exp by the surrogate S/(sg(S)+eps) (S the
    shifted sum of exponentials): same gradient, a value shifted by a constant. rlx
    computes the true log-mean-exp, so the reported loss is the paper's J. (3) rows
    with no valid token are excluded (the official code would divide by zero).
    (4) its `disco_Lratio` dispatch calls the DisCO-b function with an extra argument;
    rlx implements all four combinations as the paper defines them.

    `agg` aggregates the per-token KL (official: a global token mean); the group term
    always reduces as above. Needs whole groups in one call (see the module docstring).

    Metrics: objective, kl, constraint_active (KL > δ, the official `pg_clipfrac`),
    valid_group_frac, pos_score_mean, neg_score_mean.
    """
    return _disco_core(logp, old_logp, adv, mask, rewards=rewards, group_size=group_size, valid=valid,
                       score=score, variant=variant, tau=tau, delta=delta, beta=beta,
                       kl_estimator=kl_estimator, threshold=threshold, agg=agg)


@POLICY_LOSSES.register()
def drpo(logp: Array, old_logp: Array, adv: Array, mask: Array, *, rewards: Array, group_size: int,
         valid: Array | None = None, lam: float = 0.1, max_len: int | None = None, tau: float = 10.0,
         delta: float = 1e-4, beta: float = 1e3, kl_estimator: str = "k3", threshold: float = 0.5,
         agg: str = "token-mean") -> tuple[Array, dict[str, Array]]:
    """DRPO: DisCO-logL whose positive term is a length-weighted mean.

    Paper: "DRPO: Efficient Reasoning via Decoupled Reward Policy Optimization"; official
    code github.com/Optimization-AI/DRPO (`compute_policy_loss_drpo`).

        w(o) = exp((1 − |o| / L_max) / λ)      for positive o (|o| in tokens)
        J_q  = Σ_{o+} w s / Σ_{o+} w − τ · log mean_{o−} exp(s/τ),   s = mean_t log π_θ
        loss = −(1/P) Σ_{q valid} J_q + sg(β · max(KL − δ, 0)) · KL

    Shorter correct answers get larger weight; negatives are untouched (the decoupling).
    Defaults from the official script: λ = 0.1, τ = 10, δ = 1e-4, β = 1e3; L_max is the
    padded response length (the official code uses the mask's width, with padding to the
    max response length) — `max_len` defaults to T. The weights are normalized within a
    group, so rlx shifts the log-weights by their group maximum (same value, no overflow).
    Other deviations and the KL estimator as in `disco` (official scripts: "k1").
    """
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam!r}")
    T = jnp.shape(logp)[-1] if jnp.ndim(logp) == 2 else 1
    L_max = T if max_len is None else max_len
    if isinstance(L_max, (int, float)) and L_max <= 0:
        raise ValueError(f"max_len must be positive, got {max_len!r}")

    def pos_logw(d, m):
        length_B = ops.masked_count(d, m, axis=1)
        return (1.0 - length_B / L_max) / lam

    return _disco_core(logp, old_logp, adv, mask, rewards=rewards, group_size=group_size, valid=valid,
                       score="logL", variant="disco", tau=tau, delta=delta, beta=beta,
                       kl_estimator=kl_estimator, threshold=threshold, agg=agg, pos_logw_fn=pos_logw)


@POLICY_LOSSES.register()
def trpa(logp: Array, old_logp: Array, adv: Array, mask: Array, *, ref_logp: Array, levels: Array,
         group_size: int, valid: Array | None = None, beta: float = 0.1, anisotropy: float = 2.5,
         top_level: int = 1, kl_old_coef: float = 1e-3, kl_ref_coef: float = 1e-3,
         kl_clamp: float | None = 10.0, agg: str = "token-mean") -> tuple[Array, dict[str, Array]]:
    """TRPA: pairwise preference loss over rule-based preference levels, plus two KL terms.

    Paper: "Trust Region Preference Approximation: A simple and stable reinforcement
    learning algorithm for LLM reasoning"; official code
    github.com/XueruiSu/Trust-Region-Preference-Approximation
    (`compute_pairwise_policy_loss`, `dp_actor.py`, `main_TRPA.sh`).

    `levels` (int, `[B]` or `[P, G]`): 1 = correct, 2 = wrong answer, 3 = unparseable /
    incomplete, 4 = bad format — lower is better. For every pair (i, j) of valid samples
    of the same prompt with level_i < level_j:

        ℓ̄_i  = mean_t (log π_θ − log π_ref)(y_it)
        h_ij = c · β · (ℓ̄_i − ℓ̄_j),   c = anisotropy if level_i == top_level else 1
        loss = −mean_pairs log σ(h_ij)
               + kl_old_coef · agg(k3(π_θ, π_old)) + kl_ref_coef · agg(k3(π_θ, π_ref))

    The pair mean is over all pairs of the batch (the official code flattens the pairs of
    all groups). If the batch holds no pair at all, the official fallback is used:
    −mean_i log σ(±ℓ̄_i) with + for level == top_level, − otherwise (no β, as there).
    Defaults from main_TRPA.sh: β = 0.1, anisotropy 2.5, both KL coefficients 1e-3 with
    verl's "low_var_kl" (k3 clamped to [−10, 10], `kl_clamp`), token-mean. The official
    `use_sqrt_trkl` option (sqrt(KL_old + 0.25)) is off by default there and not
    implemented. Deviation: rows with no valid token (and `valid` False) are excluded
    from pairs (the official code would divide by zero). `adv` is ignored.

    `agg` aggregates the two per-token KL terms (official: token-mean).

    Metrics: pref_loss, n_pairs, pair_acc (fraction of pairs with h > 0), margin_mean
    (mean h / β, the official `log_delta`), kl_old, kl_ref.
    """
    check_bt(logp=logp, ref_logp=ref_logp)
    _, lp, d, _ = prepare(logp, old_logp, adv, mask, log_ratio_clamp=None, agg=agg)
    B, T = d.shape
    P = _groups(B, group_size)
    G = group_size
    m = jnp.asarray(mask) != 0
    ref = jnp.where(m, ref_logp, 0.0)
    old = jnp.where(m, old_logp, 0.0)
    lr_B = ops.masked_mean(lp - ref, mask, axis=1)
    lev_B = _rows(levels, B, G, "levels", jnp.int32)
    ok_B = ops.masked_count(d, mask, axis=1) > 0
    if valid is not None:
        ok_B = ok_B & _rows(valid, B, G, "valid", bool)
    lev, lr, ok = lev_B.reshape(P, G), lr_B.reshape(P, G), ok_B.reshape(P, G)
    pair = ok[:, :, None] & ok[:, None, :] & (lev[:, :, None] < lev[:, None, :])  # [P, G, G]: i beats j
    c = jnp.where(lev[:, :, None] == top_level, anisotropy, 1.0)
    h = c * beta * (lr[:, :, None] - lr[:, None, :])
    n_pairs = jnp.sum(pair)
    pair_loss = safe_div(jnp.sum(jnp.where(pair, jax.nn.softplus(-h), 0.0)), n_pairs)
    sign_B = jnp.where(lev_B == top_level, 1.0, -1.0)
    fallback = ops.masked_mean(jax.nn.softplus(-sign_B * lr_B), ok_B)
    pref_loss = jnp.where(n_pairs > 0, pair_loss, fallback)
    kl_old = aggregate(kl(lp, old, "k3", clamp=kl_clamp), mask, agg)
    kl_ref = aggregate(kl(lp, ref, "k3", clamp=kl_clamp), mask, agg)
    loss = pref_loss + kl_old_coef * kl_old + kl_ref_coef * kl_ref
    hs = sg(h)
    metrics = {"pref_loss": sg(pref_loss), "n_pairs": n_pairs.astype(jnp.float32),
               "pair_acc": ops.masked_mean((hs > 0).astype(jnp.float32), pair),
               "margin_mean": ops.masked_mean(hs / beta, pair),
               "kl_old": sg(kl_old), "kl_ref": sg(kl_ref)}
    return loss, metrics
