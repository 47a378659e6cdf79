"""Shared-prefix forward (Prefix Grouper): a prompt encoded once for all its completions.

Paper: "Prefix Grouper: Efficient GRPO Training through Shared-Prefix Forward". The
repeated-prefix forward (`completion_logprobs` on the group batch) runs
[prompt, completion_g] for g = 1..G — the prompt G times. Here one row per prompt packs
[prompt (Lp), completion_1 (T), ..., completion_G (T)] with

  * positions: the prompt's own (cumsum of its mask − 1), and every completion again
    from n = the number of real prompt tokens (restarted);
  * attention: prompt tokens attend causally to the real prompt tokens; tokens of
    completion g attend to the real prompt tokens and causally to completion g —
    never to another completion (`prefix_group_attention`, computed in two blocks:
    prompt x prompt once, and each completion x [prompt keys, its own keys] with one
    softmax over both, the prompt keys shared across the group without a copy).

Every real token then sees exactly the keys, values and position it sees in its own
repeated row, so log-probs and gradients are the same up to float rounding (the
summation order of the attention differs). Cost per prompt: the dense layers run on
Lp + G·T tokens instead of G·(Lp + T) (with Lp : T = 4 : 1 and G = 8, 12 vs 40 token
units), attention on Lp² + G·T·(Lp + T) score entries instead of G·(Lp + T)².

Trees (SPO-tree) generalize this: a node's segment attends causally to itself and to
all its ancestors' segments (`tree_attention_mask`, `packed_logprobs`), with an
explicit [B, L, L] mask.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlx.models.config import ModelConfig
from rlx.models.logprobs import token_logprobs
from rlx.models.transformer import NEG_INF, Attention, attend, core, masked_attention, padding_positions


def prefix_group_attention(prompt_mask_PLp, completion_mask_PGT) -> Attention:
    """Attention over packed rows [prompt (Lp), completion_1 (T), ..., completion_G (T)]
    (see the module docstring). Returns a function of q [P, L, H, Dh], k, v [P, L, N, Dh]."""
    pm = prompt_mask_PLp.astype(bool)
    cm = completion_mask_PGT.astype(bool)
    P, Lp = pm.shape
    G, T = cm.shape[1:]

    def attention(q, k, v):
        H, Dh = q.shape[2:]
        N = k.shape[2]
        g = H // N
        causal_p = jnp.tril(jnp.ones((Lp, Lp), bool))[None] & pm[:, None, :]
        out_p = attend(q[:, :Lp], k[:, :Lp], v[:, :Lp], causal_p)                        # [P, Lp, H, Dh]
        qc = q[:, Lp:].reshape(P, G, T, N, g, Dh).transpose(0, 1, 3, 4, 2, 5)            # [P, G, N, g, T, Dh]
        kp, vp = k[:, :Lp].transpose(0, 2, 1, 3), v[:, :Lp].transpose(0, 2, 1, 3)       # [P, N, Lp, Dh]
        kc = k[:, Lp:].reshape(P, G, T, N, Dh).transpose(0, 1, 3, 2, 4)                  # [P, G, N, T, Dh]
        vc = v[:, Lp:].reshape(P, G, T, N, Dh).transpose(0, 1, 3, 2, 4)
        scale = 1.0 / math.sqrt(Dh)
        s_p = jnp.einsum("pgnhtd,pnkd->pgnhtk", qc, kp, preferred_element_type=jnp.float32) * scale
        s_c = jnp.einsum("pgnhtd,pgnkd->pgnhtk", qc, kc, preferred_element_type=jnp.float32) * scale
        m_p = pm[:, None, None, None, None, :]                                           # [P, 1, 1, 1, 1, Lp]
        m_c = (jnp.tril(jnp.ones((T, T), bool))[None, None] & cm[:, :, None, :])[:, :, None, None]
        s = jnp.concatenate([jnp.where(m_p, s_p, NEG_INF), jnp.where(m_c, s_c, NEG_INF)], axis=-1)
        p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
        out_c = (jnp.einsum("pgnhtk,pnkd->pgnhtd", p[..., :Lp], vp)
                 + jnp.einsum("pgnhtk,pgnkd->pgnhtd", p[..., Lp:], vc))
        out_c = out_c.transpose(0, 1, 4, 2, 3, 5).reshape(P, G * T, H, Dh)
        return jnp.concatenate([out_p, out_c], axis=1)

    return attention


def shared_prefix_logprobs(params, cfg: ModelConfig, prompt_tokens, prompt_mask, completions, completion_mask, *,
                           temperature: float = 1.0, vocab_chunk: int | None = None, with_entropy: bool = False):
    """Completion log-probs with each prompt encoded once for its whole group.

    Shapes: one prompt `[Lp]` with completions `[G, T]` -> `[G, T]`; or P prompts
    `[P, Lp]` with completions `[P*G, T]` in the `Rollout` layout (row p*G+g = sample
    g of prompt p) -> `[P*G, T]`. Prompts left-padded, completions right-padded.
    Equal (log-probs and gradients, up to float rounding) to `completion_logprobs` on
    the prompts repeated G times; same keyword options (entropy with `with_entropy`).
    """
    single = prompt_tokens.ndim == 1
    pt = prompt_tokens[None] if single else prompt_tokens
    pm = (prompt_mask[None] if single else prompt_mask).astype(bool)
    if pt.ndim != 2 or pm.shape != pt.shape:
        raise ValueError(f"shared_prefix_logprobs: prompt_tokens / prompt_mask must be matching [Lp] or [P, Lp], "
                         f"got {prompt_tokens.shape} and {prompt_mask.shape}")
    if completions.ndim != 2 or completion_mask.shape != completions.shape:
        raise ValueError(f"shared_prefix_logprobs: completions / completion_mask must be matching [B, T], got "
                         f"{completions.shape} and {completion_mask.shape}")
    P, Lp = pt.shape
    B, T = completions.shape
    if B % P:
        raise ValueError(f"shared_prefix_logprobs: {B} completion rows are not a multiple of {P} prompts")
    G = B // P
    cm = completion_mask.astype(bool)
    tokens = jnp.concatenate([pt, completions.reshape(P, G * T)], axis=1)
    n = jnp.sum(pm, axis=1, dtype=jnp.int32)
    comp_pos = jnp.tile(n[:, None] + jnp.arange(T, dtype=jnp.int32)[None, :], (1, G))          # [P, G*T]
    positions = jnp.concatenate([padding_positions(pm), comp_pos], axis=1)
    h, _ = core(params, cfg, tokens, positions, prefix_group_attention(pm, cm.reshape(P, G, T)))
    D = h.shape[-1]
    # Completion token t of g is predicted by the hidden state of the token before it:
    # the last prompt token for t = 0, completion token t-1 of g otherwise.
    hc = h[:, Lp:].reshape(P, G, T, D)
    first = jnp.broadcast_to(h[:, Lp - 1][:, None, None, :], (P, G, 1, D))
    pred = jnp.concatenate([first, hc[:, :, :-1]], axis=2).reshape(B, T, D)
    return token_logprobs(params, cfg, pred, completions, cm, temperature=temperature, vocab_chunk=vocab_chunk,
                          with_entropy=with_entropy)


def tree_attention_mask(segment_ids_L, parent_of_S, valid_L):
    """[L, L] bool: token i sees token j iff j <= i, both are valid, and j's segment is
    i's segment or one of its ancestors. `parent_of_S[s]` is segment s's parent (−1 for
    a root); columns must be ordered so that ancestors come before descendants (then
    "j <= i" is causality inside a segment and a no-op across segments)."""
    S = parent_of_S.shape[0]
    parent = jnp.asarray(parent_of_S, jnp.int32)

    def step(_, c):
        anc, cur = c
        cur = jnp.where(cur >= 0, parent[jnp.maximum(cur, 0)], -1)
        return anc | ((cur[:, None] == jnp.arange(S)[None, :]) & (cur[:, None] >= 0)), cur

    anc, _ = jax.lax.fori_loop(0, S, step, (jnp.eye(S, dtype=bool), jnp.arange(S)))   # anc[s, a]: a = s or above
    seg = jnp.asarray(segment_ids_L, jnp.int32)
    L = seg.shape[0]
    causal = jnp.arange(L)[None, :] <= jnp.arange(L)[:, None]
    valid = jnp.asarray(valid_L, bool)
    return causal & anc[seg[:, None], seg[None, :]] & valid[:, None] & valid[None, :]


def packed_logprobs(params, cfg: ModelConfig, tokens_BL, positions_BL, attention_mask_BLL, predictor_BL,
                    target_mask_BL, *, temperature: float = 1.0, vocab_chunk: int | None = None,
                    with_entropy: bool = False):
    """Log-probs of tokens in packed rows with an explicit attention structure.

    Token l of row b is predicted by the hidden state at column `predictor[b, l]` (the
    previous token on its own path: the previous token of its segment, or the last
    token of its parent segment); `target_mask` marks the tokens to score (0 elsewhere).
    `attention_mask_BLL` is e.g. `tree_attention_mask` per row. Returns [B, L] (and
    the entropy [B, L] with `with_entropy`).
    """
    h, _ = core(params, cfg, tokens_BL, positions_BL, masked_attention(attention_mask_BLL))
    pred = jnp.take_along_axis(h, predictor_BL[..., None].astype(jnp.int32), axis=1)
    return token_logprobs(params, cfg, pred, tokens_BL, target_mask_BL, temperature=temperature,
                          vocab_chunk=vocab_chunk, with_entropy=with_entropy)
