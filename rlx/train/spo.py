"""SPO orchestration: Monte-Carlo values from the sampler, then the segment advantages.

Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for
Large Language Models" (official code: AIFrameResearch/SPO). The pure pieces live in
`rlx.advantages.segment` / `rlx.advantages.tree` / `rlx.curriculum.edge_replay`; this
module feeds them from `rlx.sampling` and returns an ordinary training `Batch`.

SPO-chain (`rl.estimator = "spo_chain"`), per step:
  1. G samples per prompt (the engine's sampler), rewards R from the task.
  2. Cutpoints from the old token probabilities at the sampling temperature: tokens with
     p < 0.9, every `spo.cutpoint_interval`-th kept, at most `spo.num_cuts` per response.
  3. V(c) = mean task reward of `spo.mc_samples` (K) continuations from the state
     "prompt + response[:c+1]" (`sampling.continue_from`); a continuation cut by the
     length budget scores 0 (official). Identical states — the same prompt and the same
     prefix tokens, e.g. the prompt state shared by a group — are evaluated once.
  4. `spo_chain` token advantages (probability mask, whitening over the batch).
SPO-tree (`rl.estimator = "spo_tree"`), per step:
  1. One tree per prompt (`sampling.sample_tree`, branching `spo.branching`, segments of
     `spo.segment_len` tokens); leaves (finished, or truncated at the last level) are
     scored on their full completion text.
  2. `spo_tree` edge advantages (V(node) = mean of its children; "rloo" or "grpo"),
     zero-advantage edges dropped.
  3. The edges (query = the parent's text, response = the child's segment) enter the
     edge replay buffer (`edge_replay`: live <= 8 iterations); `spo.train_edges` are
     drawn (<= 32 per question) and removed; the batch trains on those.
  4. `edge_token_advantages` (probability mask, whitening over the drawn edges).
Both: the loss counts only tokens with old probability < 0.9 (`Batch.loss_mask`; the
official trainer masks them out of the loss, so they leave the token-mean
denominator too). rlx whitens over the whole batch where the official trainer whitens
each micro-batch (identical with one micro-batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlx import advantages, losses, sampling
from rlx.curriculum import edge_replay
from rlx.train import data as tdata
from rlx.train.rollout import score_completions, success_of, to_host

SPO_ESTIMATORS = ("spo_chain", "spo_tree")


def _score(engine, texts: list[str], examples: list[dict], finish: np.ndarray) -> np.ndarray:
    r, comps, _ = score_completions(engine.config, engine.reward_task, texts, examples)
    return np.where(finish == 1, 0.0, r).astype(np.float32)        # truncated continuation: 0


def chain_advantages(engine, flat: dict, examples_B: list[dict], rewards_B: np.ndarray, dev: dict, old_T):
    """(adv_BT, loss_mask_BT, metrics) for SPO-chain; `old_T` are the old log-probs at
    the sampling temperature."""
    s = engine.config.spo
    mask = dev["completion_mask"]
    cuts, cmet = advantages.spo_cutpoints(old_T, mask, num_cuts=s.num_cuts, interval=s.cutpoint_interval,
                                          threshold=s.threshold)
    pos, valid = to_host(cuts.positions), to_host(cuts.valid)
    B, S = pos.shape
    # Unique states (prompt text, prefix tokens) among the valid cuts.
    keys, where = {}, {}
    for b in range(B):
        for j in range(S):
            if valid[b, j]:
                k = (examples_B[b]["prompt"], tuple(flat["completion_tokens"][b, :pos[b, j] + 1].tolist()))
                where[(b, j)] = keys.setdefault(k, len(keys))
    n = len(keys)
    values = np.zeros((B, S), np.float32)
    tokens_total = 0
    if n:
        rows = [None] * n
        for (b, j), u in where.items():
            rows[u] = (b, int(pos[b, j]) + 1)
        N = engine.spo_bucket(n)                  # padded to a bucket: few distinct shapes
        rows += [rows[0]] * (N - n)
        bi = np.array([r[0] for r in rows])
        plen = np.array([r[1] for r in rows], np.int32)
        K = int(s.mc_samples)
        host = (flat["prompt_tokens"][bi], flat["prompt_mask"][bi], flat["completion_tokens"][bi], plen)
        # rows_per_call: the sampler chunks the host arrays and places each chunk itself.
        args = host if engine.sampler_cfg.rows_per_call else tuple(engine.put(x) for x in host)
        with engine.sharding():
            out, engine.sampler_state = sampling.continue_from(
                engine.state.params, engine.model_cfg, engine.sampler_cfg, engine.sampler_state, *args, K,
                put=engine.put)
        new_tok, lens, fin = to_host(out.completion_tokens), to_host(out.lengths), to_host(out.finish_reason)
        tokens_total = int(lens[: n * K].sum())
        texts, exs = [], []
        for u in range(n):
            b, c = rows[u]
            for k in range(K):
                r = u * K + k
                full = np.concatenate([flat["completion_tokens"][b, :c], new_tok[r, :lens[r]]])
                texts.append(engine.tokenizer.decode(full.tolist(), skip_special_tokens=True))
                exs.append(examples_B[b])
        v_u = _score(engine, texts, exs, fin[: n * K]).reshape(n, K).mean(1)
        for (b, j), u in where.items():
            values[b, j] = v_u[u]
    adv, amet = advantages.spo_chain(jnp.asarray(values), cuts.valid, jnp.asarray(rewards_B), cuts.positions,
                                     mask, old_T, threshold=s.threshold)
    keep = losses.spo_probability_mask(old_T, mask, threshold=s.threshold)
    metrics = {f"spo/{k}": float(to_host(v)) for k, v in {**cmet, **amet}.items()}
    metrics.update({"spo/unique_states": float(n), "spo/mc_tokens": float(tokens_total)})
    return adv, keep, metrics


def make_edge_buffer(engine, Lq: int, M: int):
    s = engine.config.spo
    example = {"prompt_tokens": jnp.zeros((Lq,), jnp.int32), "prompt_mask": jnp.zeros((Lq,), bool),
               "completion_tokens": jnp.zeros((M,), jnp.int32), "completion_mask": jnp.zeros((M,), bool),
               "logprobs": jnp.zeros((M,), jnp.float32), "old_T": jnp.zeros((M,), jnp.float32),
               "advantage": jnp.zeros((), jnp.float32), "reward": jnp.zeros((), jnp.float32)}
    return edge_replay.init(int(s.replay_capacity), example)


def tree_batch(engine, key, examples: list[dict], question_ids: np.ndarray):
    """Samples trees for `examples`, adds their edges to the replay buffer and draws the
    training edges. Returns (edges dict of [n, ...] arrays, valid [n], metrics)."""
    s = engine.config.spo
    P = len(examples)
    sc = engine.sampler_cfg
    toks, mask, _ = tdata.encode_prompts(engine.tokenizer, [e["prompt"] for e in examples], sc.max_prompt_len,
                                         sc.pad_id)
    branching = tuple(int(b) for b in s.branching)
    with engine.sharding():
        tree, engine.sampler_state = sampling.sample_tree(
            engine.state.params, engine.model_cfg, sc, engine.sampler_state, engine.put(toks), engine.put(mask),
            branching=branching, segment_len=int(s.segment_len))
    comp, cmask = (to_host(x) for x in sampling.node_completions(tree))
    exists, finished, truncated = (to_host(x) for x in (tree.exists, tree.finished, tree.truncated))
    leaf = exists & (finished | truncated)
    N = leaf.shape[1]
    texts, exs, idx = [], [], []
    for p in range(P):
        for n in range(N):
            if leaf[p, n]:
                texts.append(engine.tokenizer.decode(comp[p, n][cmask[p, n]].tolist(), skip_special_tokens=True))
                exs.append(examples[p])
                idx.append((p, n))
    r = np.zeros((P, N), np.float32)
    succ = np.zeros((P, N), bool)
    if texts:
        vals, comps, _ = score_completions(engine.config, engine.reward_task, texts, exs)
        ok = success_of(engine.reward_task, vals, comps)
        for (p, n), v, o in zip(idx, vals, ok):
            r[p, n], succ[p, n] = v, o
    ta, tmet = advantages.spo_tree(jnp.asarray(r), tree.finished, branching=branching, mode=s.tree_mode)
    out, exists_E = sampling.edge_samples(tree)
    E = N - 1
    with engine.sharding():
        old_T = engine._logprobs_T(engine.state.params, out.prompt_tokens, out.prompt_mask,
                                   out.completion_tokens, out.completion_mask)
    edges = {"prompt_tokens": out.prompt_tokens, "prompt_mask": out.prompt_mask,
             "completion_tokens": out.completion_tokens, "completion_mask": out.completion_mask,
             "logprobs": out.logprobs, "old_T": old_T, "advantage": ta.edge_advantages.reshape(P * E),
             "reward": jnp.asarray(r[:, 1:].reshape(P * E))}
    edges = jax.tree.map(lambda x: jnp.asarray(to_host(x)), edges)
    qid = jnp.repeat(jnp.asarray(question_ids, jnp.int32), E)
    it = engine.step
    k1, k2 = jax.random.split(key)
    buf = edge_replay.add(engine.edge_buffer, edges, qid, it, k1, valid=jnp.asarray(to_host(ta.edge_valid)).reshape(-1))
    buf = edge_replay.expire(buf, it, max_age=int(s.replay_max_age))
    drawn, valid, buf = edge_replay.sample(buf, int(s.train_edges), k2, max_per_question=int(s.replay_per_question))
    engine.edge_buffer = buf
    leaf_r = r[leaf]
    metrics = {f"spo/{k}": float(to_host(v)) for k, v in tmet.items()}
    metrics.update({"reward/mean": float(leaf_r.mean()) if leaf_r.size else 0.0,
                    "accuracy": float(succ[leaf].mean()) if leaf_r.size else 0.0,
                    "spo/drawn_edges": float(to_host(valid).sum()),
                    "spo/buffer_edges": float(to_host(edge_replay.size(buf))),
                    "tokens/sampled": float(to_host(tree.mask & tree.exists[:, :, None]).sum())})
    return drawn, valid, metrics
