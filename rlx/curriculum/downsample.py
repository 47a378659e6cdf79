"""D3S: dynamic dual-level down-sampling of rollouts (sample level) and tokens (token level).

Paper: "Learning More with Less: A Dynamic Dual-Level Down-Sampling Framework for
Efficient Policy Optimization" (Wang et al. 2025). No official code is public: every rule
below is the ABSTRACT'S READING, and the defaults are rlx's.

  * Sample level: within each group keep the k rollouts whose advantages have the
    largest variance (the paper proves Var(A) bounds the policy-gradient norm).
    For scalars, a maximum-variance subset of fixed size k always consists of the j
    smallest and the k − j largest values for some j in 0..k (exchange argument: the
    variance is a convex quadratic in any one kept value, so a kept value lying between
    two left-out values can be swapped for one of them without lowering it; PODS, "Not
    All Rollouts are Useful", uses the same lemma). rlx checks all k + 1
    candidates, so the selection is exact, with static shapes, and k may be traced
    (a schedule does not recompile). Ties go to the smallest j.
  * Token level: keep the top fraction of valid tokens by |A_t| · H_t (advantage
    magnitude times policy entropy), over the whole batch (`scope="batch"`) or within
    each row (`scope="row"`).
  * Schedule: the keep ratio grows from aggressive (`start`) to relaxed (`end`, 1 = no
    down-sampling) over `total_steps` (curriculum-style), linearly or with a cosine.

Masks, not gathers: every function returns a bool keep-mask of the input's shape; the
trainer ANDs it into the loss mask (`mask_BT & keep_PG.reshape(B)[:, None]` for samples).
Group layout as in rlx/types.py (row p*G + g is sample g of prompt p).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlx import ops

Array = jax.Array


def _inverse_rank(key: Array, axis: int) -> Array:
    """Rank of each element along `axis` in ascending order of `key` (stable ties)."""
    order = jnp.argsort(key, axis=axis, stable=True)
    return jnp.argsort(order, axis=axis, stable=True)


def max_variance_subset(adv_PG: Array, k: int | Array, valid_PG: Array | None = None) -> Array:
    """Bool `[P, G]`: per group, the size-min(k, n_valid) subset of maximal Var(A).

    Args:
      adv_PG: one scalar advantage per sample, `[P, G]`.
      k: samples to keep per group (Python int or traced int scalar), >= 0.
      valid_PG: optional bool `[P, G]`; invalid samples are never kept. A group with at
        most k valid samples keeps all of them.
    """
    adv_PG = jnp.asarray(adv_PG)
    if adv_PG.ndim != 2:
        raise ValueError(f"adv_PG: expected [P, G], got shape {adv_PG.shape}")
    P, G = adv_PG.shape
    if isinstance(k, (int, float)) and k < 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    valid = jnp.ones((P, G), bool) if valid_PG is None else jnp.asarray(valid_PG) != 0
    if valid.shape != (P, G):
        raise ValueError(f"valid_PG: expected shape {(P, G)}, got {valid.shape}")
    x = jnp.where(valid, adv_PG, jnp.inf)                    # invalid sort last
    rank = _inverse_rank(x, axis=1)[:, None, :]              # [P, 1, G]
    n = jnp.sum(valid, axis=1)                               # [P]
    k_P = jnp.minimum(jnp.asarray(k, jnp.int32), n)[:, None, None]
    n = n[:, None, None]
    j = jnp.arange(G + 1, dtype=jnp.int32)[None, :, None]    # j smallest + (k - j) largest
    member = valid[:, None, :] & ((rank < j) | ((rank >= n - (k_P - j)) & (rank < n)))
    J = G + 1
    var = ops.masked_var(jnp.broadcast_to(adv_PG[:, None, :], (P, J, G)), member, ddof=0, axis=2)
    var = jnp.where(j[..., 0] <= k_P[..., 0], var, -jnp.inf)  # [P, J]
    best = jnp.argmax(var, axis=1)
    return jnp.take_along_axis(member, best[:, None, None], axis=1)[:, 0, :]


def sample_keep_count(keep_ratio: float | Array, group_size: int) -> Array:
    """k = ceil(keep_ratio · G), clipped to [1, G] (int32 scalar; traced ratios allowed)."""
    k = jnp.ceil(jnp.asarray(keep_ratio, jnp.float32) * group_size - 1e-6).astype(jnp.int32)
    return jnp.clip(k, 1, group_size)


def sample_downsample(adv_PG: Array, *, keep_ratio: float | Array, valid_PG: Array | None = None
                      ) -> Array:
    """D3S sample level: keep `sample_keep_count(keep_ratio, G)` max-variance samples per group."""
    adv_PG = jnp.asarray(adv_PG)
    if adv_PG.ndim != 2:
        raise ValueError(f"adv_PG: expected [P, G], got shape {adv_PG.shape}")
    return max_variance_subset(adv_PG, sample_keep_count(keep_ratio, adv_PG.shape[1]), valid_PG)


def token_downsample(adv_BT: Array, entropy_BT: Array, mask_BT: Array, *, keep_ratio: float | Array,
                     scope: str = "batch") -> Array:
    """D3S token level: bool `[B, T]` keeping the top ceil(keep_ratio · n) valid tokens by |A|·H.

    n is the number of valid tokens in the batch (`scope="batch"`) or in each row
    (`scope="row"`). A positive ratio keeps at least one token of a non-empty set; ties
    are broken by position (earlier first). Invalid tokens are never kept.
    """
    if scope not in ("batch", "row"):
        raise ValueError(f"scope must be 'batch' or 'row', got {scope!r}")
    shapes = {jnp.shape(adv_BT), jnp.shape(entropy_BT), jnp.shape(mask_BT)}
    if len(shapes) != 1 or len(jnp.shape(adv_BT)) != 2:
        raise ValueError("adv_BT, entropy_BT and mask_BT must share one [B, T] shape, got "
                         f"{jnp.shape(adv_BT)}, {jnp.shape(entropy_BT)}, {jnp.shape(mask_BT)}")
    B, T = jnp.shape(adv_BT)
    valid = jnp.asarray(mask_BT) != 0
    score = jnp.where(valid, jnp.abs(adv_BT) * entropy_BT, -jnp.inf)
    ratio = jnp.clip(jnp.asarray(keep_ratio, jnp.float32), 0.0, 1.0)
    if scope == "batch":
        rank = _inverse_rank(-score.reshape(B * T), axis=0).reshape(B, T)
        k = jnp.ceil(ratio * jnp.sum(valid) - 1e-6)
    else:
        rank = _inverse_rank(-score, axis=1)
        k = jnp.ceil(ratio * jnp.sum(valid, axis=1, keepdims=True) - 1e-6)
    return valid & (rank < k)


def keep_ratio_schedule(step: int | Array, *, total_steps: int, start: float = 0.5, end: float = 1.0,
                        kind: str = "linear") -> Array:
    """Keep ratio at `step`: from `start` (aggressive) to `end` (relaxed) over total_steps.

    linear: start + (end − start)·f;  cosine: start + (end − start)·(1 − cos(π f))/2,
    with f = clip(step / total_steps, 0, 1). Defaults (0.5 → 1.0, linear) are rlx's; the
    abstract states only the direction (aggressive first, relaxed later).
    """
    if kind not in ("linear", "cosine"):
        raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")
    if not (isinstance(total_steps, int) and total_steps > 0):
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    for name, v in (("start", start), ("end", end)):
        if not 0 < v <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {v!r}")
    f = jnp.clip(jnp.asarray(step, jnp.float32) / total_steps, 0.0, 1.0)
    if kind == "cosine":
        f = (1.0 - jnp.cos(math.pi * f)) / 2.0
    return start + (end - start) * f
