"""More pairwise preference losses: AOT, APO-zero/down, DiscoPOP, TPO-triple, XPO, VPO.

Same conventions as rlx/losses/preference.py (sequence log-probs `[N]`, optional `valid`
mask, `(loss, metrics)` with implicit-reward metrics); all are registered in
`rlx.losses.preference.PREFERENCE`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.preference import (
    PREFERENCE,
    check_positive,
    check_range,
    clean,
    finish,
    log_sigmoid,
    pair_inputs,
    reward_metrics,
    sg,
    smoothed_logistic,
    vector,
)

Array = jax.Array


def _sorted_valid(x_N: Array, valid_N: Array) -> Array:
    """x sorted ascending over its valid entries, which come first (the tail is +inf)."""
    return jnp.sort(jnp.where(valid_N, x_N, jnp.inf))


@PREFERENCE.register()
def aot(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
        beta: float = 0.1, label_smoothing: float = 0.0, paired: bool = True, valid=None):
    """AOT: alignment via optimal transport, a distributional (quantile) DPO.

    Paper: "Distributional Preference Alignment of LLMs via Optimal Transport" (Melnyk et
    al. 2024); TRL loss types `aot` (paired) and `aot_unpaired`.

        paired:   u = sort_N(π_c − π_r),   v = sort_N(ref_c − ref_r)
        unpaired: u = sort_N(π_c − ref_c), v = sort_N(π_r − ref_r)
        ℓ = mean_i [−(1 − ε) log σ(β(u_i − v_i)) − ε log σ(−β(u_i − v_i))]

    The i-th smallest of one batch statistic is matched with the i-th smallest of the
    other (first-order stochastic dominance over the batch). Sorting couples the pairs:
    the loss depends on the whole batch (global under `jit` with sharded inputs, not
    decomposable over micro-batches). Invalid pairs are left out of both sorts.
    Defaults: β = 0.1, ε = 0 (TRL).
    """
    check_positive(beta, "beta")
    check_range(label_smoothing, "label_smoothing", 0.0, 0.5, hi_open=False)
    pc = vector(policy_chosen_logp, "policy_chosen_logp")
    n = pc.shape[0]
    pr = vector(policy_rejected_logp, "policy_rejected_logp", n)
    rc = vector(ref_chosen_logp, "ref_chosen_logp", n)
    rr = vector(ref_rejected_logp, "ref_rejected_logp", n)
    lr_c, lr_r, v = pair_inputs(pc, pr, rc, rr, valid)
    a, b = (pc - pr, rc - rr) if paired else (lr_c, lr_r)
    first = jnp.arange(n) < jnp.sum(v)  # sorted valid entries occupy the first positions
    delta = jnp.where(first, _sorted_valid(a, v) - _sorted_valid(b, v), 0.0)
    per = smoothed_logistic(beta * delta, label_smoothing)
    loss = ops.masked_mean(jnp.where(first, per, 0.0), first)
    return loss, reward_metrics(beta * lr_c, beta * lr_r, v)


@PREFERENCE.register()
def apo_zero(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
             beta: float = 0.1, valid=None):
    """APO-zero: anchored preference optimization, raise chosen / lower rejected rewards.

    Paper: "Anchored Preference Optimization and Contrastive Revisions" (D'Oosterlinck et
    al. 2024), Eq. 7; TRL loss type `apo_zero`. For data whose chosen answers are better
    than the model's own outputs.

        ℓ = (1 − σ(β lr_c)) + σ(β lr_r)

    Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    per = (1.0 - jax.nn.sigmoid(beta * lr_c)) + jax.nn.sigmoid(beta * lr_r)
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def apo_down(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
             beta: float = 0.1, valid=None):
    """APO-down: lower both rewards, the rejected one more.

    Paper: "Anchored Preference Optimization and Contrastive Revisions", Eq. 8; TRL loss
    type `apo_down`. For data whose chosen answers are worse than the model's outputs.

        ℓ = σ(β lr_c) + (1 − σ(β (lr_c − lr_r)))

    Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    per = jax.nn.sigmoid(beta * lr_c) + (1.0 - jax.nn.sigmoid(beta * (lr_c - lr_r)))
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def discopop(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
             beta: float = 0.1, tau: float = 0.05, valid=None):
    """DiscoPOP: the log-ratio modulated loss (LRML) discovered by LLM-driven search.

    Paper: "Discovering Preference Optimization Algorithms with and for Large Language
    Models" (Chris Lu et al. 2024), Eq. 5; TRL loss type `discopop`.

        x = β·d,   w = σ(x/τ)
        ℓ = (1 − w)·(−log σ(x)) + w·exp(−x)

    a blend of the logistic (DPO) and exponential losses, weighted by the margin.
    Defaults: β = 0.1, τ = 0.05 (the paper's value).

    Deviation (numerics only): w·exp(−x) is computed as exp(−x + log σ(x/τ)), which equals
    it wherever the official form is finite and stays finite (→ 0) for very negative x,
    where the official product is 0·inf = NaN.
    """
    check_positive(beta, "beta")
    check_positive(tau, "tau")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    x = beta * (lr_c - lr_r)
    w = jax.nn.sigmoid(x / tau)
    per = (1.0 - w) * (-log_sigmoid(x)) + jnp.exp(-x + log_sigmoid(x / tau))
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def tpo_triple(policy_chosen_logp, policy_rejected_logp, gold_token_logp, gold_mask, *,
               beta: float = 0.01, alpha: float = 1.0, gamma: float = 0.0,
               label_smoothing: float = 0.0, valid=None):
    """Triple Preference Optimization: SFT on a gold response + a reference-free
    preference loss, in one step.

    Paper: "Triple Preference Optimization: Achieving Better Alignment with Less Data in
    a Single Step Optimization" (Saeidi et al. 2024); official code
    sahsaeedi/triple-preference-optimization, TRL `experimental/tpo`.

        δ = π_c − π_r − γ/β        (policy log-probs only: no reference model)
        ℓ = mean_N [−(1 − ε) log σ(β δ) − ε log σ(−β δ)] + α · NLL(gold)
        NLL(gold) = −Σ gold_token_logp / Σ gold_mask   (token mean over the whole batch)

    `gold_token_logp`, `gold_mask`: `[N, T]` per-token log-probs of the gold ("reference")
    response and its mask. γ = 0 is the sigmoid TPO loss; TPO-L passes length-averaged
    log-probs and γ = 0.5. Defaults (TRL): β = 0.01, α = 1, ε = 0. Implicit-reward metrics
    are β·π (reference-free), plus `nll`.
    """
    check_positive(beta, "beta")
    check_range(label_smoothing, "label_smoothing", 0.0, 0.5, hi_open=False)
    pc = vector(policy_chosen_logp, "policy_chosen_logp")
    n = pc.shape[0]
    pr = vector(policy_rejected_logp, "policy_rejected_logp", n)
    g = jnp.asarray(gold_token_logp, jnp.float32)
    if g.ndim != 2 or g.shape[0] != n or jnp.shape(gold_mask) != g.shape:
        raise ValueError(f"gold_token_logp / gold_mask: expected shapes [N={n}, T], got "
                         f"{tuple(g.shape)} and {tuple(jnp.shape(gold_mask))}")
    zeros = jnp.zeros_like(pc)
    lr_c, lr_r, v = pair_inputs(pc, pr, zeros, zeros, valid)
    per = smoothed_logistic(beta * (lr_c - lr_r - gamma / beta), label_smoothing)
    nll = -ops.masked_mean(clean(g, jnp.asarray(gold_mask, bool)), gold_mask)
    pref, metrics = finish(per, lr_c, lr_r, v, beta, {})
    metrics["nll"] = sg(nll)
    return pref + alpha * nll, metrics


def _dpo_or_ipo(lr_c, lr_r, beta, loss_type):
    if loss_type == "sigmoid":
        return -log_sigmoid(beta * (lr_c - lr_r))
    if loss_type == "ipo":
        return jnp.square(lr_c - lr_r - 1.0 / (2.0 * beta))
    raise ValueError(f"loss_type must be 'sigmoid' or 'ipo', got {loss_type!r}")


@PREFERENCE.register()
def xpo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp,
        policy_ref_sample_logp, *, beta: float = 0.1, alpha: float = 1e-5,
        loss_type: str = "sigmoid", valid=None):
    """XPO: online DPO plus an exploration bonus.

    Paper: "Exploratory Preference Optimization: Harnessing Implicit Q*-Approximation for
    Sample-Efficient RLHF" (Xie et al. 2024); TRL `experimental/xpo` (`_compute_losses`).

        ℓ = ℓ_DPO (or ℓ_IPO with loss_type="ipo") + α · log π(y_ref)

    Per prompt one response is sampled from the policy and one from the reference model;
    the judge orders them into (chosen, rejected) — the caller builds the four log-prob
    vectors accordingly. `policy_ref_sample_logp` [N] is log π_θ of the REFERENCE model's
    sample (summed over tokens): minimizing α·log π(y_ref) moves mass away from what the
    reference already says (the optimism that drives exploration). Defaults (TRL):
    β = 0.1, α = 1e-5. Metric `xpo_term` = mean α log π(y_ref).
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    bonus = alpha * clean(vector(policy_ref_sample_logp, "policy_ref_sample_logp", lr_c.shape[0]), v)
    per = _dpo_or_ipo(lr_c, lr_r, beta, loss_type) + bonus
    return finish(per, lr_c, lr_r, v, beta, {"xpo_term": sg(ops.masked_mean(bonus, v))})


@PREFERENCE.register()
def vpo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp,
        value_logp, *, beta: float = 0.1, alpha: float = 1e-3, sign: int = 1,
        loss_type: str = "sigmoid", valid=None):
    """VPO: DPO regularized by the (implicit) value function, optimistic or pessimistic.

    Paper: "Value-Incentivized Preference Optimization: A Unified Approach to Online and
    Offline RLHF" (Cen et al. 2024). The formula is rlx's reading of the abstract (the
    reward MLE regularized by its value, with the implicit reward β log π/π_ref, whose
    θ-dependent part on a fixed calibration sample is β log π):

        ℓ = ℓ_DPO (or ℓ_IPO) + sign · α · log π(y_cal),   y_cal ~ π_cal (e.g. π_ref)

    `value_logp` [N] is log π_θ(y_cal) (summed); α absorbs β. sign = +1 (online,
    optimism: lowers the likelihood of calibration samples, as XPO's bonus), −1 (offline,
    pessimism: raises it, an SFT-like anchor on the data). α = 1e-3 is rlx's default (the
    paper tunes it). Metric `value_term`.
    """
    check_positive(beta, "beta")
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 (online, optimism) or -1 (offline, pessimism), got {sign!r}")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    term = sign * alpha * clean(vector(value_logp, "value_logp", lr_c.shape[0]), v)
    per = _dpo_or_ipo(lr_c, lr_r, beta, loss_type) + term
    return finish(per, lr_c, lr_r, v, beta, {"value_term": sg(ops.masked_mean(term, v))})
