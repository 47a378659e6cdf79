"""Loss aggregation: reduce a per-token loss `[B, T]` to a scalar, exactly under sharding.

Four modes, named as in verl (`agg_loss`), with M the loss mask and |y_i| = Σ_t M_it:

  token-mean               Σ_it x M / Σ_it M                       (DAPO's token-level loss)
  seq-mean-token-sum       (1/B') Σ_i Σ_t x_it M_it                 B' = rows with >= 1 token
  seq-mean-token-mean      (1/B') Σ_i (Σ_t x_it M_it / |y_i|)       (the GRPO paper's loss)
  seq-mean-token-sum-norm  Σ_it x M / (B · max_len)                 (Dr. GRPO: a constant
                                                                     denominator, max_len = T
                                                                     unless given)

Exactness under data parallelism. Every mode is a ratio numerator / denominator of two
*global* sums over the whole batch. Computed with `jnp.sum` over the full (possibly
sharded) array inside `jit`, XLA reduces across devices before the single division, so
8 devices give the value of 1 device — never a mean of per-device means (which is what
a per-device `mean` followed by a gradient all-reduce computes when devices hold
different token counts). `aggregate_parts` exposes the two sums.

Gradient accumulation over micro-batches. The denominators depend on the masks only,
never on parameters. A trainer that splits a batch into micro-batches m = 1..K:
  1. computes `den_m = aggregate_parts(x_m, mask_m, mode)[1]` for every micro-batch
     (cheap: masks only) and D = Σ_m den_m — for token-mean D is the total number of
     valid tokens, for the seq-mean modes the total number of non-empty rows, for
     seq-mean-token-sum-norm B_total · max_len (pass the same `max_len` everywhere);
  2. uses `aggregate(x_m, mask_m, mode, denominator=D)` (= num_m / D) as micro-batch m's
     loss. The sum over m of these losses (and of their gradients) equals the full-batch
     value exactly.
Summing numerators after the fact works for reporting too: Σ_m num_m / Σ_m den_m.

Empty masks give 0 (never NaN); rows with no valid token are left out of the seq-mean
modes' row count (as verl does) but still count in seq-mean-token-sum-norm's B (the
denominator is a constant there by design).

Difference from verl: verl's seq-mean-token-sum-norm divides the micro-batch sum by
max_len only (no B), so its value scales with the micro-batch size; rlx divides by
B · max_len, Dr. GRPO's (1/G) Σ_i Σ_t / MAX_TOKENS normalization — the same gradient
direction, a batch-size-independent scale. verl's seq-mean-token-mean divides each row
by |y_i| + 1e-8; rlx divides exactly and skips empty rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlx import ops

Array = jax.Array

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def safe_div(num: Array, den: Array) -> Array:
    """num / den where den > 0, else 0, with finite gradients in both branches."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def check_mode(mode: str) -> None:
    """Raises a ValueError naming `mode` unless it is one of `AGG_MODES`."""
    if mode not in AGG_MODES:
        raise ValueError(f"unknown aggregation mode {mode!r}; expected one of {', '.join(AGG_MODES)}")


def check_bt(**arrays) -> tuple[int, int]:
    """Checks that every given array is `[B, T]` with the same B, T; returns (B, T).

    `None` entries are skipped. The error names the offending argument.
    """
    shape = None
    first = None
    for name, a in arrays.items():
        if a is None:
            continue
        s = tuple(jnp.shape(a))
        if len(s) != 2:
            raise ValueError(f"{name}: expected a [B, T] array, got shape {s}")
        if shape is None:
            shape, first = s, name
        elif s != shape:
            raise ValueError(f"{name}: shape {s} differs from {first}'s {shape} (both must be [B, T])")
    if shape is None:
        raise ValueError("check_bt: no arrays given")
    return shape


def aggregate_parts(x_BT: Array, mask_BT: Array, mode: str, max_len: int | None = None
                    ) -> tuple[Array, Array]:
    """(numerator, denominator) of `aggregate(x, mask, mode)`; both are global sums.

    token-mean: (Σ x M, Σ M); seq-mean-token-sum: (Σ_i Σ_t x M, #rows with a token);
    seq-mean-token-mean: (Σ_i Σ_t x M / |y_i|, #rows with a token);
    seq-mean-token-sum-norm: (Σ x M, B · max_len), max_len defaulting to T.
    A float mask acts as weights (|y_i| = Σ_t w_it).
    """
    check_mode(mode)
    B, T = check_bt(x=x_BT, mask=mask_BT)
    x_BT = jnp.asarray(x_BT)
    if mode == "token-mean":
        return ops.masked_sum(x_BT, mask_BT), ops.masked_count(x_BT, mask_BT)
    if mode == "seq-mean-token-sum-norm":
        L = T if max_len is None else max_len
        if isinstance(L, (int, float)) and L <= 0:
            raise ValueError(f"max_len must be positive, got {max_len!r}")
        den = jnp.asarray(B, jnp.float32) * jnp.asarray(L, jnp.float32)
        return ops.masked_sum(x_BT, mask_BT), den
    row_sum_B = ops.masked_sum(x_BT, mask_BT, axis=1)
    row_len_B = ops.masked_count(x_BT, mask_BT, axis=1)
    nonempty_B = (row_len_B > 0).astype(row_sum_B.dtype)
    if mode == "seq-mean-token-sum":
        return jnp.sum(row_sum_B), jnp.sum(nonempty_B)
    # seq-mean-token-mean
    return jnp.sum(safe_div(row_sum_B, row_len_B)), jnp.sum(nonempty_B)


def aggregate(x_BT: Array, mask_BT: Array, mode: str = "token-mean", *, max_len: int | None = None,
              denominator: Array | float | None = None) -> Array:
    """Scalar aggregate of a per-token quantity; see the module docstring for the modes.

    Args:
      x_BT: per-token values `[B, T]` (masked positions may hold anything, even NaN).
      mask_BT: bool or float `[B, T]` loss mask.
      mode: one of `AGG_MODES`; anything else raises ValueError naming it.
      max_len: seq-mean-token-sum-norm's constant (default T).
      denominator: if given, replaces the computed denominator (gradient accumulation:
        pass the global denominator summed over all micro-batches).

    Returns 0 where the denominator is 0 (empty mask).
    """
    num, den = aggregate_parts(x_BT, mask_BT, mode, max_len)
    if denominator is not None:
        den = jnp.asarray(denominator, num.dtype)
    return safe_div(num, den)
