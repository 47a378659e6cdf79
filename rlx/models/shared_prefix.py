"""Shared-prefix forward (Prefix Grouper): a prompt encoded once for all its completions.

Paper: "Prefix Grouper: Efficient GRPO Training through Shared-Prefix Forward". The
repeated-prefix forward runs [prompt, completion_g] for g = 1..G (the prompt G times);
here one row packs [prompt, completion_1, ..., completion_G] with

  * positions: the prompt's 0..n-1, and every completion again from n (restarted);
  * a block attention mask: prompt tokens attend causally to the prompt; tokens of
    completion g attend to the prompt and causally to completion g — never to another
    completion.

Every token then sees exactly the context it sees in its own repeated row, so log-probs
and gradients are identical (up to float rounding), at roughly (Lp + G·T)/(G·(Lp + T))
of the attention-free FLOPs. `tree_attention_mask` generalizes the mask to trees: a
segment attends to itself causally and to all its ancestors.
"""

from __future__ import annotations

import jax.numpy as jnp

from rlx import ops
from rlx.models.config import ModelConfig
from rlx.models.transformer import core, logits_from_hidden, padding_positions


def tree_attention_mask(segment_ids_L, parent_of_S, valid_L):
    """[L, L] bool: token i sees token j iff j <= i, both valid, and j's segment is i's
    segment or one of its ancestors. `parent_of_S[s]` is s's parent segment (−1 for the
    root); segments must be numbered so that parents come before children."""
    S = parent_of_S.shape[0]
    anc = jnp.eye(S, dtype=bool)                     # anc[s, a]: a is s or an ancestor of s
    cur = jnp.arange(S)
    for _ in range(S):
        cur = jnp.where(cur >= 0, parent_of_S[jnp.maximum(cur, 0)], -1)
        anc = anc | ((cur[:, None] == jnp.arange(S)[None, :]) & (cur[:, None] >= 0))
    seg_ok = anc[segment_ids_L[:, None], segment_ids_L[None, :]]
    L = segment_ids_L.shape[0]
    causal = jnp.arange(L)[None, :] <= jnp.arange(L)[:, None]
    return causal & seg_ok & valid_L[:, None] & valid_L[None, :]


def shared_prefix_logprobs(params, cfg: ModelConfig, prompt_tokens_L, prompt_mask_L, completions_GT,
                           completion_mask_GT, *, temperature: float = 1.0):
    """log pi(completion tokens) [G, T] for one left-padded prompt and its G completions,
    computed in a single packed row. Equal to `completion_logprobs` on the repeated batch."""
    G, T = completions_GT.shape
    Lp = prompt_tokens_L.shape[0]
    pmask = prompt_mask_L.astype(bool)
    cmask = completion_mask_GT.astype(bool)
    tokens = jnp.concatenate([prompt_tokens_L, completions_GT.reshape(G * T)])
    valid = jnp.concatenate([pmask, cmask.reshape(G * T)])
    n = jnp.sum(pmask.astype(jnp.int32))
    pos = jnp.concatenate([padding_positions(pmask[None])[0],
                           jnp.tile(n + jnp.arange(T, dtype=jnp.int32), G)])
    seg = jnp.concatenate([jnp.zeros(Lp, jnp.int32), 1 + jnp.repeat(jnp.arange(G, dtype=jnp.int32), T)])
    parent = jnp.concatenate([jnp.array([-1], jnp.int32), jnp.zeros(G, jnp.int32)])
    mask = tree_attention_mask(seg, parent, valid)
    h, _ = core(params, cfg, tokens[None], pos[None], mask[None])
    h = h[0]
    # Completion token t of g is predicted by the hidden state of the token before it:
    # the last prompt token for t = 0, completion token t-1 of g otherwise.
    comp_h = h[Lp:].reshape(G, T, -1)
    first = jnp.broadcast_to(h[Lp - 1][None, None], (G, 1, h.shape[-1]))
    pred_h = jnp.concatenate([first, comp_h[:, :-1]], axis=1)
    logp = ops.logprobs_from_logits(logits_from_hidden(params, cfg, pred_h), completions_GT, temperature)
    return jnp.where(cmask, logp, 0.0)
