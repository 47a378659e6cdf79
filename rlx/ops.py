"""Numerical core: masked reductions, group statistics, log-probs and entropy.

Every function here is pure and `jax.jit`-compatible, and works under
`jax_numpy_rank_promotion='raise'` (masks are broadcast explicitly).

Mask conventions (used everywhere in rlx):
  * A mask is bool or float. A float mask is a weight: reductions compute
    sum(w * x) and count = sum(w). Positions with w == 0 never contribute, even when
    x is NaN or Inf there (we select with `where`, not multiply).
  * A reduction over an empty mask returns 0, never NaN: `masked_mean` of nothing is 0,
    `masked_var` with count <= ddof is 0, `masked_whiten` of 0 or 1 valid elements is 0.
    The caller that needs to know counts the valid elements (`masked_count`).

Dimension letters (DESIGN.md): B rows, T tokens, V vocabulary, D width, P prompts, G
samples per prompt.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


def _weights(x: Array, mask: Array | None) -> Array:
    """The mask as float weights of x's shape (all ones when mask is None)."""
    if mask is None:
        return jnp.ones(x.shape, jnp.result_type(x.dtype, jnp.float32))
    mask = jnp.asarray(mask)
    if mask.ndim != x.ndim:
        raise ValueError(f"mask rank {mask.ndim} != value rank {x.ndim} "
                         f"(shapes {mask.shape} and {x.shape})")
    return jnp.broadcast_to(mask, x.shape).astype(jnp.result_type(x.dtype, jnp.float32))


