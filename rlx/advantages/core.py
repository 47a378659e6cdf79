"""The estimator registry and what every group estimator shares: input checks, the
validity mask, the standard metrics, and broadcasting sequence advantages to tokens.

Conventions (every estimator in `rlx.advantages`):
  * returns `(advantages, metrics)`; `metrics` is a dict of scalar jax arrays;
  * group layout: `rewards` float `[P, G]` (P prompts, G samples), optional `valid` bool
    `[P, G]`; a sample that is masked out, or whose reward is NaN/Inf, is *invalid*:
    it is excluded from every statistic and gets advantage 0;
  * group-normalized estimators give advantage 0 to every sample of a group with fewer
    than 2 valid samples (a baseline from one sample is the sample itself) and count
    such groups in `metrics["degenerate_groups"]`;
  * keyword scalars that change shapes or Python control flow (ddof, modes) must be
    static under `jax.jit` (`functools.partial` or `static_argnames`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.registry import Registry

Array = jax.Array

ESTIMATORS = Registry("advantage estimator")
register = ESTIMATORS.register
get = ESTIMATORS.get
names = ESTIMATORS.names


def jitted(*static_argnames: str):
    """Decorator: `jax.jit` with these keyword arguments static. Every estimator runs as
    one compiled program, also when called eagerly (one compilation per input shape and
    static configuration); inside a caller's `jax.jit` it is simply inlined. Shape and
    dtype checks run at trace time, so bad input still raises a clear error."""
    return functools.partial(jax.jit, static_argnames=static_argnames)


def as_float(name: str, field: str, x) -> Array:
    """`x` as a float array of at least float32 (integers, bools and 16-bit floats are
    converted: group statistics in bfloat16 would lose the signal), else a TypeError."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.integer):
        return x.astype(jnp.float32)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name}: {field} must be a float array, got dtype {x.dtype}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def as_mask(name: str, field: str, x, shape: tuple[int, ...]) -> Array:
    """`x` as a bool mask of exactly `shape` (bool or integer dtype), else an error."""
    x = jnp.asarray(x)
    if x.dtype != jnp.bool_ and not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name}: {field} must be a bool mask, got dtype {x.dtype}")
    if x.shape != tuple(shape):
        raise ValueError(f"{name}: {field} has shape {x.shape}, expected {tuple(shape)}")
    return x.astype(bool)


