"""The pytrees that flow through an RL iteration: `Rollout` and `Batch`.

Dimension letters (DESIGN.md): B rows of the flat batch, P prompts, G samples per
prompt, Lp prompt tokens, T completion tokens, C reward components.

Group layout: B = P * G and row `p * G + g` of every `[B, ...]` array is sample g of
prompt p, so `x_BT.reshape(P, G, T)` recovers the groups and `rewards_PG.reshape(B)`
lines up with the rows.

Token layout: prompts are left-padded to Lp (real tokens flush right, so every row's
generation starts at column Lp), completions right-padded to T. Masks are bool and
mark real tokens.

Both classes are `flax.struct` dataclasses (immutable pytrees; `group_size` is static
metadata). Build them with `.create(...)`, which converts dtypes and validates every
shape, naming the offending field; the plain constructor does no checks so that
jax transformations can rebuild the pytree freely.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax.numpy as jnp
import numpy as np


class FinishReason(enum.IntEnum):
    """Why a sampled completion ended (stored as int32 per row)."""
    STOP = 0     # a stop token was produced (included in the completion)
    LENGTH = 1   # max_new_tokens reached without a stop token (truncated)


# Each spec: field -> (dimension letters, dtype kind). Kinds: "int" (cast to int32),
# "bool" (bool or integer 0/1, cast to bool), "float" (cast to float32).
_Spec = Mapping[str, tuple[tuple[str, ...], str]]


def _convert(owner: str, name: str, value: Any, kind: str):
    arr = jnp.asarray(value)
    dt = arr.dtype
    if kind == "int":
        if not jnp.issubdtype(dt, jnp.integer):
            raise TypeError(f"{owner}.{name}: expected an integer array, got dtype {dt}")
        return arr.astype(jnp.int32)
    if kind == "bool":
        if dt != jnp.bool_ and not jnp.issubdtype(dt, jnp.integer):
            raise TypeError(f"{owner}.{name}: expected a bool mask, got dtype {dt}")
        if dt != jnp.bool_ and not bool(jnp.all((arr == 0) | (arr == 1))):
            raise ValueError(f"{owner}.{name}: integer mask must hold only 0 and 1")
        return arr.astype(bool)
    if kind == "float":
        if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
            raise TypeError(f"{owner}.{name}: expected a float array, got dtype {dt}")
        return arr.astype(jnp.float32)
    raise AssertionError(kind)


def validate_fields(owner: str, spec: _Spec, values: Mapping[str, Any], dims: dict[str, int]):
    """Converts `values` per `spec`, binding dimension letters in `dims` as it goes.

    A letter seen for the first time takes the field's size; a later mismatch raises a
    ValueError naming the field, the expected shape (with letters) and the actual one.
    """
    out = {}
    for name, (letters, kind) in spec.items():
        value = values.get(name)
        if value is None:
            out[name] = None
            continue
        arr = _convert(owner, name, value, kind)
        want = "[" + ", ".join(f"{k}={dims[k]}" if k in dims else k for k in letters) + "]"
        if arr.ndim != len(letters):
            raise ValueError(f"{owner}.{name}: expected shape {want}, got {tuple(arr.shape)}")
        for k, n in zip(letters, arr.shape):
            if dims.setdefault(k, n) != n:
                raise ValueError(
                    f"{owner}.{name}: expected shape {want}, got {tuple(arr.shape)} "
                    f"(dimension {k} is {dims[k]} elsewhere)")
        out[name] = arr
    return out


_ROLLOUT_SPEC: _Spec = {
    "prompt_tokens": (("B", "Lp"), "int"),
    "prompt_mask": (("B", "Lp"), "bool"),
    "completion_tokens": (("B", "T"), "int"),
    "completion_mask": (("B", "T"), "bool"),
    "logprobs": (("B", "T"), "float"),
    "sampling_logprobs": (("B", "T"), "float"),
    "finish_reason": (("B",), "int"),
    "rewards": (("P", "G"), "float"),
    "valid": (("P", "G"), "bool"),
    "reward_components": (("C", "P", "G"), "float"),
}


@flax.struct.dataclass
class Rollout:
    """Sampled completions of P prompts x G samples, with their rewards.

    Fields (B = P * G rows, row p*G+g = sample g of prompt p):
      prompt_tokens      int32   [B, Lp]  left-padded prompt tokens
      prompt_mask        bool    [B, Lp]  real prompt tokens
      completion_tokens  int32   [B, T]   sampled tokens, right-padded
      completion_mask    bool    [B, T]   real completion tokens (stop token included)
      logprobs           float32 [B, T]   log pi(token) of the sampling policy at
                                          temperature 1 (the "old" log-probs of PPO)
      sampling_logprobs  float32 [B, T]   log-prob under the distribution actually
                                          sampled from (temperature, top-k, top-p)
      finish_reason      int32   [B]      `FinishReason` per row
      rewards            float32 [P, G]   scalar reward per sample
      valid              bool    [P, G]   samples that count (False: excluded from
                                          statistics, advantage 0)
      reward_components  float32 [C, P, G] or None: per-component rewards (BNPO's
                                          decomposition); rewards is their total
      group_size         static int G
    """
    prompt_tokens: Any
    prompt_mask: Any
    completion_tokens: Any
    completion_mask: Any
    logprobs: Any
    sampling_logprobs: Any
    finish_reason: Any
    rewards: Any
    valid: Any
    reward_components: Any = None
    group_size: int = flax.struct.field(pytree_node=False, default=1)

    @classmethod
    def create(cls, *, group_size: int, prompt_tokens, prompt_mask, completion_tokens,
               completion_mask, logprobs, rewards, finish_reason=None,
               sampling_logprobs=None, valid=None, reward_components=None) -> Rollout:
        """Validating constructor. Defaults: `sampling_logprobs = logprobs`;
        `finish_reason` all STOP; `valid` all True."""
        if not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise ValueError(f"Rollout.group_size: expected a positive int, got {group_size!r}")
        values = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask,
                      completion_tokens=completion_tokens, completion_mask=completion_mask,
                      logprobs=logprobs, sampling_logprobs=sampling_logprobs,
                      finish_reason=finish_reason, rewards=rewards, valid=valid,
                      reward_components=reward_components)
        for name in ("prompt_tokens", "prompt_mask", "completion_tokens", "completion_mask",
                     "logprobs", "rewards"):
            if values[name] is None:
                raise ValueError(f"Rollout.{name} is required")
        dims = {"G": int(group_size)}
        out = validate_fields("Rollout", _ROLLOUT_SPEC, values, dims)
        if dims["B"] != dims["P"] * dims["G"]:
            raise ValueError(
                f"Rollout: B={dims['B']} rows but rewards are [P={dims['P']}, G={dims['G']}]; "
                "the flat batch must hold P * G rows (row p*G+g = sample g of prompt p)")
        if out["sampling_logprobs"] is None:
            out["sampling_logprobs"] = out["logprobs"]
        if out["finish_reason"] is None:
            out["finish_reason"] = jnp.full((dims["B"],), FinishReason.STOP, jnp.int32)
        if out["valid"] is None:
            out["valid"] = jnp.ones((dims["P"], dims["G"]), bool)
        return cls(**out, group_size=int(group_size))

    @property
    def num_prompts(self) -> int:
        return self.rewards.shape[0]

    @property
    def lengths(self):
        """int32 [B]: number of real completion tokens per row."""
        return jnp.sum(self.completion_mask, axis=-1, dtype=jnp.int32)

    def grouped(self, x_B):
        """Reshape a per-row array `[B, ...]` to `[P, G, ...]`."""
        return x_B.reshape((self.num_prompts, self.group_size) + x_B.shape[1:])


_BATCH_SPEC: _Spec = {
    "prompt_tokens": (("B", "Lp"), "int"),
    "prompt_mask": (("B", "Lp"), "bool"),
    "completion_tokens": (("B", "T"), "int"),
    "completion_mask": (("B", "T"), "bool"),
    "advantages": (("B", "T"), "float"),
    "old_logprobs": (("B", "T"), "float"),
    "ref_logprobs": (("B", "T"), "float"),
    "rewards": (("B",), "float"),
    "valid": (("B",), "bool"),
    "levels": (("B",), "int"),
    "loss_mask": (("B", "T"), "bool"),
}


@flax.struct.dataclass
class Batch:
    """What one policy update consumes: token-level advantages and the log-probs the
    loss compares against. Row layout as in `Rollout`.

      prompt_tokens      int32   [B, Lp]  left-padded prompts
      prompt_mask        bool    [B, Lp]
      completion_tokens  int32   [B, T]
      completion_mask    bool    [B, T]   the loss mask
      advantages         float32 [B, T]   token-level advantages (sequence advantages
                                          broadcast with `rlx.advantages.to_tokens`)
      old_logprobs       float32 [B, T]   log pi_old (the sampler's policy log-probs)
      ref_logprobs       float32 [B, T] or None: log pi_ref for a KL term
      rewards            float32 [B] or None: scalar reward per row (group losses: DisCO, DRPO)
      valid              bool    [B] or None: rows that count (group losses)
      levels             int32   [B] or None: preference level per row (TRPA)
      loss_mask          bool    [B, T] or None: tokens the loss counts, when they are
                                          a subset of the completion (SPO's probability
                                          mask); the forward always sees completion_mask
    """
    prompt_tokens: Any
    prompt_mask: Any
    completion_tokens: Any
    completion_mask: Any
    advantages: Any
    old_logprobs: Any
    ref_logprobs: Any = None
    rewards: Any = None
    valid: Any = None
    levels: Any = None
    loss_mask: Any = None

    @classmethod
    def create(cls, *, prompt_tokens, prompt_mask, completion_tokens, completion_mask,
               advantages, old_logprobs, ref_logprobs=None, rewards=None, valid=None,
               levels=None, loss_mask=None) -> Batch:
        values = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask,
                      completion_tokens=completion_tokens, completion_mask=completion_mask,
                      advantages=advantages, old_logprobs=old_logprobs,
                      ref_logprobs=ref_logprobs, rewards=rewards, valid=valid, levels=levels,
                      loss_mask=loss_mask)
        for name, v in values.items():
            if v is None and name not in ("ref_logprobs", "rewards", "valid", "levels", "loss_mask"):
                raise ValueError(f"Batch.{name} is required")
        return cls(**validate_fields("Batch", _BATCH_SPEC, values, {}))

    @property
    def batch_size(self) -> int:
        return self.completion_tokens.shape[0]
