"""Self-play / Nash-learning preference objectives: SPPO, Nash-MD, DNO, INPO, EGPO, APO.

These target the Nash equilibrium of the game defined by a general preference model
P(y ≻ y') instead of a Bradley–Terry reward. The losses are pure functions of sequence
(or token) log-probs and preference probabilities; the iterate bookkeeping they need
(previous policy π_t as the reference, extragradient half steps, momentum
extrapolation) is given as pure pytree functions. Losses are registered in
`rlx.losses.preference.PREFERENCE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.preference import (
    PREFERENCE,
    check_positive,
    clean,
    finish,
    log_sigmoid,
    pair_inputs,
    sg,
    valid_mask,
    vector,
)

Array = jax.Array
PyTree = Any


@PREFERENCE.register()
def sppo(policy_logp, prev_logp, win_prob, *, beta: float = 1e-3, valid=None):
    """SPPO (soft): per-response regression of the log-ratio onto the centred win rate.

    Paper: "Self-Play Preference Optimization for Language Model Alignment" (Wu et al.
    2024), Eq. 4.7; official code uclaml/SPPO (`dpo_loss`, loss type `sppo`).

        ℓ(y) = (log π(y) − log π_t(y) − (P(y ≻ π_t) − ½)/β)²,   mean over responses

    `prev_logp` is the previous iterate π_t (the reference of SPPO), `win_prob` the
    estimated P(y ≻ π_t) (the official pipeline: PairRM win rate against the other
    samples). The official code takes a (winner, loser) pair and averages the two
    terms: the same as this mean over the 2N responses. β·(log-ratio) − (P − ½) is the
    β-scaled form: ℓ here = that squared error / β². Default β = 1e-3 (official scripts,
    η = 1/β = 1000). With P ∈ {1, 0} on a pair this is half of `sppo_hard`.
    """
    check_positive(beta, "beta")
    lp = vector(policy_logp, "policy_logp")
    n = lp.shape[0]
    prev = vector(prev_logp, "prev_logp", n)
    v = valid_mask(valid, n)
    p = sg(clean(vector(win_prob, "win_prob", n), v, 0.5))
    lr = clean(lp - prev, v)
    per = jnp.square(lr - (p - 0.5) / beta)
    metrics = {"log_ratio": ops.masked_mean(sg(lr), v), "win_prob": ops.masked_mean(p, v)}
    return ops.masked_mean(jnp.where(v, per, 0.0), v), metrics


def geometric_mixture_logits(policy_logits: Array, ref_logits: Array, mixture_coef=0.5) -> Array:
    """Nash-MD's sampling distribution: log_softmax(m · z_ref + (1 − m) · z), per token.

    The geometric mixture π^{1−m} π_ref^m (token-wise, renormalized) from which Nash-MD
    draws the opponent's response; m = 0.5 is TRL's `mixture_coef` default. Float32.
    """
    z = jnp.asarray(policy_logits, jnp.float32)
    z_ref = jnp.asarray(ref_logits, jnp.float32)
    if z.shape != z_ref.shape:
        raise ValueError(f"policy_logits {z.shape} and ref_logits {z_ref.shape} must have one shape")
    return jax.nn.log_softmax(mixture_coef * z_ref + (1.0 - mixture_coef) * z, axis=-1)


@PREFERENCE.register()
def nash_md(logp_BT, ref_logp_BT, mask_BT, scores_B, mixture_scores_B, *, beta: float = 0.1):
    """Nash-MD (policy-gradient form, as in TRL's `NashMDTrainer`).

    Paper: "Nash Learning from Human Feedback" (Munos et al. 2024); TRL
    `experimental/nash_md` (`_compute_losses`).

        P   = σ(score(y) − score(y_mix))          y ~ π, y_mix ~ geometric mixture
        ℓ   = β · Σ_t sg(log π − log π_ref) · log π  −  (P − ½) · Σ_t log π

    The first term is a REINFORCE estimate of the KL gradient, the second the
    preference reward with ½ as the control variate. Scores come from a reward model
    (or log-odds of a preference model); P is treated as data. Mean over the B rows.
    Default β = 0.1 (TRL). Metrics: kl (mean Σ_t sg log-ratio), probability, score.
    """
    check_positive(beta, "beta")
    lp = jnp.asarray(logp_BT, jnp.float32)
    if lp.ndim != 2 or jnp.shape(ref_logp_BT) != lp.shape or jnp.shape(mask_BT) != lp.shape:
        raise ValueError("logp_BT, ref_logp_BT, mask_BT: expected one shape [B, T], got "
                         f"{lp.shape}, {jnp.shape(ref_logp_BT)}, {jnp.shape(mask_BT)}")
    B = lp.shape[0]
    m = jnp.asarray(mask_BT, bool)
    lp = clean(lp, m)
    score_gap = vector(scores_B, "scores_B", B) - vector(mixture_scores_B, "mixture_scores_B", B)
    prob = sg(jax.nn.sigmoid(score_gap))
    seq_logp = ops.masked_sum(lp, mask_BT, axis=1)
    log_ratio = sg(clean(lp - jnp.asarray(ref_logp_BT, jnp.float32), m))
    kl_term = ops.masked_sum(log_ratio * lp, mask_BT, axis=1)
    score = (prob - 0.5) * seq_logp
    loss = jnp.mean(beta * kl_term - score)
    metrics = {"kl": jnp.mean(ops.masked_sum(log_ratio, mask_BT, axis=1)),
               "probability": jnp.mean(prob), "score": sg(jnp.mean(score))}
    return loss, metrics


@PREFERENCE.register()
def dno(policy_logp_1, policy_logp_2, prev_logp_1, prev_logp_2, win_rate_1, win_rate_2, *,
        beta: float = 0.1, valid=None):
    """DNO: Direct Nash Optimization's regression (soft-label contrastive) loss.

    Paper: "Direct Nash Optimization: Teaching Language Models to Self-Improve with
    General Preferences" (Rosset et al. 2024), Algorithm 1 — rlx's reading of the paper
    (no official code is public):

        r_t(y) = P(y ≻ π_t)  (expected win rate against the current policy)
        z = β [(log π(y1) − log π_t(y1)) − (log π(y2) − log π_t(y2))]
        ℓ = −σ(r_t(y1) − r_t(y2)) log σ(z) − σ(r_t(y2) − r_t(y1)) log σ(−z)

    The reference is the previous iterate π_t (`prev_logp_*`). The practical DNO-Prct
    replaces the soft target by hard (winner, loser) pairs: that is `dpo` with the
    previous iterate as reference. Default β = 0.1 (rlx; the DPO value).
    """
    check_positive(beta, "beta")
    lr_1, lr_2, v = pair_inputs(policy_logp_1, policy_logp_2, prev_logp_1, prev_logp_2, valid,
                                ("policy_logp_1", "policy_logp_2", "prev_logp_1", "prev_logp_2"))
    n = lr_1.shape[0]
    gap = vector(win_rate_1, "win_rate_1", n) - vector(win_rate_2, "win_rate_2", n)
    target = sg(clean(jax.nn.sigmoid(gap), v, 0.5))
    z = beta * (lr_1 - lr_2)
    per = -target * log_sigmoid(z) - (1.0 - target) * log_sigmoid(-z)
    return finish(per, lr_1, lr_2, v, beta, {"target": ops.masked_mean(target, v)})


@PREFERENCE.register()
def inpo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp,
         prev_chosen_logp, prev_rejected_logp, *, eta: float, tau: float, valid=None):
    """INPO: iterative Nash policy optimization (online IPO with no-regret updates).

    Paper: "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via
    No-Regret Learning" (Zhang et al. 2024). rlx's reading of the paper (no official code
    consulted): the online-mirror-descent step π_{t+1} ∝ π_ref^{τ/η} π_t^{1−τ/η}
    exp(P(·≻π_t)/η) fitted by an IPO-style regression on (winner, loser) pairs sampled
    from π_t:

        h = log π(y_w)/π(y_l) − (τ/η) log π_ref(y_w)/π_ref(y_l) − (1 − τ/η) log π_t(y_w)/π_t(y_l)
        ℓ = (h − 1/(2η))²

    τ is the KL-to-reference strength and 1/η the mirror-descent step; 0 ≤ τ ≤ η is
    required. τ = η is IPO with β = η; τ = 0 is online IPO against π_t. No defaults:
    the paper tunes both.
    """
    check_positive(eta, "eta")
    if isinstance(tau, (int, float)) and isinstance(eta, (int, float)) and not 0 <= tau <= eta:
        raise ValueError(f"tau must lie in [0, eta] = [0, {eta}], got {tau!r}")
    pc = vector(policy_chosen_logp, "policy_chosen_logp")
    n = pc.shape[0]
    pr = vector(policy_rejected_logp, "policy_rejected_logp", n)
    ref = vector(ref_chosen_logp, "ref_chosen_logp", n) - vector(ref_rejected_logp, "ref_rejected_logp", n)
    prev = (vector(prev_chosen_logp, "prev_chosen_logp", n)
            - vector(prev_rejected_logp, "prev_rejected_logp", n))
    v = valid_mask(valid, n)
    a = tau / eta
    h = clean((pc - pr) - a * ref - (1.0 - a) * prev, v)
    per = jnp.square(h - 1.0 / (2.0 * eta))
    metrics = {"h": ops.masked_mean(sg(h), v)}
    return ops.masked_mean(jnp.where(v, per, 0.0), v), metrics


@PREFERENCE.register()
def egpo(policy_logp_1, policy_logp_2, ref_logp_1, ref_logp_2, pref_1, pref_2, *,
         beta: float = 0.1, valid=None):
    """EGPO's online IPO loss (the objective of each extragradient step).

    Paper: "Extragradient Preference Optimization (EGPO): Beyond Last-Iterate Convergence
    for Nash Learning from Human Feedback" (Zhou et al. 2025); its released tabular code
    (`online_ipo_1_sample`, `extragradient_sample`).

        ℓ = ((log π/π_ref)(y1) − (log π/π_ref)(y2) − (p_1 − p_2)/β)²,   mean over pairs

    with p_i = P(y_i ≻ y'') for an opponent sample y'' ~ π (or its expectation). The
    targets p are data: computed from the policy at which they are evaluated. EGPO takes
    each update as an extragradient step (`extragradient_step`): half step with targets
    from θ_t, then the full step from θ_t with targets from the half-step policy.
    Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_1, lr_2, v = pair_inputs(policy_logp_1, policy_logp_2, ref_logp_1, ref_logp_2, valid,
                                ("policy_logp_1", "policy_logp_2", "ref_logp_1", "ref_logp_2"))
    n = lr_1.shape[0]
    dp = sg(clean(vector(pref_1, "pref_1", n) - vector(pref_2, "pref_2", n), v))
    per = jnp.square(lr_1 - lr_2 - dp / beta)
    return finish(per, lr_1, lr_2, v, beta)