def as_ids(name: str, field: str, x, shape: tuple[int, ...]) -> Array:
    """`x` as an int32 id array of exactly `shape`, else an error."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{name}: {field} must be an integer array, got dtype {x.dtype}")
    if x.shape != tuple(shape):
        raise ValueError(f"{name}: {field} has shape {x.shape}, expected {tuple(shape)}")
    return x.astype(jnp.int32)


def check_shape(name: str, field: str, x: Array, shape: tuple[int, ...]) -> None:
    if x.shape != tuple(shape):
        raise ValueError(f"{name}: {field} has shape {x.shape}, expected {tuple(shape)}")


def check_ddof(name: str, ddof) -> int:
    if ddof not in (0, 1):
        raise ValueError(f"{name}: ddof must be 0 or 1 (a static Python int), got {ddof!r}")
    return int(ddof)


class Groups(NamedTuple):
    """Cleaned group input: `rewards` with invalid entries set to 0, `valid` bool,
    `count` float `[P]` valid samples per group, `metrics` the standard counts."""
    rewards: Array
    valid: Array
    count: Array
    metrics: dict


def count_metric(x: Array) -> Array:
    return jnp.sum(x, dtype=jnp.int32)


def prepare_groups(name: str, rewards, valid=None, *, field: str = "rewards") -> Groups:
    """Checks `[P, G]` rewards and the optional mask; NaN/Inf rewards become invalid.

    Metrics: `invalid_samples` (excluded for any reason), `nonfinite_rewards` (NaN/Inf
    rewards of samples the mask called valid), `degenerate_groups` (< 2 valid samples).
    The counts are derived from per-group row sums (no extra pass over `[P, G]`).
    """
    r = as_float(name, field, rewards)
    if r.ndim != 2:
        raise ValueError(f"{name}: {field} must be [P, G], got shape {r.shape}")
    P, G = r.shape
    if valid is None:
        ok = jnp.isfinite(r)
        given_total = jnp.int32(P * G)
    else:
        given = as_mask(name, "valid", valid, r.shape)
        ok = ops.finite_mask(r, given)
        given_total = jnp.sum(given, dtype=jnp.int32)
    count_i = jnp.sum(ok, axis=1, dtype=jnp.int32)
    ok_total = jnp.sum(count_i)
    metrics = {
        "invalid_samples": jnp.int32(P * G) - ok_total,
        "nonfinite_rewards": given_total - ok_total,
        "degenerate_groups": count_metric(count_i < 2),
    }
    return Groups(jnp.where(ok, r, 0), ok, count_i.astype(r.dtype), metrics)


def group_extrema(x_PG: Array, valid_PG: Array) -> tuple[Array, Array]:
    """Per-group max and min over valid entries ([P] each; -inf / +inf for empty groups),
    in one variadic reduction (one pass over the data instead of two)."""
    dtype = x_PG.dtype
    inf = jnp.array(jnp.inf, dtype)
    return jax.lax.reduce(
        (jnp.where(valid_PG, x_PG, -inf), jnp.where(valid_PG, x_PG, inf)), (-inf, inf),
        lambda a, b: (jnp.maximum(a[0], b[0]), jnp.minimum(a[1], b[1])), (1,))


def constant_groups(x_PG: Array, valid_PG: Array) -> Array:
    """bool [P]: all valid values of the group are exactly equal (or the group is empty).

    Used to return an exact 0 where the group variance is zero: `r - mean` of equal
    floats is not always exactly 0 after rounding, and dividing that residue by
    `std + eps` would invent a learning signal.
    """
    hi, lo = group_extrema(x_PG, valid_PG)
    return hi <= lo


def inverse_or_zero(den_P: Array, keep_P: Array) -> Array:
    """1 / den where `keep` and den > 0, else 0: a per-group factor, so that the
    `[P, G]` advantage is one multiply (no per-element division or select)."""
    ok = keep_P & (den_P > 0)
    return jnp.where(ok, 1 / jnp.where(ok, den_P, 1), 0)


def centered(g: Groups, baseline_P: Array, factor_P: Array) -> Array:
    """(r - baseline) * factor per group, 0 for invalid samples (factor 0 = group off)."""
    adv = (g.rewards - baseline_P[:, None]) * factor_P[:, None].astype(g.rewards.dtype)
    return jnp.where(g.valid, adv, 0).astype(g.rewards.dtype)


def safe_ratio(num: Array, den: Array) -> Array:
    """num / den where den > 0, else 0 (finite gradients in both branches)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def finish(adv_PG: Array, keep_PG: Array) -> Array:
    """Zero the advantages outside `keep` (invalid samples, degenerate groups)."""
    return jnp.where(keep_PG, adv_PG, 0).astype(adv_PG.dtype)


def to_tokens(adv_PG, mask_BT) -> Array:
    """Broadcasts sequence advantages `[P, G]` to token advantages `[B, T]`, B = P * G.

    Row `p * G + g` of the token arrays is sample g of prompt p (the `rlx.types` layout);
    positions where `mask_BT` is False get 0. Any 2-D advantage array works the same
    way, e.g. GiGPO's per-step `[P * G, S]` with rows ordered (p, g, s).
    """
    adv_PG = jnp.asarray(adv_PG)
    mask_BT = jnp.asarray(mask_BT)
    if adv_PG.ndim != 2 or mask_BT.ndim != 2:
        raise ValueError(f"to_tokens: expected adv [P, G] and mask [B, T], got shapes "
                         f"{adv_PG.shape} and {mask_BT.shape}")
    P, G = adv_PG.shape
    if mask_BT.shape[0] != P * G:
        raise ValueError(f"to_tokens: mask has {mask_BT.shape[0]} rows but adv is "
                         f"[P={P}, G={G}]; expected B = P * G = {P * G}")
    adv_B = adv_PG.reshape(P * G, 1)
    return jnp.where(mask_BT.astype(bool), jnp.broadcast_to(adv_B, mask_BT.shape), 0).astype(
        adv_PG.dtype)
