"""Trainer log-probs of completions given left-padded prompts (the RL update's forward)."""

from __future__ import annotations

import jax.numpy as jnp

from rlx import ops
from rlx.models.config import ModelConfig
from rlx.models.transformer import hidden_states, logits_from_hidden, unembed_matrix


def completion_logprobs(params, cfg: ModelConfig, prompt_tokens_BLp, prompt_mask_BLp, completion_tokens_BT,
                        completion_mask_BT, *, temperature: float = 1.0, vocab_chunk: int | None = None,
                        with_entropy: bool = False):
    """float32 log pi(y_t | prompt, y_<t) for every completion token; 0 where masked.

    Prompts are left-padded (real tokens flush right at column Lp - 1), completions
    right-padded; the hidden state at column Lp - 1 + t predicts completion token t.
    `vocab_chunk` (an int) computes log-probs (and entropy) without materializing the
    `[B, T, V]` float32 logits (`rlx.ops.chunked_logprobs`). With `with_entropy`,
    returns (logp_BT, entropy_BT) — the entropy of the full next-token distribution.
    """
    Lp = prompt_tokens_BLp.shape[1]
    T = completion_tokens_BT.shape[1]
    tokens = jnp.concatenate([prompt_tokens_BLp, completion_tokens_BT], axis=1)
    mask = jnp.concatenate([prompt_mask_BLp.astype(bool), completion_mask_BT.astype(bool)], axis=1)
    h = hidden_states(params, cfg, tokens, attention_mask_BL=mask)[:, Lp - 1:Lp - 1 + T]
    cmask = completion_mask_BT.astype(bool)
    if vocab_chunk:
        out = ops.chunked_logprobs(h, unembed_matrix(params, cfg).astype(cfg.dtype), completion_tokens_BT,
                                   temperature=temperature, chunk_size=int(vocab_chunk),
                                   with_entropy=with_entropy)
        logp, ent = out if with_entropy else (out, None)
    else:
        logits = logits_from_hidden(params, cfg, h)
        logp = ops.logprobs_from_logits(logits, completion_tokens_BT, temperature)
        ent = ops.entropy_from_logits(logits, temperature) if with_entropy else None
    logp = jnp.where(cmask, logp, 0.0)
    if with_entropy:
        return logp, jnp.where(cmask, ent, 0.0)
    return logp
