"""Pairwise preference losses on sequence log-probs: the DPO family.

Common signature (no model inside a loss, DESIGN.md principle 1):

    fn(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp,
       *, beta=0.1, ..., valid=None) -> (loss, metrics)

  *_logp    float [N]  log-probs of the N chosen (y_w) / rejected (y_l) responses,
                       normally summed over the response tokens (`rlx.data.preference
                       .sequence_logps`); the policy ones carry the gradient
  valid     bool [N] or None: pairs that count (padding pairs of a static batch: False)
  loss      masked mean over the valid pairs of the per-pair loss (0 with no valid pair)
  metrics   stop-gradient scalars: chosen_reward = mean β(π_c − ref_c), rejected_reward,
            reward_margin = mean of their difference, reward_accuracy = fraction of pairs
            with a positive margin

Notation: lr_c = π_c − ref_c, lr_r = π_r − ref_r (log-ratios), d = lr_c − lr_r and the
DPO logit h = β·d. Formulas and defaults follow TRL's `DPOTrainer` loss types (read in
huggingface/trl, trl/trainer/dpo_trainer.py), which track the papers' official code.

The preference-loss registry lives here: `PREFERENCE` (a `rlx.registry.Registry`), with
`get(name)` / `names()`. Losses defined in rlx/losses/{pairwise,listwise,selfplay,
online_pairs,token_pref}.py register into it when imported; `get` and `names` import them
first, so always look losses up through those two functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from numbers import Real

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.registry import Registry

Array = jax.Array
sg = jax.lax.stop_gradient

PREFERENCE = Registry("preference loss")
_MODULES = ("pairwise", "listwise", "selfplay", "online_pairs", "token_pref")


def _load_all() -> None:
    for m in _MODULES:
        importlib.import_module(f"rlx.losses.{m}")


def get(name: str) -> Callable:
    """The preference loss registered under `name` (KeyError listing the known names)."""
    _load_all()
    return PREFERENCE.get(name)


def names() -> list[str]:
    """Sorted names of all registered preference losses."""
    _load_all()
    return PREFERENCE.names()


# ------------------------------------------------------------------------------ helpers


def vector(x, name: str, n: int | None = None) -> Array:
    """`x` as a float32 1-D array (of length n when given); errors name the argument."""
    arr = jnp.asarray(x)
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise TypeError(f"{name}: expected a float array, got dtype {arr.dtype}")
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = "[N]" if n is None else f"[N={n}]"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(arr.shape)}")
    return arr.astype(jnp.float32)


def valid_mask(valid, n: int, name: str = "valid") -> Array:
    """bool [n]: all True when `valid` is None."""
    if valid is None:
        return jnp.ones((n,), bool)
    v = jnp.asarray(valid)
    if v.shape != (n,):
        raise ValueError(f"{name}: expected shape [N={n}], got {tuple(v.shape)}")
    return v.astype(bool)


def check_positive(value, name: str) -> None:
    if isinstance(value, Real) and not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def check_range(value, name: str, lo: float, hi: float, *, hi_open: bool = True,
                lo_open: bool = False) -> None:
    """Raises when a concrete `value` lies outside [lo, hi) (bounds as flagged)."""
    if not isinstance(value, Real):
        return  # traced: cannot be checked eagerly
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = value >= hi if hi_open else value > hi
    if bad_lo or bad_hi:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{name} must lie in {left}{lo}, {hi}{right}, got {value!r}")


def clean(x: Array, mask: Array, fill=0.0) -> Array:
    """x where mask, else `fill`: invalid entries (even NaN) get neither a value nor a
    gradient (a `where` at the input: the cotangent is cut there, never multiplied)."""
    return jnp.where(mask, x, fill)


def pair_inputs(pc, pr, rc, rr, valid, names=("policy_chosen_logp", "policy_rejected_logp",
                                              "ref_chosen_logp", "ref_rejected_logp")):
    """Validates the four [N] log-prob vectors; returns (lr_c, lr_r, valid), the log-ratios
    zeroed (value and gradient) at invalid pairs."""
    pc = vector(pc, names[0])
    n = pc.shape[0]
    pr, rc, rr = (vector(x, nm, n) for x, nm in zip((pr, rc, rr), names[1:]))
    v = valid_mask(valid, n)
    return clean(pc - rc, v), clean(pr - rr, v), v


def reward_metrics(chosen_N: Array, rejected_N: Array, valid_N: Array) -> dict[str, Array]:
    """Metrics of implicit rewards (already scaled): means, margin, accuracy over valid pairs."""
    c, r = sg(chosen_N), sg(rejected_N)
    return {"chosen_reward": ops.masked_mean(c, valid_N),
            "rejected_reward": ops.masked_mean(r, valid_N),
            "reward_margin": ops.masked_mean(c - r, valid_N),
            "reward_accuracy": ops.masked_mean((c > r).astype(jnp.float32), valid_N)}


def finish(per_pair_N: Array, lr_c: Array, lr_r: Array, valid_N: Array, beta,
           extra: dict | None = None):
    """(masked mean of the per-pair loss, metrics with implicit rewards β·lr)."""
    per_pair_N = jnp.where(valid_N, per_pair_N, 0.0)
    metrics = reward_metrics(beta * lr_c, beta * lr_r, valid_N)
    metrics.update(extra or {})
    return ops.masked_mean(per_pair_N, valid_N), metrics


log_sigmoid = jax.nn.log_sigmoid


def smoothed_logistic(h: Array, eps) -> Array:
    """−(1−ε) log σ(h) − ε log σ(−h): the logistic loss against soft label 1−ε."""
    return -(1.0 - eps) * log_sigmoid(h) - eps * log_sigmoid(-h)


# ------------------------------------------------------------------------------ losses


@PREFERENCE.register()
def dpo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
        beta: float = 0.1, label_smoothing: float = 0.0, valid=None):
    """DPO and conservative DPO (cDPO).

    Papers: "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model" (Rafailov et al. 2023); cDPO: Mitchell's note "A note on DPO with noisy
    preferences & relationship to IPO" (the `label_smoothing` option of the official DPO
    code, eric-mitchell/direct-preference-optimization, `preference_loss`).

        h = β[(π_c − ref_c) − (π_r − ref_r)]
        ℓ = −(1 − ε) log σ(h) − ε log σ(−h)

    ε = `label_smoothing` = 0 is plain DPO; ε > 0 (the assumed label-flip rate, in
    [0, 0.5]) is cDPO, whose optimum is a finite margin. Defaults: β = 0.1 (DPO/TRL), ε = 0.
    """
    check_positive(beta, "beta")
    check_range(label_smoothing, "label_smoothing", 0.0, 0.5, hi_open=False)
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    per = smoothed_logistic(beta * (lr_c - lr_r), label_smoothing)
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def robust_dpo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
               beta: float = 0.1, label_smoothing: float = 0.0, valid=None):
    """Robust DPO (rDPO): the unbiased loss under random preference flips.

    Paper: "Provably Robust DPO: Aligning Language Models with Noisy Feedback" (Chowdhury
    et al. 2024); TRL loss type `robust`.

        ℓ = [−(1 − ε) log σ(h) + ε log σ(−h)] / (1 − 2ε),   h = β·d

    ε = `label_smoothing` is the flip rate, in [0, 0.5) (ValueError otherwise; 0 gives
    DPO). The paper suggests ε = 0.1 on noisy data; default 0 here (TRL's default).
    """
    check_positive(beta, "beta")
    check_range(label_smoothing, "label_smoothing", 0.0, 0.5)
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    h = beta * (lr_c - lr_r)
    eps = label_smoothing
    per = (-(1.0 - eps) * log_sigmoid(h) + eps * log_sigmoid(-h)) / (1.0 - 2.0 * eps)
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def ipo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
        beta: float = 0.1, valid=None):
    """IPO: squared regression of the log-ratio margin onto 1/(2β).

    Paper: "A General Theoretical Paradigm to Understand Learning from Human Preferences"
    (Azar et al. 2023), Eq. 17 (β is the paper's τ).

        ℓ = ((π_c − ref_c) − (π_r − ref_r) − 1/(2β))²

    on the log-probs AS GIVEN. TRL (after checking with the IPO authors) averages the
    log-probs over response tokens before this loss, and the paper's results use that
    normalized form: pass `sequence_logps(..., average=True)` for it, sums for the
    literal Eq. 17. The minimum (ℓ = 0) is at margin d = 1/(2β). Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    per = jnp.square(lr_c - lr_r - 1.0 / (2.0 * beta))
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def hinge(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
          beta: float = 0.1, valid=None):
    """SLiC / RSO hinge loss on the normalized likelihood ratio.

    Papers: "SLiC-HF: Sequence Likelihood Calibration with Human Feedback" (Zhao et al.
    2023); "Statistical Rejection Sampling Improves Preference Optimization" (Liu et al.
    2023, the `hinge-norm` loss with γ = β); TRL loss type `hinge`.

        ℓ = max(0, 1 − β·d)

    Zero once the margin d exceeds 1/β. Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    per = jax.nn.relu(1.0 - beta * (lr_c - lr_r))
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def exo(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
        beta: float = 0.1, label_smoothing: float = 1e-3, valid=None):
    """EXO (pairwise form): reverse KL from the policy's pair distribution to the labels.

    Paper: "Towards Efficient Exact Optimization of Language Model Alignment" (Ji et al.
    2024), Eq. 16 with K = 2; TRL loss type `exo_pair`.

        q_w = σ(h), q_l = σ(−h),  h = β·d
        ℓ = q_w (log q_w − log(1 − ε)) + q_l (log q_l − log ε)   = KL(q ‖ [1−ε, ε])

    ε ∈ (0, 1) is required (log ε); default 1e-3 (the paper's value, as in TRL). The
    paper has separate β_π and β_r; rlx, like TRL, uses one β. Default β = 0.1.
    """
    check_positive(beta, "beta")
    check_range(label_smoothing, "label_smoothing", 0.0, 1.0, lo_open=True)
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    h = beta * (lr_c - lr_r)
    eps = jnp.asarray(label_smoothing, jnp.float32)
    per = (jax.nn.sigmoid(h) * (log_sigmoid(h) - jnp.log1p(-eps))
           + jax.nn.sigmoid(-h) * (log_sigmoid(-h) - jnp.log(eps)))
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def nca(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
        beta: float = 0.1, valid=None):
    """NCA (pairwise): noise-contrastive alignment with absolute implicit rewards.

    Paper: "Noise Contrastive Alignment of Language Models with Explicit Rewards" (Chen et
    al. 2024); TRL loss type `nca_pair`.

        r_c = β lr_c, r_r = β lr_r
        ℓ = −log σ(r_c) − ½ log σ(−r_c) − ½ log σ(−r_r)

    Unlike DPO it acts on each response's reward, not only on their difference, so the
    chosen likelihood is pushed up. Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    rc, rr = beta * lr_c, beta * lr_r
    per = -log_sigmoid(rc) - 0.5 * log_sigmoid(-rc) - 0.5 * log_sigmoid(-rr)
    return finish(per, lr_c, lr_r, v, beta)


@PREFERENCE.register()
def bco(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
        beta: float = 0.1, delta=0.0, valid=None):
    """BCO (pairwise): binary classification of chosen vs rejected implicit rewards.

    Paper: "Binary Classifier Optimization for Large Language Model Alignment" (Jung et
    al. 2024); TRL `BCOTrainer.bco_loss` and DPO loss type `bco_pair`.

        r = β(π − ref);   ℓ = −log σ(r_c − δ) − log σ(−(r_r − δ))

    δ is the reward shift: the running mean of all implicit rewards seen so far, passed
    explicitly (keep it with `bco_running_mean`, state in / state out). δ = 0 is TRL's
    `bco_pair`. The BCO trainer updates δ with the current batch first, then computes the
    loss, and averages over the 2N chosen and rejected terms (= half of this per-pair
    sum). Default β = 0.1.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    delta = sg(jnp.asarray(delta, jnp.float32))
    per = -log_sigmoid(beta * lr_c - delta) - log_sigmoid(-(beta * lr_r - delta))
    return finish(per, lr_c, lr_r, v, beta, {"delta": delta})


def bco_running_mean(mean, count, chosen_rewards_N, rejected_rewards_N, valid=None):
    """One update of BCO's running reward mean δ: returns (new_mean, new_count).

    The mean of all valid implicit rewards (chosen and rejected) ever seen:
    new_mean = mean + (batch_mean − mean)·n / (count + n), n = 2·#valid pairs (TRL's
    `RunningMoments`, which starts from mean 0 and count 1e-24). Stop-gradient.
    """
    c = sg(vector(chosen_rewards_N, "chosen_rewards_N"))
    r = sg(vector(rejected_rewards_N, "rejected_rewards_N", c.shape[0]))
    v = valid_mask(valid, c.shape[0])
    n = 2.0 * jnp.sum(v)
    batch_sum = jnp.sum(jnp.where(v, c + r, 0.0))
    total = count + n
    new_mean = jnp.where(n > 0, mean + (batch_sum - n * mean) / jnp.where(total > 0, total, 1.0), mean)
    return new_mean, total


@PREFERENCE.register()
def sppo_hard(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp, *,
              beta: float = 0.1, valid=None):
    """SPPO with hard win probabilities (P = 1 for the winner, 0 for the loser).

    Paper: "Self-Play Preference Optimization for Language Model Alignment" (Wu et al.
    2024), Eq. 4.7 with hard labels; TRL loss type `sppo_hard`. The reference is the
    previous iterate π_t.

        ℓ = (lr_c − 1/(2β))² + (lr_r + 1/(2β))²

    The official SPPO code (uclaml/SPPO `sppo` loss) averages the two terms (half of this)
    and uses β = 1e-3 in its scripts; this is TRL's sum with TRL's β = 0.1 default. The
    soft-probability, per-response form is `rlx.losses.selfplay.sppo`.
    """
    check_positive(beta, "beta")
    lr_c, lr_r, v = pair_inputs(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp,
                                ref_rejected_logp, valid)
    per = jnp.square(lr_c - 0.5 / beta) + jnp.square(lr_r + 0.5 / beta)
    return finish(per, lr_c, lr_r, v, beta)