def extragradient_step(params: PyTree, grad_fn: Callable[[PyTree, PyTree], PyTree], lr) -> PyTree:
    """One extragradient (EGPO) update with plain gradient steps.

    grad_fn(params, target_params) returns the gradient of the loss at `params` whose
    preference targets are computed from `target_params` (e.g. `egpo` with p from the
    policy `target_params`). Then

        θ_half = θ − lr · grad_fn(θ, θ)
        θ_new  = θ − lr · grad_fn(θ, θ_half)

    as in EGPO's released code (half step, undo, full step from θ with the half-step
    targets). With an optax optimizer, replace both `θ − lr·g` by its update.
    """
    g0 = grad_fn(params, params)
    half = jax.tree.map(lambda p, g: p - lr * g, params, g0)
    g1 = grad_fn(params, half)
    return jax.tree.map(lambda p, g: p - lr * g, params, g1)


def apo_extrapolate(new_params: PyTree, prev_params: PyTree, alpha) -> PyTree:
    """APO's Nesterov-style extrapolation of the iterates.

    Paper: "Accelerated Preference Optimization for Large Language Model Alignment" (He
    et al. 2024): after the inner preference-optimization round (DPO/IPO/SPPO with π_t as
    reference) returns θ'_{t+1} from θ_t,

        θ_{t+1} = θ'_{t+1} + α (θ'_{t+1} − θ_t)

    α = 0 is plain iterative DPO. α is required (the paper tunes it). Pytree in,
    pytree out (params may be any matching pytree of arrays).
    """
    return jax.tree.map(lambda n, p: n + alpha * (n - p), new_params, prev_params)
