"""Trainer log-probs of completions given left-padded prompts (the RL update's forward)."""

from __future__ import annotations

import jax.numpy as jnp

from rlx import ops
from rlx.models.config import ModelConfig
from rlx.models.transformer import hidden_states, logits_from_hidden, unembed_matrix

# `vocab_chunk=-1` (auto): vocabularies at least this large get chunked log-probs. Below
# it the [B, T, V] float32 logits of a micro-batch are small (V = 32k, 4k tokens: 0.5 GiB
# per row) and one matmul is faster; Qwen (152k) and Llama-3 (128k) vocabularies are chunked.
AUTO_VOCAB_CHUNK_FROM = 32768
AUTO_VOCAB_CHUNK = 8192


def resolve_vocab_chunk(vocab_chunk: int | None, vocab_size: int) -> int:
    """A `vocab_chunk` setting with -1 (auto) resolved for a vocabulary size; 0 = off."""
    if vocab_chunk is None:
        return 0
    if vocab_chunk < 0:
        return AUTO_VOCAB_CHUNK if vocab_size >= AUTO_VOCAB_CHUNK_FROM else 0
    return int(vocab_chunk)


def token_logprobs(params, cfg: ModelConfig, h_BTD, tokens_BT, mask_BT, *, temperature: float = 1.0,
                   vocab_chunk: int | None = None, with_entropy: bool = False):
    """log softmax(h @ unembed / temperature)[token] (float32), 0 where the mask is False;
    with `with_entropy` also the entropy of each predicted distribution.

    `vocab_chunk=None` (or 0) materializes the float32 logits [B, T, V]; an int uses
    `rlx.ops.chunked_logprobs` (vocabulary chunks with an online logsumexp); -1 chooses
    by vocabulary size (`resolve_vocab_chunk`).
    """
    mask = mask_BT.astype(bool)
    vocab_chunk = resolve_vocab_chunk(vocab_chunk, cfg.vocab_size)
    if vocab_chunk:
        out = ops.chunked_logprobs(h_BTD, unembed_matrix(params, cfg).astype(cfg.dtype), tokens_BT,
                                   temperature=temperature, chunk_size=int(vocab_chunk), with_entropy=with_entropy)
        logp, ent = out if with_entropy else (out, None)
    else:
        logits = logits_from_hidden(params, cfg, h_BTD)
        logp = ops.logprobs_from_logits(logits, tokens_BT, temperature)
        ent = ops.entropy_from_logits(logits, temperature) if with_entropy else None
    logp = jnp.where(mask, logp, 0.0)
    return (logp, jnp.where(mask, ent, 0.0)) if with_entropy else logp


def completion_logprobs(params, cfg: ModelConfig, prompt_tokens_BLp, prompt_mask_BLp, completion_tokens_BT,
                        completion_mask_BT, *, temperature: float = 1.0, vocab_chunk: int | None = None,
                        with_entropy: bool = False):
    """float32 log pi(y_t | prompt, y_<t) [B, T] for every completion token; 0 where masked.

    Prompts are left-padded (real tokens flush right, so the last prompt token sits at
    column Lp - 1), completions right-padded; the hidden state at column Lp - 1 + t
    predicts completion token t. Positions count real tokens (cumsum of the mask − 1).
    `vocab_chunk` (an int) avoids materializing the [B, T, V] float32 logits
    (`rlx.ops.chunked_logprobs`). With `with_entropy`, returns (logp_BT, entropy_BT):
    the entropy of the full next-token distribution at `temperature`.
    """
    if prompt_tokens_BLp.ndim != 2 or prompt_mask_BLp.shape != prompt_tokens_BLp.shape:
        raise ValueError(f"completion_logprobs: prompt_tokens / prompt_mask must be matching [B, Lp], got "
                         f"{prompt_tokens_BLp.shape} and {prompt_mask_BLp.shape}")
    B, Lp = prompt_tokens_BLp.shape
    if (completion_tokens_BT.ndim != 2 or completion_tokens_BT.shape[0] != B
            or completion_mask_BT.shape != completion_tokens_BT.shape):
        raise ValueError(f"completion_logprobs: completion_tokens / completion_mask must be matching [B={B}, T], "
                         f"got {completion_tokens_BT.shape} and {completion_mask_BT.shape}")
    T = completion_tokens_BT.shape[1]
    tokens = jnp.concatenate([prompt_tokens_BLp, completion_tokens_BT], axis=1)
    mask = jnp.concatenate([prompt_mask_BLp.astype(bool), completion_mask_BT.astype(bool)], axis=1)
    h = hidden_states(params, cfg, tokens, attention_mask_BL=mask)[:, Lp - 1:Lp - 1 + T]
    return token_logprobs(params, cfg, h, completion_tokens_BT, completion_mask_BT, temperature=temperature,
                          vocab_chunk=vocab_chunk, with_entropy=with_entropy)
