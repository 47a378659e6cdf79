"""SPO-chain: cutpoint segments and chain Monte-Carlo advantages.

Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL
for Large Language Models" (Guo et al. 2025); official code
github.com/AIFrameResearch/SPO. Everything below follows that code
(`src/treetune/episode_generators/math_episode_generator_with_mc_advantages.py`:
cutpoints in `_create_value_estimation_requests`, advantages in
`_compute_token_advantages`, MC values in `_compute_mc_value`; whitening and the
probability mask in `src/treetune/trainers/ppo_trainer.py` / `trainers/utils.py`).

Pipeline (what a sampler must provide, B response rows, T tokens, S = num_cuts):

1. `spo_cutpoints(old_logp_BT, mask_BT, num_cuts=S)`: the cut positions `[B, S]`.
   `old_logp_BT` are the old policy's log-probs of the sampled tokens at the sampling
   temperature (the official code recomputes them with the actor, logits / 0.6).
2. For every valid cut (b, s): K Monte-Carlo continuations from the state
   "prompt + response[b, :positions[b, s] + 1]" (prefix of `positions + 1` response
   tokens; 0 = the prompt alone). V = mean of their rewards, a truncated continuation
   (finish reason "length") scoring the unfinished-response penalty 0 (official
   configs: K = 9, e.g. `episode_generators/9rolls.jsonnet`, Qwen2.5-1.5B MATH; K = 4
   for Qwen2.5-0.5B GSM8K; temperature 0.6).
3. `spo_chain(values_BS, valid_BS, rewards_B, positions_BS, mask_BT, old_logp_BT)`:
   token advantages `[B, T]`, `rewards_B` the response's own final reward (0 if it
   was unfinished or truncated).

The policy loss must then use `rlx.losses.spo_probability_mask(old_logp, mask)` as
its token mask (official: `action_mask & (exp(old_logp) < 0.9)`), so that masked
tokens leave the loss denominators too, not only get advantage 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlx import ops
from rlx.advantages.core import as_float, as_mask, check_shape, count_metric, jitted, register
from rlx.losses.regularizers import spo_probability_mask

Array = jax.Array

THRESHOLD = 0.9      # official: `response_probs < 0.9` (cutpoints), `exp(old_logp) < 0.9` (mask)
INTERVAL = 5         # official `cutpoint_interval` default
EPS = 1e-8           # official `masked_whiten`: (x - mean) * rsqrt(var + 1e-8)


class Cutpoints(NamedTuple):
    """SPO-chain cutpoints of a batch, in fixed-size arrays.

    positions    int32 [B, S]: cut c = the state after response token c (-1: the
                 prompt state); valid cuts come first, increasing; invalid slots hold -1.
    valid        bool  [B, S]
    segment_ids  int32 [B, T]: j = number of valid cuts c < t; token t lies in the
                 segment (c_{j-1}, c_j] (c_S = end of the response). A new segment
                 starts at every kept low-probability token. Padding: meaningless.
    """
    positions: Array
    valid: Array
    segment_ids: Array


def _check_tokens(name: str, old_logp_BT, mask_BT) -> tuple[Array, Array]:
    logp = as_float(name, "old_logp", old_logp_BT)
    if logp.ndim != 2:
        raise ValueError(f"{name}: old_logp must be [B, T], got shape {logp.shape}")
    return logp, as_mask(name, "mask", mask_BT, logp.shape)


@jitted("num_cuts", "interval", "threshold")
def spo_cutpoints(old_logp_BT, mask_BT, *, num_cuts: int, interval: int = INTERVAL,
                  threshold: float = THRESHOLD) -> tuple[Cutpoints, dict]:
    """SPO-chain cutpoint partition: C = {t - 1 : p_t < threshold}, every k-th kept.

    Official (`_create_value_estimation_requests`): `cutpoints = np.where(probs <
    0.9)[0] - 1` then `cutpoints[::cutpoint_interval]`, i.e. the candidates in token
    order, the 1st kept, then the (1 + k)-th, (1 + 2k)-th, ... The cut c = t - 1 is the
    state *before* the low-probability token t, so its value tells how good the
    state is before the uncertain choice; c = -1 (the prompt) is a cut exactly when
    the first response token is a low-probability one (it is then candidate 0, always
    kept). Only real tokens (mask) are candidates; p_t = threshold is not a candidate.

    Defaults: threshold 0.9, interval 5 (official `cutpoint_interval`). The official
    list is unbounded; so is rlx's with `num_cuts=0`: S = ceil(T / interval), the most
    cuts T tokens can give (one static shape per width T, nothing ever dropped). With
    `num_cuts` > 0 rlx keeps the first `num_cuts` (static S) and reports the rest in
    `metrics["dropped_cutpoints"]`; the chain then ends at the last kept cut (its final
    segment gets R - V(c_last)), as the official code's commented-out `cutpoints[:10]`
    variant would.

    Returns (Cutpoints, metrics): metrics `cutpoints` (mean valid cuts per row),
    `dropped_cutpoints` (total beyond S), `prompt_cutpoints` (rows whose prompt is a cut).
    """
    name = "spo_cutpoints"
    if not isinstance(num_cuts, int) or num_cuts < 0:
        raise ValueError(f"{name}: num_cuts must be an int >= 0 (0 = no cap), got {num_cuts!r}")
    if not isinstance(interval, int) or interval < 1:
        raise ValueError(f"{name}: interval must be a positive int, got {interval!r}")
    if not 0 < threshold <= 1:
        raise ValueError(f"{name}: threshold must be in (0, 1], got {threshold!r}")
    logp, mask = _check_tokens(name, old_logp_BT, mask_BT)
    B, T = logp.shape
    S = num_cuts or -(-T // interval)
    cand = mask & (jnp.exp(logp) < threshold)
    rank = jnp.cumsum(cand, axis=1, dtype=jnp.int32) - 1       # candidate index per token
    chosen = cand & (rank % interval == 0)
    slot = rank // interval
    kept = chosen & (slot < S)
    t = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32)[None, :], (B, T))
    rows = jnp.broadcast_to(jnp.arange(B, dtype=jnp.int32)[:, None], (B, T))
    positions = jnp.full((B, S), -1, jnp.int32).at[rows, jnp.where(kept, slot, S)].set(
        t - 1, mode="drop")
    n = jnp.sum(kept, axis=1, dtype=jnp.int32)
    valid = jnp.arange(S, dtype=jnp.int32)[None, :] < n[:, None]
    seg = jnp.cumsum(kept, axis=1, dtype=jnp.int32)
    metrics = {
        "cutpoints": jnp.mean(n.astype(jnp.float32)),
        "dropped_cutpoints": count_metric(chosen & ~kept),
        "prompt_cutpoints": count_metric(kept[:, 0]),
    }
    return Cutpoints(positions, valid, seg), metrics


def segment_ids_from_cuts(positions_BS: Array, valid_BS: Array, T: int) -> Array:
    """int32 [B, T]: number of valid cuts c < t (cuts outside [-1, T-1] are clipped)."""
    B = positions_BS.shape[0]
    start = jnp.clip(positions_BS, -1, T - 1) + 1                        # first token after the cut
    marks = jnp.zeros((B, T + 1), jnp.int32).at[
        jnp.broadcast_to(jnp.arange(B)[:, None], start.shape), start].add(valid_BS.astype(jnp.int32))
    return jnp.cumsum(marks[:, :T], axis=1, dtype=jnp.int32)


def probability_masked_advantages(adv_BT: Array, mask_BT: Array, old_logp_BT: Array, *,
                                  threshold: float = THRESHOLD, whiten: bool = True,
                                  eps: float = EPS) -> tuple[Array, Array]:
    """SPO's last step: probability mask, then whitening over the kept tokens.

    keep = mask & exp(old_logp) < threshold (`rlx.losses.spo_probability_mask`, the
    official `prob_mask`). With `whiten`, A' = (A - mean) * rsqrt(var + eps), mean and
    unbiased var over the kept tokens (official `masked_whiten(adv, mask,
    logprobs=old_logp, unbiased_variance=True)`); A' = 0 outside keep. Returns (A', keep).

    Differences from the official code: it whitens each training micro-batch with
    statistics all-reduced across devices; this whitens over the arrays given (call
    it per minibatch to reproduce that). Official whitened values on masked-out
    tokens are nonzero but never reach the loss (masked there); rlx writes 0. With
    one kept token the official variance is 0/0 (NaN); rlx returns 0 (`ops.masked_whiten`).
    """
    keep = spo_probability_mask(old_logp_BT, mask_BT, threshold=threshold)
    adv_BT = jnp.asarray(adv_BT)
    if whiten:
        return ops.masked_whiten(adv_BT, keep, ddof=1, eps=eps), keep
    return jnp.where(keep, adv_BT, 0).astype(adv_BT.dtype), keep


@register()
@jitted("threshold", "whiten")
def spo_chain(values, cut_valid, rewards, cut_positions, mask, old_logp, *,
              threshold: float = THRESHOLD, whiten: bool = True, eps: float = EPS
              ) -> tuple[Array, dict]:
    """SPO-chain token advantages from Monte-Carlo values at cutpoints.

    Paper: "Segment Policy Optimization" (SPO-chain); official
    `MathEpisodeGeneratorWithMCAdvantages._compute_token_advantages`. With cuts
    c_0 < c_1 < ... < c_{n-1} (the state after token c; c = -1 the prompt), values
    V(c_k) and final reward R:

        A_t = V(c_k) - V(c_{k-1})   for t in (c_{k-1}, c_k], k >= 1
        A_t = R - V(c_{n-1})        for t in (c_{n-1}, end]   (the last segment)
        A_t = 0                     for t in [0, c_0]  (no baseline before the first
                                    cut: official `base is None -> 0`; empty when
                                    c_0 = -1); no cut at all: every A_t = 0.

    Then the probability mask and whitening (`probability_masked_advantages`):
    A = 0 where p_old >= threshold, whitening over the other valid tokens (unbiased
    var, eps 1e-8). The official generator zeroes A where p > 0.9 *before* the trainer
    whitens, but its whitening statistics and loss use only p < 0.9 tokens, so the
    order does not matter.

    Args (B rows, S cut slots, T tokens):
      values        float [B, S]  V at each cut (mean of K continuation rewards)
      cut_valid     bool  [B, S]  real cuts (`Cutpoints.valid`)
      rewards       float [B]     final reward R of each response
      cut_positions int   [B, S]  `Cutpoints.positions` (valid cuts increasing, in
                                  [-1, length - 2]; their slot order need not be a prefix)
      mask          bool  [B, T]  response tokens
      old_logp      float [B, T]  old log-probs (sampling temperature) for the mask
      threshold 0.9, whiten True, eps 1e-8 (official).
    rlx guard: a non-finite V or R zeroes the segments that use it (counted in
    `metrics["nonfinite_segments"]`).

    Returns (advantages [B, T], metrics): `prob_masked_tokens` (valid tokens with
    p >= threshold), `cutpoints` (mean valid cuts per row), `nonfinite_segments`.
    """
    name = "spo_chain"
    logp, tok_mask = _check_tokens(name, old_logp, mask)
    B, T = logp.shape
    v = as_float(name, "values", values)
    if v.ndim != 2 or v.shape[0] != B:
        raise ValueError(f"{name}: values must be [B={B}, S], got shape {v.shape}")
    S = v.shape[1]
    ok = as_mask(name, "cut_valid", cut_valid, (B, S))
    r = as_float(name, "rewards", rewards)
    check_shape(name, "rewards", r, (B,))
    pos = jnp.asarray(cut_positions)
    if not jnp.issubdtype(pos.dtype, jnp.integer):
        raise TypeError(f"{name}: cut_positions must be an integer array, got dtype {pos.dtype}")
    check_shape(name, "cut_positions", pos, (B, S))
    pos = pos.astype(jnp.int32)

    # Valid cuts first, in increasing position (invalid slots last).
    order = jnp.lexsort((pos, ~ok), axis=-1)
    v_s = jnp.take_along_axis(v, order, axis=-1)
    n = jnp.sum(ok, axis=1, dtype=jnp.int32)
    # Chain of values: V(c_0), ..., V(c_{n-1}), R, (padding)  -> [B, S + 1].
    idx = jnp.arange(S + 1, dtype=jnp.int32)[None, :]
    v_pad = jnp.concatenate([v_s, jnp.zeros((B, 1), v_s.dtype)], axis=1)
    chain = jnp.where(idx < n[:, None], v_pad, jnp.broadcast_to(r[:, None], (B, S + 1)))
    diff = chain[:, 1:] - chain[:, :-1]                                   # segment j >= 1
    seg_adv = jnp.concatenate([jnp.zeros((B, 1), diff.dtype), diff], axis=1)   # segment 0: 0
    finite = jnp.isfinite(seg_adv)
    seg_adv = jnp.where(finite, seg_adv, 0)
    seg = segment_ids_from_cuts(pos, ok, T)
    adv = jnp.take_along_axis(seg_adv, jnp.clip(seg, 0, S), axis=1)
    out, keep = probability_masked_advantages(adv, tok_mask, logp, threshold=threshold,
                                              whiten=whiten, eps=eps)
    used = (idx <= n[:, None]) & (idx >= 1)                                # segments 1..n
    metrics = {
        "prob_masked_tokens": count_metric(tok_mask & ~keep),
        "cutpoints": jnp.mean(n.astype(jnp.float32)),
        "nonfinite_segments": count_metric(used & ~finite),
    }
    return out.astype(v.dtype), metrics
