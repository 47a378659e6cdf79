"""DUMP: the distribution-level UCB curriculum over data sources.

Paper: "DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM
Post-training" (Wang et al. 2025). Contract and defaults read from the official code
(github.com/ZhentingWang/DUMP, commit 235e85d, `verl/utils/curriculum_learning.py`
and the caller in `verl/trainer/ppo/ray_trainer.py`):

  * After each training batch, every response contributes its scalar advantage A
    (the official caller takes the mean of the token advantages over the response
    mask; for GRPO that is the response's advantage) to the data source j it came from.
  * μ_j = mean |A| over the last `window` = 300 responses of source j (0 if none).
  * n_j = number of responses of source j seen so far — the TOTAL count, not capped at
    the window (the official `n_samples += n`).
  * N = Σ_j n_j, floored at 1 as in the official code (`max(1, total_samples)`; it only
    matters before any update, when every source has the same score anyway).
  * score s_j = μ_j + c · sqrt(2 ln(N + 1) / (n_j + 1)), c = 1.
  * P = softmax(s / τ), τ = 0.1; a prompt is drawn by picking a source j ~ P, then an
    example of j uniformly (the official `CurriculumSampler.__iter__`).

State is a `flax.struct` pytree of arrays (an Orbax checkpoint saves it); every function
is pure and jit-compatible. rlx differences: non-finite advantages and masked-out
responses are ignored (the official code would put a NaN into μ forever); a batch with
more than `window` responses of one source keeps the last `window` of them in order,
exactly as the official list slicing does; sources with no examples (`sizes_J == 0`)
are never drawn.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlx import ops

Array = jax.Array


@flax.struct.dataclass
class DumpState:
    abs_adv_JW: Array   # float32 [J, W]: ring buffer of the last W |A| per source
    ptr_J: Array        # int32 [J]: next ring slot to write
    count_J: Array      # int32 [J]: n_j, responses seen in total

    @property
    def num_sources(self) -> int:
        return self.abs_adv_JW.shape[0]

    @property
    def window(self) -> int:
        return self.abs_adv_JW.shape[1]


def init(num_sources: int, window: int = 300) -> DumpState:
    """Empty statistics for `num_sources` sources, a window of `window` responses each."""
    if num_sources < 1 or window < 1:
        raise ValueError(f"num_sources and window must be >= 1, got {num_sources}, {window}")
    return DumpState(abs_adv_JW=jnp.zeros((num_sources, window), jnp.float32),
                     ptr_J=jnp.zeros((num_sources,), jnp.int32), count_J=jnp.zeros((num_sources,), jnp.int32))


def update(state: DumpState, source_ids, advantages, mask=None) -> DumpState:
    """Add each response's |advantage| to its source's window, in batch order.

    source_ids: int `[B]` (any shape; flattened), the source of each response, in [0, J).
    advantages: float, same shape — one scalar advantage per response.
    mask: optional bool, same shape; False entries are ignored.
    """
    J, W = state.abs_adv_JW.shape
    src = jnp.asarray(source_ids).reshape(-1)
    adv = jnp.asarray(advantages, jnp.float32).reshape(-1)
    if src.shape != adv.shape:
        raise ValueError(f"source_ids {jnp.shape(source_ids)} and advantages {jnp.shape(advantages)} differ")
    if not jnp.issubdtype(src.dtype, jnp.integer):
        raise TypeError(f"source_ids must be integers, got {src.dtype}")
    if not isinstance(src, jax.core.Tracer):
        s = np.asarray(src)
        if s.size and (s.min() < 0 or s.max() >= J):
            raise ValueError(f"source_ids must be in [0, {J}), got values in [{s.min()}, {s.max()}]")
    valid = jnp.isfinite(adv) & (src >= 0) & (src < J)
    if mask is not None:
        valid = valid & jnp.asarray(mask).reshape(-1).astype(bool)
    src = src.astype(jnp.int32)
    onehot_BJ = (src[:, None] == jnp.arange(J, dtype=jnp.int32)[None, :]) & valid[:, None]
    cum_BJ = jnp.cumsum(onehot_BJ.astype(jnp.int32), axis=0)
    new_J = cum_BJ[-1] if src.shape[0] else jnp.zeros((J,), jnp.int32)
    src_safe = jnp.clip(src, 0, J - 1)
    rank_B = jnp.take_along_axis(cum_BJ, src_safe[:, None], axis=1)[:, 0] - 1    # order within its source
    keep_B = valid & (new_J[src_safe] - rank_B <= W)      # only the last W of a source survive
    pos_B = (state.ptr_J[src_safe] + rank_B) % W
    row_B = jnp.where(keep_B, src_safe, J)                 # row J is out of bounds: dropped
    buf = state.abs_adv_JW.at[row_B, pos_B].set(jnp.abs(adv), mode="drop")
    return DumpState(abs_adv_JW=buf, ptr_J=(state.ptr_J + new_J) % W, count_J=state.count_J + new_J)


def mean_abs_advantage(state: DumpState) -> Array:
    """μ_J: mean |A| over each source's window (0 for a source never updated)."""
    J, W = state.abs_adv_JW.shape
    filled_JW = jnp.arange(W)[None, :] < jnp.minimum(state.count_J, W)[:, None]
    return ops.masked_mean(state.abs_adv_JW, filled_JW, axis=1)


def scores(state: DumpState, c: float = 1.0) -> Array:
    """UCB scores s_J = μ_j + c · sqrt(2 ln(N + 1) / (n_j + 1)), N = max(1, Σ n_j)."""
    n_J = state.count_J.astype(jnp.float32)
    N = jnp.maximum(jnp.sum(n_J), 1.0)
    return mean_abs_advantage(state) + c * jnp.sqrt(2.0 * jnp.log(N + 1.0) / (n_J + 1.0))


def probs(state: DumpState, c: float = 1.0, tau: float = 0.1, sizes_J=None) -> Array:
    """Sampling probabilities softmax(s / τ); sources with sizes_J == 0 get probability 0."""
    logits = scores(state, c) / tau
    if sizes_J is not None:
        logits = jnp.where(jnp.asarray(sizes_J) > 0, logits, -jnp.inf)
    return jax.nn.softmax(logits)


def sample(state: DumpState, key: Array, sizes_J, num: int, c: float = 1.0, tau: float = 0.1,
           ) -> tuple[Array, Array]:
    """Draw `num` prompts: a source j ~ probs, then an example uniformly in [0, sizes_J[j]).

    Returns (source_ids [num] int32, example_ids [num] int32). Each draw is independent
    (with replacement), as in the official sampler.
    """
    sizes_J = jnp.asarray(sizes_J, jnp.int32)
    if sizes_J.shape != (state.num_sources,):
        raise ValueError(f"sizes_J: expected shape ({state.num_sources},), got {sizes_J.shape}")
    k_src, k_ex = jax.random.split(key)
    logits = jnp.where(sizes_J > 0, scores(state, c) / tau, -jnp.inf)
    src = jax.random.categorical(k_src, logits, shape=(num,)).astype(jnp.int32)
    size = sizes_J[src]
    ex = jnp.floor(jax.random.uniform(k_ex, (num,)) * size).astype(jnp.int32)
    return src, jnp.clip(ex, 0, jnp.maximum(size - 1, 0))


def metrics(state: DumpState, c: float = 1.0, tau: float = 0.1) -> dict[str, Array]:
    """Per-source arrays to log: mean |A|, count, score, probability."""
    return {"dump/mean_abs_adv": mean_abs_advantage(state), "dump/count": state.count_J,
            "dump/score": scores(state, c), "dump/prob": probs(state, c, tau)}
