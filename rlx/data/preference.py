"""Preference data: pair and ranking batches, their tokenization, sequence log-probs.

Dimension letters: N pairs (or lists), K responses per list, Lp prompt tokens, T
response tokens. Layout as in rlx/types.py: prompts LEFT-padded to Lp (real tokens flush
right, so every response starts at column Lp), responses RIGHT-padded to T; masks are
bool and mark real tokens. Both batch classes are `flax.struct` dataclasses; build them
with `.create(...)`, which converts dtypes and validates every shape, naming the
offending field (the plain constructor does no checks, for jax transformations).

Truncation (`tokenize_pairs`, `tokenize_rankings`): a prompt longer than Lp keeps its
LAST Lp tokens (the end, next to the response — TRL's `keep_end`); a response longer
than T keeps its FIRST T tokens (an appended EOS is then cut off: a truncated response
has no EOS, so the caller can tell it was truncated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlx import ops
from rlx.types import validate_fields

Array = jax.Array

_PAIR_SPEC = {
    "prompt_tokens": (("N", "Lp"), "int"),
    "prompt_mask": (("N", "Lp"), "bool"),
    "chosen_tokens": (("N", "T"), "int"),
    "chosen_mask": (("N", "T"), "bool"),
    "rejected_tokens": (("N", "T"), "int"),
    "rejected_mask": (("N", "T"), "bool"),
    "valid": (("N",), "bool"),
}


@flax.struct.dataclass
class PreferenceBatch:
    """N preference pairs (prompt, chosen y_w, rejected y_l).

      prompt_tokens    int32 [N, Lp]  left-padded prompts
      prompt_mask      bool  [N, Lp]
      chosen_tokens    int32 [N, T]   right-padded preferred responses
      chosen_mask      bool  [N, T]
      rejected_tokens  int32 [N, T]   right-padded dispreferred responses
      rejected_mask    bool  [N, T]
      valid            bool  [N]      pairs that count (False: padding pairs)
    """
    prompt_tokens: Any
    prompt_mask: Any
    chosen_tokens: Any
    chosen_mask: Any
    rejected_tokens: Any
    rejected_mask: Any
    valid: Any

    @classmethod
    def create(cls, *, prompt_tokens, prompt_mask, chosen_tokens, chosen_mask, rejected_tokens,
               rejected_mask, valid=None) -> PreferenceBatch:
        """Validating constructor; `valid` defaults to all True."""
        values = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, chosen_tokens=chosen_tokens,
                      chosen_mask=chosen_mask, rejected_tokens=rejected_tokens,
                      rejected_mask=rejected_mask, valid=valid)
        for name, val in values.items():
            if val is None and name != "valid":
                raise ValueError(f"PreferenceBatch.{name} is required")
        dims: dict[str, int] = {}
        out = validate_fields("PreferenceBatch", _PAIR_SPEC, values, dims)
        if out["valid"] is None:
            out["valid"] = jnp.ones((dims["N"],), bool)
        return cls(**out)

    @property
    def num_pairs(self) -> int:
        return self.chosen_tokens.shape[0]

    def stacked(self):
        """Rows for one forward pass over both responses: (prompt_tokens, prompt_mask,
        completion_tokens, completion_mask), each `[2N, ...]`; rows 0..N−1 are the chosen
        responses, rows N..2N−1 the rejected ones (`split` undoes it)."""
        cat = lambda a, b: jnp.concatenate([a, b], axis=0)  # noqa: E731
        return (cat(self.prompt_tokens, self.prompt_tokens), cat(self.prompt_mask, self.prompt_mask),
                cat(self.chosen_tokens, self.rejected_tokens), cat(self.chosen_mask, self.rejected_mask))

    @staticmethod
    def split(x_2N: Array) -> tuple[Array, Array]:
        """(chosen, rejected) halves of a `[2N, ...]` array laid out as `stacked`."""
        n = x_2N.shape[0]
        if n % 2:
            raise ValueError(f"split: expected an even number of rows [2N, ...], got {n}")
        return x_2N[: n // 2], x_2N[n // 2:]


_RANK_SPEC = {
    "prompt_tokens": (("N", "Lp"), "int"),
    "prompt_mask": (("N", "Lp"), "bool"),
    "response_tokens": (("N", "K", "T"), "int"),
    "response_mask": (("N", "K", "T"), "bool"),
    "scores": (("N", "K"), "float"),
    "ranks": (("N", "K"), "int"),
    "valid": (("N", "K"), "bool"),
}


def ranks_from_scores(scores_NK, valid_NK) -> Array:
    """0-based rank of each response in its list (0 = highest score); invalid responses
    rank after all valid ones; ties keep index order."""
    key = jnp.where(jnp.asarray(valid_NK, bool), -jnp.asarray(scores_NK, jnp.float32), jnp.inf)
    return jnp.argsort(jnp.argsort(key, axis=1, stable=True), axis=1, stable=True).astype(jnp.int32)


@flax.struct.dataclass
class RankingBatch:
    """N prompts with K ranked responses each.

      prompt_tokens    int32   [N, Lp]     left-padded prompts
      prompt_mask      bool    [N, Lp]
      response_tokens  int32   [N, K, T]   right-padded responses
      response_mask    bool    [N, K, T]
      scores           float32 [N, K]      higher is better (reward / label / −rank)
      ranks            int32   [N, K]      0 = best among the valid responses of the list
      valid            bool    [N, K]      real responses (lists may hold fewer than K)
    """
    prompt_tokens: Any
    prompt_mask: Any
    response_tokens: Any
    response_mask: Any
    scores: Any
    ranks: Any
    valid: Any

    @classmethod
    def create(cls, *, prompt_tokens, prompt_mask, response_tokens, response_mask, scores=None,
               ranks=None, valid=None) -> RankingBatch:
        """Validating constructor. Give `scores` or `ranks` (or both): missing ranks are
        derived from scores (`ranks_from_scores`), missing scores are −ranks. `valid`
        defaults to all True; ranks must order the valid responses 0..n−1."""
        values = dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, response_tokens=response_tokens,
                      response_mask=response_mask, scores=scores, ranks=ranks, valid=valid)
        for name in ("prompt_tokens", "prompt_mask", "response_tokens", "response_mask"):
            if values[name] is None:
                raise ValueError(f"RankingBatch.{name} is required")
        if scores is None and ranks is None:
            raise ValueError("RankingBatch: give scores or ranks")
        dims: dict[str, int] = {}
        out = validate_fields("RankingBatch", _RANK_SPEC, values, dims)
        if out["valid"] is None:
            out["valid"] = jnp.ones((dims["N"], dims["K"]), bool)
        if out["ranks"] is None:
            out["ranks"] = ranks_from_scores(out["scores"], out["valid"])
        else:
            n_valid = np.asarray(jnp.sum(out["valid"], axis=1))
            r = np.asarray(out["ranks"])
            v = np.asarray(out["valid"])
            for i in range(r.shape[0]):
                if sorted(r[i][v[i]].tolist()) != list(range(int(n_valid[i]))):
                    raise ValueError(f"RankingBatch.ranks: row {i} must rank its valid responses "
                                     f"0..{int(n_valid[i]) - 1}, got {r[i][v[i]].tolist()}")
        if out["scores"] is None:
            out["scores"] = -out["ranks"].astype(jnp.float32)
        return cls(**out)

    @property
    def num_responses(self) -> int:
        return self.response_tokens.shape[1]

    def flat(self):
        """Rows for one forward pass: (prompt_tokens, prompt_mask, completion_tokens,
        completion_mask), each `[N·K, ...]`; row n·K + k is response k of prompt n."""
        N, K, T = self.response_tokens.shape
        rep = lambda x: jnp.repeat(x, K, axis=0)  # noqa: E731
        return (rep(self.prompt_tokens), rep(self.prompt_mask),
                self.response_tokens.reshape(N * K, T), self.response_mask.reshape(N * K, T))


# ------------------------------------------------------------------------------ tokenization


def _encode(tokenizer, text: str, what: str) -> list[int]:
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected a string, got {type(text).__name__}")
    if hasattr(tokenizer, "encode"):
        ids = tokenizer.encode(text, add_special_tokens=False)
    else:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(i) for i in ids]


def _left(ids: list[int], L: int, pad_id: int):
    ids = ids[-L:] if L > 0 else []
    out = np.full((L,), pad_id, np.int32)
    mask = np.zeros((L,), bool)
    if ids:
        out[L - len(ids):] = ids
        mask[L - len(ids):] = True
    return out, mask


def _right(ids: list[int], T: int, pad_id: int):
    ids = ids[:T]
    out = np.full((T,), pad_id, np.int32)
    mask = np.zeros((T,), bool)
    out[: len(ids)] = ids
    mask[: len(ids)] = True
    return out, mask


def _check_lengths(max_prompt_len: int, max_response_len: int) -> None:
    for name, v in (("max_prompt_len", max_prompt_len), ("max_response_len", max_response_len)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _response(tokenizer, text, what, eos_id, T, pad_id):
    ids = _encode(tokenizer, text, what)
    if eos_id is not None:
        ids = ids + [int(eos_id)]
    if not ids:
        raise ValueError(f"{what} tokenizes to no tokens")
    return _right(ids, T, pad_id)


def tokenize_pairs(tokenizer, prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str], *,
                   max_prompt_len: int, max_response_len: int, pad_id: int,
                   eos_id: int | None = None) -> PreferenceBatch:
    """Tokenizes N (prompt, chosen, rejected) triples into a `PreferenceBatch`.

    `tokenizer`: any HF-style object with `encode(text, add_special_tokens=False)` (or
    `__call__` returning `input_ids`); no special tokens are added except `eos_id`,
    appended to every response when given (chat templates are the caller's job: pass
    the rendered prompt text). Prompts are left-padded to `max_prompt_len`, responses
    right-padded to `max_response_len` with `pad_id`; truncation as in the module
    docstring. An empty response is an error (it has no log-prob to compare).
    """
    _check_lengths(max_prompt_len, max_response_len)
    n = len(prompts)
    if len(chosen) != n or len(rejected) != n:
        raise ValueError("prompts, chosen, rejected must have one length, got "
                         f"{n}, {len(chosen)}, {len(rejected)}")
    if n == 0:
        raise ValueError("tokenize_pairs: no pairs given")
    cols: dict[str, list] = {k: [] for k in _PAIR_SPEC if k != "valid"}
    for i in range(n):
        p, pm = _left(_encode(tokenizer, prompts[i], f"prompts[{i}]"), max_prompt_len, pad_id)
        c, cm = _response(tokenizer, chosen[i], f"chosen[{i}]", eos_id, max_response_len, pad_id)
        r, rm = _response(tokenizer, rejected[i], f"rejected[{i}]", eos_id, max_response_len, pad_id)
        for k, val in zip(cols, (p, pm, c, cm, r, rm)):
            cols[k].append(val)
    return PreferenceBatch.create(**{k: np.stack(v) for k, v in cols.items()})


def tokenize_rankings(tokenizer, prompts: Sequence[str], responses: Sequence[Sequence[str]],
                      scores: Sequence[Sequence[float]], *, max_prompt_len: int, max_response_len: int,
                      pad_id: int, num_responses: int | None = None,
                      eos_id: int | None = None) -> RankingBatch:
    """Tokenizes N prompts with their responses and scores (higher = better) into a
    `RankingBatch` of K = `num_responses` (default: the longest list) responses per
    prompt; shorter lists are padded with invalid responses. Padding and truncation as
    `tokenize_pairs`."""
    _check_lengths(max_prompt_len, max_response_len)
    n = len(prompts)
    if n == 0 or len(responses) != n or len(scores) != n:
        raise ValueError(f"prompts, responses, scores must have one non-zero length, got {n}, "
                         f"{len(responses)}, {len(scores)}")
    K = num_responses or max(len(r) for r in responses)
    toks = np.full((n, K, max_response_len), pad_id, np.int32)
    masks = np.zeros((n, K, max_response_len), bool)
    sc = np.zeros((n, K), np.float32)
    valid = np.zeros((n, K), bool)
    p_toks, p_masks = [], []
    for i in range(n):
        if len(responses[i]) != len(scores[i]):
            raise ValueError(f"responses[{i}] has {len(responses[i])} items but scores[{i}] has "
                             f"{len(scores[i])}")
        if len(responses[i]) > K:
            raise ValueError(f"responses[{i}] has {len(responses[i])} items, more than num_responses={K}")
        p, pm = _left(_encode(tokenizer, prompts[i], f"prompts[{i}]"), max_prompt_len, pad_id)
        p_toks.append(p)
        p_masks.append(pm)
        for k, (text, s) in enumerate(zip(responses[i], scores[i])):
            toks[i, k], masks[i, k] = _response(tokenizer, text, f"responses[{i}][{k}]", eos_id,
                                                max_response_len, pad_id)
            sc[i, k], valid[i, k] = s, True
    return RankingBatch.create(prompt_tokens=np.stack(p_toks), prompt_mask=np.stack(p_masks),
                               response_tokens=toks, response_mask=masks, scores=sc, valid=valid)


def sequence_logps(token_logp_BT: Array, mask_BT: Array, *, average: bool = False) -> Array:
    """Per-sequence log-prob: Σ_t over the mask (average=False) or the masked mean
    (average=True; 0 for an empty row) of the token log-probs. Works on any leading
    shape `[..., T]`; masked positions may hold anything (NaN, −inf)."""
    x = jnp.asarray(token_logp_BT)
    if jnp.shape(mask_BT) != x.shape:
        raise ValueError(f"mask_BT: expected shape {x.shape}, got {jnp.shape(mask_BT)}")
    fn = ops.masked_mean if average else ops.masked_sum
    return fn(x, mask_BT, axis=-1)
