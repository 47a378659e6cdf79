"""Listwise / ranking preference losses: LiPO-λ, PRO (Plackett–Luce), TPO over trees.

Layout: N lists (prompts) of K responses, arrays `[N, K]`; `valid_NK` marks real
responses (lists shorter than K are padded). Each loss returns `(loss, metrics)` and is
registered in `rlx.losses.preference.PREFERENCE`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.losses.preference import PREFERENCE, check_positive, clean, log_sigmoid, sg

Array = jax.Array


def _nk(x, name: str, shape=None, dtype=jnp.float32) -> Array:
    arr = jnp.asarray(x)
    if arr.ndim != 2 or (shape is not None and arr.shape != shape):
        want = "[N, K]" if shape is None else f"[N={shape[0]}, K={shape[1]}]"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(arr.shape)}")
    return arr.astype(dtype)


def _valid(valid, shape) -> Array:
    return jnp.ones(shape, bool) if valid is None else _nk(valid, "valid_NK", shape, bool)


def rank_positions(scores_NK: Array, valid_NK: Array) -> Array:
    """1-based position of each item when its list is sorted by score, descending.

    Invalid items are placed after all valid ones; ties keep index order. Stop-gradient.
    """
    key = jnp.where(valid_NK, -sg(scores_NK), jnp.inf)
    order = jnp.argsort(key, axis=1, stable=True)
    return jnp.argsort(order, axis=1, stable=True) + 1


def lambda_weights(labels_NK: Array, scores_NK: Array, valid_NK: Array) -> Array:
    """LambdaRank / DCG pair weights Δ_ij = |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)|, [N, K, K].

    G = 2^label − 1 (gain), D(τ) = log2(1 + τ) (rank discount), τ = position of the item
    in the list ordered by the model's current scores (`rank_positions`).
    """
    gain = jnp.exp2(labels_NK) - 1.0
    inv_disc = 1.0 / jnp.log2(1.0 + rank_positions(scores_NK, valid_NK).astype(jnp.float32))
    return (jnp.abs(gain[:, :, None] - gain[:, None, :])
            * jnp.abs(inv_disc[:, :, None] - inv_disc[:, None, :]))


def _check_weighting(weighting: str) -> None:
    if weighting not in ("lambda", "none"):
        raise ValueError(f"weighting must be 'lambda' or 'none', got {weighting!r}")


def pairwise_ranking_loss(scores_NK: Array, labels_NK: Array, valid_NK: Array, weighting: str):
    """Σ over ordered pairs (label_i > label_j) of w_ij · (−log σ(s_i − s_j)) per list.

    Returns (per-list loss [N], lists with at least one pair [N], pair count [N]).
    """
    _check_weighting(weighting)
    scores_NK, labels_NK = clean(scores_NK, valid_NK), clean(labels_NK, valid_NK)
    both = valid_NK[:, :, None] & valid_NK[:, None, :]
    pair = both & (labels_NK[:, :, None] > labels_NK[:, None, :])
    logits = scores_NK[:, :, None] - scores_NK[:, None, :]
    w = (clean(sg(lambda_weights(labels_NK, scores_NK, valid_NK)), pair) if weighting == "lambda"
         else jnp.ones(pair.shape, jnp.float32))
    per_pair = jnp.where(pair, w * -log_sigmoid(jnp.where(pair, logits, 0.0)), 0.0)
    n_pairs = jnp.sum(pair, axis=(1, 2))
    return jnp.sum(per_pair, axis=(1, 2)), n_pairs > 0, n_pairs


@PREFERENCE.register()
def lipo(policy_logp_NK, ref_logp_NK, labels_NK, *, beta: float = 0.1, valid_NK=None,
         weighting: str = "lambda"):
    """LiPO-λ: listwise preference optimization with LambdaRank pair weights.

    Paper: "LiPO: Listwise Preference Optimization through Learning-to-Rank" (Liu et al.
    2024). No official code is public; this is rlx's reading of the paper's LiPO-λ:

        s_i = β (π(y_i) − ref(y_i))                     implicit reward of response i
        ℓ_list = Σ_{ψ_i > ψ_j} Δ_ij · (−log σ(s_i − s_j))
        Δ_ij = |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)|,  G = 2^ψ − 1,  D(τ) = log2(1 + τ)

    ψ = `labels_NK` (graded labels, e.g. reward-model scores; higher is better), τ_i the
    1-based rank of y_i under the current scores s (computed under stop-gradient, as
    LambdaLoss does). The paper writes D(τ) = log(1 + τ); rlx uses the DCG convention
    log2 (TF-Ranking's default) — the base only rescales the loss. `weighting="none"`
    gives unit weights (the paper's pair-logistic baseline, DPO on every ordered pair).
    The loss is the mean over lists that hold at least one ordered pair.

    With K = 2: ℓ = Δ·ℓ_DPO, Δ = |G_1 − G_2|·(1 − 1/log2 3). β = 0.1 is rlx's default
    (the DPO value). Metrics: pairs (mean ordered pairs per list), top1_accuracy (the
    highest-labelled valid response has the highest score).
    """
    check_positive(beta, "beta")
    _check_weighting(weighting)
    lp = _nk(policy_logp_NK, "policy_logp_NK")
    shape = lp.shape
    ref = _nk(ref_logp_NK, "ref_logp_NK", shape)
    labels = _nk(labels_NK, "labels_NK", shape)
    v = _valid(valid_NK, shape)
    s = beta * (lp - ref)
    per_list, has_pair, n_pairs = pairwise_ranking_loss(s, labels, v, weighting)
    best_label = jnp.argmax(jnp.where(v, labels, -jnp.inf), axis=1)
    best_score = jnp.argmax(jnp.where(v, sg(s), -jnp.inf), axis=1)
    metrics = {"pairs": jnp.mean(n_pairs.astype(jnp.float32)),
               "top1_accuracy": ops.masked_mean((best_label == best_score).astype(jnp.float32),
                                                has_pair)}
    return ops.masked_mean(per_list, has_pair), metrics


def _order_best_first(x_NK: Array, ranks_NK) -> Array:
    if ranks_NK is None:
        return x_NK
    order = jnp.argsort(jnp.asarray(ranks_NK), axis=1, stable=True)
    return jnp.take_along_axis(x_NK, order, axis=1)


@PREFERENCE.register()
def pro(scores_NK, *, valid_NK=None, ranks_NK=None, rewards_NK=None, sft_logp_N=None,
        sft_weight: float = 0.05):
    """PRO: Preference Ranking Optimization, a Plackett–Luce loss over a ranking.

    Paper: "Preference Ranking Optimization for Human Alignment" (Song et al. 2024);
    official code AlibabaResearch/DAMO-ConvAI/PRO (`ProcessManager.compute_loss`).

        ℓ_list = Σ_{k=1}^{K−1} [log Σ_{j≥k} exp(s_j T_kj) − s_k T_kk]      (responses best first)

    s = `scores_NK`: the official score is the policy's length-normalized log-prob
    (`sequence_logps(..., average=True)`; no reference model). T = 1 without rewards:
    the plain Plackett–Luce negative log-likelihood, which for K = 2 is the Bradley–Terry
    loss −log σ(s_1 − s_2). With `rewards_NK` (the official default), T_kj = r_k − r_j for
    j > k and T_kk = max_{j>k} T_kj (the dynamic temperature). Order: index 0 is the best
    response, or pass `ranks_NK` (0 = best) and rlx reorders. Invalid responses are
    dropped from every denominator; stages without a valid lower-ranked response add 0.
    The loss is the mean over lists with at least two valid responses, plus the SFT term
    sft_weight · (K − 1)² · mean_N(−sft_logp_N) when `sft_logp_N` (the summed log-prob
    of the best response) is given. Default sft_weight = 0.05 (official scripts).

    Deviation: the official code adds 1e-10 inside the log; rlx uses an exact
    log-sum-exp (finite without it).
    """
    s = _nk(scores_NK, "scores_NK")
    shape = s.shape
    K = shape[1]
    v = _valid(valid_NK, shape)
    if sft_logp_N is not None and jnp.shape(sft_logp_N) != (shape[0],):
        raise ValueError(f"sft_logp_N: expected shape [N={shape[0]}], got {tuple(jnp.shape(sft_logp_N))}")
    s = _order_best_first(clean(s, v), ranks_NK)
    v = _order_best_first(v, ranks_NK)
    idx = jnp.arange(K)
    later = (idx[None, :] > idx[:, None])[None] & v[:, None, :] & v[:, :, None]  # [N, k, j]
    if rewards_NK is None:
        temp = jnp.ones((shape[0], K, K), jnp.float32)
        self_t = jnp.ones(shape, jnp.float32)
    else:
        r = _order_best_first(clean(_nk(rewards_NK, "rewards_NK", shape), _valid(valid_NK, shape)), ranks_NK)
        temp = sg(r[:, :, None] - r[:, None, :])
        self_t = jnp.max(jnp.where(later, temp, -jnp.inf), axis=2)
        self_t = jnp.where(jnp.any(later, axis=2), self_t, 0.0)
    has_later = jnp.any(later, axis=2)  # stage k counts
    z_self = s * self_t
    z_others = jnp.where(later, s[:, None, :] * temp, -jnp.inf)
    lse = jnp.logaddexp(z_self, jax.nn.logsumexp(z_others, axis=2))
    stage = jnp.where(has_later, lse - z_self, 0.0)
    per_list = jnp.sum(stage, axis=1)
    counted = jnp.sum(v, axis=1) >= 2
    loss = ops.masked_mean(per_list, counted)
    metrics = {"rank_loss": sg(loss)}
    if sft_logp_N is not None:
        sft = jnp.asarray(sft_logp_N, jnp.float32)
        sft_loss = sft_weight * (K - 1) ** 2 * jnp.mean(-sft)
        metrics["sft_loss"] = sg(sft_loss)
        loss = loss + sft_loss
    return loss, metrics


def step_means(x_NKT: Array, mask_NKT: Array, step_ids_NKT: Array, num_steps: int):
    """Per-step token means of x: returns (means [N, K, S], present [N, K, S]).

    `step_ids_NKT` holds 1..S for tokens of step s, 0 for tokens in no step; masked
    tokens are ignored.
    """
    onehot = jax.nn.one_hot(step_ids_NKT, num_steps + 1, dtype=jnp.float32)[..., 1:]  # [N,K,T,S]
    w = onehot * jnp.asarray(mask_NKT, jnp.float32)[..., None]
    x = jnp.where(jnp.asarray(mask_NKT, bool), x_NKT, 0.0)[..., None]
    count = jnp.sum(w, axis=2)
    total = jnp.sum(w * x, axis=2)
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0), count > 0


def tpo_step_weights(step_hidden_NKSD: Array, present_NKS: Array) -> Array:
    """TPO's adaptive step weights: cos(h_{k,s}, h_{0,s}) + 1, [N, K, S].

    h_{k,s} is the mean hidden state of step s of response k; response 0 is the
    preferred response of the tree. Steps missing in either response get weight 0
    (the official `compute_step_weights`). Stop-gradient.
    """
    h = sg(jnp.asarray(step_hidden_NKSD, jnp.float32))
    ref = h[:, :1]
    num = jnp.sum(h * ref, axis=-1)
    den = jnp.linalg.norm(h, axis=-1) * jnp.linalg.norm(ref, axis=-1)
    cos = num / jnp.maximum(den, 1e-8)  # torch cosine_similarity's eps
    present = jnp.asarray(present_NKS, bool)
    return jnp.where(present & present[:, :1], cos + 1.0, 0.0)


@PREFERENCE.register()
def tpo_tree(token_logratio_NKT, mask_NKT, step_ids_NKT, labels_NK, *, num_steps: int,
             beta: float = 0.1, step_weights_NKS=None, valid_NK=None, weighting: str = "lambda"):
    """TPO: preference optimization over a multi-branch, multi-step preference tree.

    Paper: "TPO: Aligning Large Language Models with Multi-branch & Multi-step Preference
    Trees" (Liao et al. 2025); official code MrBlankness/TPO (loss.py). The K responses
    of a tree (sharing prefixes) form one ranked list. Score of response k:

        m_{k,s} = mean over tokens of step s of (log π − log π_ref)
        score_k = Σ_s w_{k,s} m_{k,s} / Σ_s w_{k,s}      (w = 1, or `tpo_step_weights`)

    ("Adaptive Step Reward": steps that resemble the preferred response's weigh more).
    The list loss is the LiPO-λ ranking loss (`lipo`) on β·score with labels_NK — the
    abstract's "preference list ranking"; `weighting="none"` gives plain pair-logistic.

    Deviation: the released loss.py applies −log σ(β · L_pair) to the already averaged
    pair loss L_pair (which rewards a larger ranking loss); rlx does not reproduce that
    composition and minimizes the ranking loss itself. Defaults: β = 0.1 (official).
    `num_steps` (S, static) is the largest step id.
    """
    check_positive(beta, "beta")
    _check_weighting(weighting)
    lr = jnp.asarray(token_logratio_NKT, jnp.float32)
    if lr.ndim != 3 or jnp.shape(mask_NKT) != lr.shape or jnp.shape(step_ids_NKT) != lr.shape:
        raise ValueError("token_logratio_NKT, mask_NKT, step_ids_NKT: expected one shape [N, K, T], got "
                         f"{tuple(lr.shape)}, {tuple(jnp.shape(mask_NKT))}, {tuple(jnp.shape(step_ids_NKT))}")
    shape = lr.shape[:2]
    labels = _nk(labels_NK, "labels_NK", shape)
    v = _valid(valid_NK, shape)
    means, present = step_means(lr, mask_NKT, step_ids_NKT, num_steps)
    w = present.astype(jnp.float32) if step_weights_NKS is None else sg(
        jnp.asarray(step_weights_NKS, jnp.float32))
    if w.shape != means.shape:
        raise ValueError(f"step_weights_NKS: expected shape {tuple(means.shape)}, got {tuple(w.shape)}")
    w = jnp.where(present, w, 0.0)
    wsum = jnp.sum(w, axis=2)
    score = jnp.where(wsum > 0, jnp.sum(w * means, axis=2) / jnp.where(wsum > 0, wsum, 1.0), 0.0)
    per_list, has_pair, n_pairs = pairwise_ranking_loss(beta * score, labels, v, weighting)
    metrics = {"pairs": jnp.mean(n_pairs.astype(jnp.float32)),
               "score_mean": ops.masked_mean(sg(score), v)}
    return ops.masked_mean(per_list, has_pair), metrics
