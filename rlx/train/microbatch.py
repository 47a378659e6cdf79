"""Row chunks: run a function over a batch in chunks of rows, inside one `jit`.

Nothing that costs more than O(B) runs over the whole batch at once (DESIGN.md, scale
discipline): forwards outside the update (old / reference log-probs, critic values)
map over chunks of `rows` rows with `lax.map`, and accumulating steps (SFT, the update's
micro-batches) scan over them.

Chunks are strided, not contiguous: with B rows in units of `unit` consecutive rows
(`unit` = G keeps whole groups together), chunk j of n holds units j, j + n, j + 2n, ...
A batch sharded over devices along its rows stays evenly spread inside every chunk
(each device holds the same share of each chunk), so a chunk never lands on one
device; the reshapes are local, no data moves between devices. `merge_rows` puts the
rows back in their original order, so a chunked map equals the whole-batch call (to
float rounding of the reductions inside the function, which see fewer rows).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def num_chunks(B: int, rows: int, unit: int = 1) -> int:
    """Chunks of at most `rows` rows (a multiple of `unit`) that split B rows evenly:
    the smallest n >= B / rows such that n divides B / unit. rows <= 0: one chunk."""
    if B % unit:
        raise ValueError(f"microbatch: {B} rows are not a whole number of units of {unit}")
    units = B // unit
    if rows <= 0 or rows >= B:
        return 1
    n = max(1, -(-B // max(rows, unit)))
    while units % n:
        n += 1
    return n


def split_rows(x: jax.Array, n: int, unit: int = 1) -> jax.Array:
    """[B, ...] -> [n, B / n, ...]: chunk j holds units j, j + n, j + 2n, ... (strided)."""
    B = x.shape[0]
    if B % (n * unit):
        raise ValueError(f"microbatch: {B} rows cannot be split into {n} chunks of whole units of {unit}")
    y = x.reshape((B // (n * unit), n, unit) + x.shape[1:])
    return jnp.swapaxes(y, 0, 1).reshape((n, B // n) + x.shape[1:])


def merge_rows(y: jax.Array, unit: int = 1) -> jax.Array:
    """The inverse of `split_rows`: [n, B / n, ...] -> [B, ...] in the original order."""
    n, m = y.shape[:2]
    z = y.reshape((n, m // unit, unit) + y.shape[2:])
    return jnp.swapaxes(z, 0, 1).reshape((n * m,) + y.shape[2:])


def map_rows(fn: Callable, rows: int, *arrays, unit: int = 1):
    """`fn(*arrays)` computed over chunks of at most `rows` rows (`lax.map`), results
    (a pytree of [B, ...] arrays) reassembled in row order. rows <= 0 or >= B: one call."""
    B = arrays[0].shape[0]
    n = num_chunks(B, rows, unit)
    if n == 1:
        return fn(*arrays)
    chunks = [split_rows(a, n, unit) for a in arrays]
    out = jax.lax.map(lambda xs: fn(*xs), chunks)
    return jax.tree.map(lambda y: merge_rows(y, unit), out)
