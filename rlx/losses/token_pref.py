"""Token-level preference objectives: SparsePO, TGDPO, RTO token rewards, CPL.

Inputs are per-token arrays `[N, T]` of the chosen and of the rejected responses with
their masks (masked positions may hold anything, even NaN); the log-ratio arrays are
log π − log π_ref per token. Losses return `(loss, metrics)` and are registered in
`rlx.losses.preference.PREFERENCE`; `rto_token_rewards` is a reward function for PPO.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.preference import (
    PREFERENCE,
    check_positive,
    clean,
    log_sigmoid,
    reward_metrics,
    sg,
    valid_mask,
)

Array = jax.Array


def _tokens(x, name: str, shape=None) -> Array:
    arr = jnp.asarray(x)
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "[N, T]" if shape is None else f"{list(shape)}"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(arr.shape)}")
    return arr


def _msum(x, mask, name: str, shape) -> Array:
    """Σ_t over the mask of x (x given as [N, T] of `shape`, or None -> 0)."""
    return ops.masked_sum(jnp.asarray(_tokens(x, name, shape), jnp.float32), mask, axis=1)


def token_kl(policy_logits_BTV: Array, ref_logits_BTV: Array) -> Array:
    """KL(π_ref(·|s_t) ‖ π(·|s_t)) per position, `[B, T]`, float32 — the TDPO/SparsePO KL.

    Gradient flows through the policy logits (the reference's are data).
    """
    lp = jax.nn.log_softmax(jnp.asarray(policy_logits_BTV, jnp.float32), axis=-1)
    lr = jax.nn.log_softmax(sg(jnp.asarray(ref_logits_BTV, jnp.float32)), axis=-1)
    return jnp.sum(jnp.exp(lr) * (lr - lp), axis=-1)


@PREFERENCE.register()
def sparse_po(logratio_chosen_NT, logratio_rejected_NT, mask_chosen_NT, mask_rejected_NT, *,
              beta: float = 0.1, reward_weights_chosen=None, reward_weights_rejected=None,
              kl_chosen_NT=None, kl_rejected_NT=None, kl_weights_chosen=None,
              kl_weights_rejected=None, l1_reward: float = 0.0, l1_kl: float = 0.0, valid=None):
    """SparsePO: DPO/TDPO with per-token weights on the reward and on the KL terms.

    Paper: "SparsePO: Controlling Preference Alignment of LLMs via Sparse Token Masks"
    (Christopoulou et al. 2024); official code huawei-noah/HEBO/SparsePO
    (`SparseTrainer.get_batch_loss_metrics`).

        u = Σ_t m^u_{c,t} lr_{c,t} − Σ_t m^u_{r,t} lr_{r,t}
        δ = Σ_t m^d_{r,t} KL_{r,t} − Σ_t m^d_{c,t} KL_{c,t},   KL_t = KL(π_ref ‖ π)(s_t)
        ℓ = −log σ(β (u − δ)) + λ_u (‖m^u_c‖₁ + ‖m^u_r‖₁) + λ_d (‖m^d_c‖₁ + ‖m^d_r‖₁)

    The weights m ([N, T], default 1) are the token masks: from the reference model's
    activations (MaPO) or a learned mask head — computed by the caller and allowed to
    carry gradient (learned masks). KL terms are optional (`token_kl`; None drops δ).
    With all weights 1 and no KL it is DPO on summed log-ratios; with KL it is TDPO-1.
    λ_u, λ_d (`l1_reward`, `l1_kl`) are L1 sparsity penalties over valid tokens; official
    defaults β = 0.1, λ = 0. Mean over valid pairs. Metrics as the DPO family (β·u
    parts), plus weight sparsity (fraction of zero reward weights).
    """
    check_positive(beta, "beta")
    lc = _tokens(logratio_chosen_NT, "logratio_chosen_NT")
    shape_c = lc.shape
    lr_ = _tokens(logratio_rejected_NT, "logratio_rejected_NT")
    shape_r = lr_.shape
    if shape_r[0] != shape_c[0]:
        raise ValueError(f"logratio_rejected_NT: expected N={shape_c[0]} rows, got {shape_r[0]}")
    mc = _tokens(mask_chosen_NT, "mask_chosen_NT", shape_c)
    mr = _tokens(mask_rejected_NT, "mask_rejected_NT", shape_r)
    v = valid_mask(valid, shape_c[0])
    if (kl_chosen_NT is None) != (kl_rejected_NT is None):
        raise ValueError("kl_chosen_NT and kl_rejected_NT must be given together")

    def weights(w, name, shape):
        if w is None:
            return jnp.ones(shape, jnp.float32)
        return jnp.asarray(_tokens(w, name, shape), jnp.float32)

    mc, mr = jnp.asarray(mc, bool) & v[:, None], jnp.asarray(mr, bool) & v[:, None]  # invalid rows: no tokens
    lc, lr_ = clean(jnp.asarray(lc, jnp.float32), mc), clean(jnp.asarray(lr_, jnp.float32), mr)

    wu_c = weights(reward_weights_chosen, "reward_weights_chosen", shape_c)
    wu_r = weights(reward_weights_rejected, "reward_weights_rejected", shape_r)
    wu_c, wu_r = clean(wu_c, mc), clean(wu_r, mr)
    u_c = ops.masked_sum(wu_c * lc, mc, axis=1)
    u_r = ops.masked_sum(wu_r * lr_, mr, axis=1)
    delta = jnp.zeros_like(u_c)
    l1 = l1_reward * (ops.masked_sum(jnp.abs(wu_c), mc, axis=1) + ops.masked_sum(jnp.abs(wu_r), mr, axis=1))
    if kl_chosen_NT is not None:
        wd_c = clean(weights(kl_weights_chosen, "kl_weights_chosen", shape_c), mc)
        wd_r = clean(weights(kl_weights_rejected, "kl_weights_rejected", shape_r), mr)
        kc = clean(_tokens(kl_chosen_NT, "kl_chosen_NT", shape_c), mc)
        kr = clean(_tokens(kl_rejected_NT, "kl_rejected_NT", shape_r), mr)
        delta = (_msum(wd_r * kr, mr, "kl_rejected_NT", shape_r)
                 - _msum(wd_c * kc, mc, "kl_chosen_NT", shape_c))
        l1 = l1 + l1_kl * (ops.masked_sum(jnp.abs(wd_c), mc, axis=1)
                           + ops.masked_sum(jnp.abs(wd_r), mr, axis=1))
    per = -log_sigmoid(beta * (u_c - u_r - delta)) + l1
    metrics = reward_metrics(beta * u_c, beta * u_r, v)
    metrics["reward_weight_sparsity"] = ops.masked_mean((sg(wu_c) == 0).astype(jnp.float32), mc)
    return ops.masked_mean(jnp.where(v, per, 0.0), v), metrics


@PREFERENCE.register()
def tgdpo(logratio_chosen_NT, logratio_rejected_NT, mask_chosen_NT, mask_rejected_NT,
          guide_logratio_chosen_NT, guide_logratio_rejected_NT, *, beta: float = 0.1,
          alpha: float = 0.5, valid=None):
    """TGDPO: DPO with token-level reward guidance scaling each token's contribution.

    Paper: "TGDPO: Harnessing Token-Level Reward Guidance for Enhancing Direct Preference
    Optimization" (Zhu et al. 2025); official code dvlab-research/TGDPO
    (`CustomDPOTrainer.dpo_loss`, loss "sigmoid").

        r̂_t = log π_guide(y_t) − log π_ref(y_t)          token reward of a DPO-trained model
        z = Σ_t β (1 + α β r̂_{c,t}) lr_{c,t} − Σ_t β (1 − α β r̂_{r,t}) lr_{r,t}
        ℓ = −log σ(z)

    Chosen tokens the guide rewards weigh more, rejected tokens it penalizes weigh more.
    The guide log-ratios are data (stop-gradient). α = 0 is DPO. Defaults (official):
    β = 0.1, α = 0.5.
    """
    check_positive(beta, "beta")
    lc = jnp.asarray(_tokens(logratio_chosen_NT, "logratio_chosen_NT"), jnp.float32)
    lr_ = jnp.asarray(_tokens(logratio_rejected_NT, "logratio_rejected_NT"), jnp.float32)
    if lr_.shape[0] != lc.shape[0]:
        raise ValueError(f"logratio_rejected_NT: expected N={lc.shape[0]} rows, got {lr_.shape[0]}")
    v = valid_mask(valid, lc.shape[0])
    mc = jnp.asarray(_tokens(mask_chosen_NT, "mask_chosen_NT", lc.shape), bool) & v[:, None]
    mr = jnp.asarray(_tokens(mask_rejected_NT, "mask_rejected_NT", lr_.shape), bool) & v[:, None]
    gc = sg(clean(jnp.asarray(_tokens(guide_logratio_chosen_NT, "guide_logratio_chosen_NT", lc.shape),
                              jnp.float32), mc))
    gr = sg(clean(jnp.asarray(_tokens(guide_logratio_rejected_NT, "guide_logratio_rejected_NT", lr_.shape),
                              jnp.float32), mr))
    lc, lr_ = clean(lc, mc), clean(lr_, mr)
    zc = ops.masked_sum(beta * (1.0 + alpha * beta * gc) * lc, mc, axis=1)
    zr = ops.masked_sum(beta * (1.0 - alpha * beta * gr) * lr_, mr, axis=1)
    per = -log_sigmoid(zc - zr)
    metrics = reward_metrics(beta * ops.masked_sum(lc, mc, axis=1), beta * ops.masked_sum(lr_, mr, axis=1), v)
    metrics["guided_margin"] = ops.masked_mean(sg(zc - zr), v)
    return ops.masked_mean(jnp.where(v, per, 0.0), v), metrics


def rto_token_rewards(dpo_logp_BT, ref_logp_BT, mask_BT, *, beta: float = 0.1,
                      final_reward_B=None, final_coef: float = 1.0) -> Array:
    """RTO: token-wise rewards from a DPO-trained model, for PPO.

    Paper: "DPO Meets PPO: Reinforced Token Optimization for RLHF" (Zhong et al. 2024).
    rlx's reading of the paper (no official code consulted): the DPO model π_dpo gives a
    dense reward per token, plus the sparse sequence reward at the last token,

        r_t = β log(π_dpo(y_t) / π_ref(y_t))  +  [t = last] · c · r(x, y)

    β should be the β the DPO model was trained with (then Σ_t r_t is its implicit
    reward); c = `final_coef` scales `final_reward_B` (e.g. a reward model's score;
    None: no sparse term). The KL penalty to π_ref of PPO is added by the trainer
    (`rlx.losses.kl_in_reward`), not here. Returns float32 `[B, T]`, 0 at masked tokens;
    stop-gradient (rewards are data). Defaults: β = 0.1, c = 1 (rlx).
    """
    d = jnp.asarray(dpo_logp_BT, jnp.float32)
    if d.ndim != 2 or jnp.shape(ref_logp_BT) != d.shape or jnp.shape(mask_BT) != d.shape:
        raise ValueError("dpo_logp_BT, ref_logp_BT, mask_BT: expected one shape [B, T], got "
                         f"{d.shape}, {jnp.shape(ref_logp_BT)}, {jnp.shape(mask_BT)}")
    m = jnp.asarray(mask_BT, bool)
    r = jnp.where(m, beta * (d - jnp.asarray(ref_logp_BT, jnp.float32)), 0.0)
    if final_reward_B is not None:
        f = jnp.asarray(final_reward_B, jnp.float32)
        if f.shape != (d.shape[0],):
            raise ValueError(f"final_reward_B: expected shape [B={d.shape[0]}], got {tuple(f.shape)}")
        T = d.shape[1]
        last = T - 1 - jnp.argmax(m[:, ::-1], axis=1)  # last valid position per row
        at_last = (jnp.arange(T)[None, :] == last[:, None]) & jnp.any(m, axis=1, keepdims=True)
        r = r + jnp.where(at_last, final_coef * f[:, None], 0.0)
    return sg(r)


@PREFERENCE.register()
def cpl(logp_chosen_NT, mask_chosen_NT, logp_rejected_NT, mask_rejected_NT, *, alpha: float = 1.0,
        contrastive_bias: float = 1.0, bc_coeff: float = 0.0, valid=None):
    """CPL: contrastive preference learning on segment sums of α·log π (no RL, no reward).

    Paper: "Contrastive Preference Learning: Learning from Human Feedback without RL"
    (Hejna et al. 2024); official code jhejna/cpl (`research/algs/cpl.py`).

        A(σ) = Σ_t α log π(a_t | s_t)                    segment "advantage" (regret model)
        ℓ = −log σ(A(σ⁺) − λ A(σ⁻))  +  bc · mean_t(−log π)

    λ = `contrastive_bias` ∈ (0, 1] (conservative bias; 1 = plain logistic), bc the
    behaviour-cloning weight on all valid tokens of both segments (token mean). Segments
    are the chosen / rejected token spans with their masks. The paper discounts by γ^t;
    the official code (and rlx) uses γ = 1. Defaults (official class): α = 1, λ = 1,
    bc = 0. Metrics: accuracy (A⁺ > A⁻), bc_loss.
    """
    check_positive(alpha, "alpha")
    if isinstance(contrastive_bias, (int, float)) and not 0 < contrastive_bias <= 1:
        raise ValueError(f"contrastive_bias must lie in (0, 1], got {contrastive_bias!r}")
    lc = jnp.asarray(_tokens(logp_chosen_NT, "logp_chosen_NT"), jnp.float32)
    lr_ = jnp.asarray(_tokens(logp_rejected_NT, "logp_rejected_NT"), jnp.float32)
    if lr_.shape[0] != lc.shape[0]:
        raise ValueError(f"logp_rejected_NT: expected N={lc.shape[0]} rows, got {lr_.shape[0]}")
    mc = jnp.asarray(_tokens(mask_chosen_NT, "mask_chosen_NT", lc.shape), bool)
    mr = jnp.asarray(_tokens(mask_rejected_NT, "mask_rejected_NT", lr_.shape), bool)
    v = valid_mask(valid, lc.shape[0])
    lc, lr_ = clean(lc, mc & v[:, None]), clean(lr_, mr & v[:, None])
    a_c = alpha * ops.masked_sum(lc, mc, axis=1)
    a_r = alpha * ops.masked_sum(lr_, mr, axis=1)
    per = -log_sigmoid(a_c - contrastive_bias * a_r)
    loss = ops.masked_mean(jnp.where(v, per, 0.0), v)
    vc = jnp.asarray(mc, bool) & v[:, None]
    vr = jnp.asarray(mr, bool) & v[:, None]
    nll_sum = ops.masked_sum(-lc, vc) + ops.masked_sum(-lr_, vr)
    count = ops.masked_count(lc, vc) + ops.masked_count(lr_, vr)
    bc = jnp.where(count > 0, nll_sum / jnp.where(count > 0, count, 1.0), 0.0)
    metrics = {"accuracy": ops.masked_mean((sg(a_c) > sg(a_r)).astype(jnp.float32), v),
               "bc_loss": sg(bc)}
    return loss + bc_coeff * bc, metrics