def _safe_div(num: Array, den: Array) -> Array:
    """num / den where den > 0, else 0 — with finite gradients in both branches."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def masked_count(x: Array, mask: Array | None, axis=None, keepdims: bool = False) -> Array:
    """Sum of the mask weights (the number of valid elements for a bool mask)."""
    return jnp.sum(_weights(x, mask), axis=axis, keepdims=keepdims)


def masked_sum(x: Array, mask: Array | None, axis=None, keepdims: bool = False) -> Array:
    """sum(w * x) over `axis`; masked-out elements are ignored even if non-finite."""
    w = _weights(x, mask)
    return jnp.sum(jnp.where(w != 0, x * w, 0), axis=axis, keepdims=keepdims)


def masked_mean(x: Array, mask: Array | None, axis=None, keepdims: bool = False) -> Array:
    """sum(w * x) / sum(w); 0 where the mask is empty."""
    return _safe_div(masked_sum(x, mask, axis, keepdims), masked_count(x, mask, axis, keepdims))


def masked_var(x: Array, mask: Array | None, *, ddof: int, axis=None,
               keepdims: bool = False) -> Array:
    """Variance sum(w (x - mean)^2) / (sum(w) - ddof); 0 where sum(w) - ddof <= 0.

    `ddof` is required: rlx never guesses between the biased (0) and unbiased (1)
    estimator, the two conventions peers mix up.
    """
    mean = masked_mean(x, mask, axis, keepdims=True)
    sq = masked_sum(jnp.square(x - mean), mask, axis, keepdims)
    return _safe_div(sq, masked_count(x, mask, axis, keepdims) - ddof)


def masked_std(x: Array, mask: Array | None, *, ddof: int, axis=None,
               keepdims: bool = False) -> Array:
    """sqrt(masked_var); 0 (with a zero, not NaN, gradient) where the variance is 0."""
    var = masked_var(x, mask, ddof=ddof, axis=axis, keepdims=keepdims)
    pos = var > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, var, 1)), 0)


def masked_whiten(x: Array, mask: Array | None, *, ddof: int = 1, eps: float = 1e-8,
                  shift_mean: bool = True, axis=None) -> Array:
    """(x - mean) * rsqrt(var + eps) over the valid elements; masked positions are 0.

    Statistics are taken over `axis` (default: all elements), `var` with the given ddof
    (1 = unbiased, the verl/SPO convention). With `shift_mean=False` the mean is added
    back after scaling. With 0 or 1 valid elements var is 0 and the valid element maps
    to 0 (or to its mean when shift_mean=False) — finite by construction.
    """
    w = _weights(x, mask)
    mean = masked_mean(x, mask, axis, keepdims=True)
    var = masked_var(x, mask, ddof=ddof, axis=axis, keepdims=True)
    out = (x - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return jnp.where(w != 0, out, 0)


class GroupStats(NamedTuple):
    """Per-group statistics of a `[P, G]` array: each field is `[P]`."""
    mean: Array
    std: Array
    count: Array


def group_stats(x_PG: Array, valid_PG: Array | None = None, *, ddof: int) -> GroupStats:
    """Mean, std (with the given ddof) and valid count of each group (row) of `[P, G]`.

    Invalid samples are excluded; a group with count <= ddof has std 0; an empty group
    has mean 0. Non-finite values must be masked by the caller (see `finite_mask`).
    """
    if x_PG.ndim != 2:
        raise ValueError(f"group_stats expects [P, G], got shape {x_PG.shape}")
    return GroupStats(
        mean=masked_mean(x_PG, valid_PG, axis=1),
        std=masked_std(x_PG, valid_PG, ddof=ddof, axis=1),
        count=masked_count(x_PG, valid_PG, axis=1),
    )


def finite_mask(x: Array, valid: Array | None = None) -> Array:
    """valid & isfinite(x) as bool (valid defaults to all True)."""
    ok = jnp.isfinite(x)
    if valid is not None:
        ok = ok & jnp.broadcast_to(jnp.asarray(valid), x.shape).astype(bool)
    return ok


# ----------------------------------------------------------------------------------
# Log-probabilities and entropy. Always float32, whatever the logits' dtype.


def logprobs_from_logits(logits_BTV: Array, tokens_BT: Array,
                         temperature: float | Array = 1.0) -> Array:
    """log softmax(logits / temperature)[token], computed in float32. Returns `[B, T]`."""
    z = logits_BTV.astype(jnp.float32) / jnp.asarray(temperature, jnp.float32)
    lse = jax.nn.logsumexp(z, axis=-1)
    picked = jnp.take_along_axis(z, tokens_BT[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - lse


def entropy_from_logits(logits_BTV: Array, temperature: float | Array = 1.0) -> Array:
    """Entropy -sum p log p of softmax(logits / temperature), float32. Returns `[B, T]`."""
    z = logits_BTV.astype(jnp.float32) / jnp.asarray(temperature, jnp.float32)
    logp = jax.nn.log_softmax(z, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def chunked_logprobs(hidden_BTD: Array, unembed_DV: Array, tokens_BT: Array, *,
                     temperature: float | Array = 1.0, chunk_size: int = 8192,
                     with_entropy: bool = False):
    """Log-probs (and entropy) of `hidden @ unembed` without materializing `[B, T, V]`.

    The vocabulary is processed in chunks of `chunk_size` columns with an online
    logsumexp (running max and rescaled sum, as in flash attention); each chunk's
    logits are recomputed in the backward pass (`jax.checkpoint`), so forward and
    backward hold `[B, T, chunk_size]` float32 at most. Equal to
    `logprobs_from_logits(hidden @ unembed, tokens, temperature)` up to float32
    rounding. Matmuls accumulate in float32.

    Returns `logp_BT`, or `(logp_BT, entropy_BT)` when `with_entropy`.
    """
    if hidden_BTD.ndim != 3 or unembed_DV.ndim != 2 or tokens_BT.ndim != 2:
        raise ValueError(
            "chunked_logprobs expects hidden [B, T, D], unembed [D, V], tokens [B, T]; got "
            f"{hidden_BTD.shape}, {unembed_DV.shape}, {tokens_BT.shape}")
    if hidden_BTD.shape[-1] != unembed_DV.shape[0]:
        raise ValueError(f"hidden width {hidden_BTD.shape[-1]} != unembed rows "
                         f"{unembed_DV.shape[0]}")
    D, V = unembed_DV.shape
    C = max(1, min(int(chunk_size), V))
    n = -(-V // C)
    inv_t = 1.0 / jnp.asarray(temperature, jnp.float32)
    W = jnp.pad(unembed_DV, ((0, 0), (0, n * C - V)))        # [D, n*C]
    W = W.reshape(D, n, C).transpose(1, 0, 2)                 # [n, D, C]
    col = jnp.arange(C)

    def chunk_logits(w_DC):
        return jnp.einsum("btd,dc->btc", hidden_BTD, w_DC,
                          preferred_element_type=jnp.float32) * inv_t

    # The running max starts at chunk 0's max (no infinities anywhere); the scan then
    # visits every chunk, chunk 0 included, rescaling the sums as the max grows.
    z0 = chunk_logits(W[0])
    m0 = jax.lax.stop_gradient(jnp.max(jnp.where(col < V, z0, jnp.finfo(jnp.float32).min), -1))
    zeros = jnp.zeros_like(m0)

    @jax.checkpoint
    def body(carry, inp):
        m, s, s1 = carry
        i, w_DC = inp
        z = chunk_logits(w_DC)
        ok = (i * C + col) < V
        m_new = jax.lax.stop_gradient(
            jnp.maximum(m, jnp.max(jnp.where(ok, z, jnp.finfo(jnp.float32).min), -1)))
        scale = jnp.exp(m - m_new)
        e = jnp.where(ok, jnp.exp(z - m_new[..., None]), 0.0)
        s = s * scale + jnp.sum(e, -1)
        s1 = s1 * scale + jnp.sum(jnp.where(ok, e * z, 0.0), -1)
        return (m_new, s, s1), None

    (m, s, s1), _ = jax.lax.scan(body, (m0, zeros, zeros), (jnp.arange(n), W))
    lse = m + jnp.log(s)
    w_tok = jnp.take(unembed_DV, tokens_BT.astype(jnp.int32), axis=1)  # [D, B, T]
    picked = jnp.einsum("btd,dbt->bt", hidden_BTD, w_tok,
                        preferred_element_type=jnp.float32) * inv_t
    logp = picked - lse
    if not with_entropy:
        return logp
    return logp, lse - s1 / s
