"""SPO-tree: one sampled tree per prompt, edge advantages, an edge replay buffer.

Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for
Large Language Models" (official code: AIFrameResearch/SPO); the pure pieces are
`rlx.advantages.tree` and `rlx.curriculum.edge_replay`. The rollout kind of
`rl.estimator = "spo_tree"`, per step:
  1. One tree per prompt (`sampling.sample_tree`, branching `spo.branching`, segments of
     `spo.segment_len` tokens); leaves (finished, or truncated at the last level) are
     scored on their full completion text.
  2. `spo_tree` edge advantages (V(node) = mean of its children; "rloo" or "grpo"),
     zero-advantage edges dropped.
  3. The edges (query = the parent's text, response = the child's segment) enter the
     edge replay buffer (`edge_replay`: live <= 8 iterations); `spo.train_edges` are
     drawn (<= 32 per question) and removed; the batch trains on those.
  4. `edge_token_advantages` (probability mask; whitening over the drawn edges with
     `rl.whiten_scope = "batch"`, else in the update over each minibatch or micro-batch
     of them, as the official trainer whitens each training micro-step).
The loss counts only tokens with old probability < 0.9 (`Batch.loss_mask`, as the
official trainer). The buffer is in the checkpoint (tree key "edges").
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from rlx import advantages, losses, parallel, sampling
from rlx.curriculum import edge_replay
from rlx.train import data as tdata
from rlx.train.kinds.base import Rollout, RolloutKind, StepInputs
from rlx.train.rollout import score_completions, success_of, to_host
from rlx.types import Batch


def make_edge_buffer(config, Lq: int, M: int):
    s = config.spo
    example = {"prompt_tokens": jnp.zeros((Lq,), jnp.int32), "prompt_mask": jnp.zeros((Lq,), bool),
               "completion_tokens": jnp.zeros((M,), jnp.int32), "completion_mask": jnp.zeros((M,), bool),
               "logprobs": jnp.zeros((M,), jnp.float32), "old_T": jnp.zeros((M,), jnp.float32),
               "advantage": jnp.zeros((), jnp.float32), "reward": jnp.zeros((), jnp.float32)}
    return edge_replay.init(int(s.replay_capacity), example)


def tree_batch(ctx, params, buffer, step: int, key, examples: list[dict], question_ids: np.ndarray):
    """Samples trees for `examples` from the policy `params`, adds their edges to the
    replay `buffer` (at iteration `step`) and draws the training edges. Returns (edges
    dict of [n, ...] arrays, valid [n], the new buffer, metrics)."""
    s = ctx.config.spo
    P = len(examples)
    sc = ctx.sampler_cfg
    toks, mask, _ = tdata.encode_prompts(ctx.tokenizer, [e["prompt"] for e in examples], sc.max_prompt_len,
                                         sc.pad_id, encode=ctx.encode_prompt)
    branching = tuple(int(b) for b in s.branching)
    with ctx.sharding():
        tree, ctx.sampler_state = sampling.sample_tree(
            params, ctx.model_cfg, sc, ctx.sampler_state, ctx.put(toks), ctx.put(mask),
            branching=branching, segment_len=int(s.segment_len))
    comp, cmask = (to_host(x) for x in sampling.node_completions(tree))
    exists, finished, truncated = (to_host(x) for x in (tree.exists, tree.finished, tree.truncated))
    leaf = exists & (finished | truncated)
    N = leaf.shape[1]
    texts, exs, idx = [], [], []
    for p in range(P):
        for n in range(N):
            if leaf[p, n]:
                texts.append(ctx.tokenizer.decode(comp[p, n][cmask[p, n]].tolist(), skip_special_tokens=True))
                exs.append(examples[p])
                idx.append((p, n))
    r = np.zeros((P, N), np.float32)
    succ = np.zeros((P, N), bool)
    if texts:
        vals, comps, _ = score_completions(ctx.config, ctx.reward_task, texts, exs)
        ok = success_of(ctx.reward_task, vals, comps)
        for (p, n), v, o in zip(idx, vals, ok):
            r[p, n], succ[p, n] = v, o
    ta, tmet = advantages.spo_tree(jnp.asarray(r), tree.finished, branching=branching, mode=s.tree_mode)
    out, exists_E = sampling.edge_samples(tree)
    E = N - 1
    with ctx.sharding():
        old_T = ctx.programs.logprobs_T(params, out.prompt_tokens, out.prompt_mask,
                                   out.completion_tokens, out.completion_mask)
    edges = {"prompt_tokens": out.prompt_tokens, "prompt_mask": out.prompt_mask,
             "completion_tokens": out.completion_tokens, "completion_mask": out.completion_mask,
             "logprobs": out.logprobs, "old_T": old_T, "advantage": ta.edge_advantages.reshape(P * E),
             "reward": jnp.asarray(r[:, 1:].reshape(P * E))}
    edges = jax.tree.map(lambda x: jnp.asarray(to_host(x)), edges)
    qid = jnp.repeat(jnp.asarray(question_ids, jnp.int32), E)
    it = step
    k1, k2 = jax.random.split(key)
    buf = edge_replay.add(buffer, edges, qid, it, k1, valid=jnp.asarray(to_host(ta.edge_valid)).reshape(-1))
    buf = edge_replay.expire(buf, it, max_age=int(s.replay_max_age))
    drawn, valid, buf = edge_replay.sample(buf, int(s.train_edges), k2, max_per_question=int(s.replay_per_question))
    leaf_r = r[leaf]
    metrics = {f"spo/{k}": float(to_host(v)) for k, v in tmet.items()}
    metrics.update({"reward/mean": float(leaf_r.mean()) if leaf_r.size else 0.0,
                    "accuracy": float(succ[leaf].mean()) if leaf_r.size else 0.0,
                    "spo/drawn_edges": float(to_host(valid).sum()),
                    "spo/buffer_edges": float(to_host(edge_replay.size(buf))),
                    "tokens/sampled": float(to_host(tree.mask & tree.exists[:, :, None]).sum())})
    return drawn, valid, buf, metrics


class SPOTree(RolloutKind):
    name = "spo_tree"

    def __init__(self, ctx):
        super().__init__(ctx)
        c = ctx.config
        lens = sampling.segment_lengths(c.sampler.max_new_tokens, len(c.spo.branching), c.spo.segment_len)
        self.edge_buffer = jax.device_put(make_edge_buffer(c, c.sampler.max_prompt_len + sum(lens[:-1]), max(lens)),
                                          parallel.replicated(ctx.mesh))

    def checkpoint_tree(self) -> dict:
        return {"edges": self.edge_buffer}

    def restore_tree(self, tree: dict) -> None:
        self.edge_buffer = tree.get("edges", self.edge_buffer)

    def collect(self, inputs: StepInputs) -> Rollout:
        ctx, c = self.ctx, self.ctx.config
        t0 = time.perf_counter()
        key = inputs.key
        P = c.rl.prompts_per_step
        src, ex = tdata.select_prompts(key, ctx.train_src.sizes, P, c.data.curriculum, inputs.curriculum,
                                       c.data.dump_c, c.data.dump_tau)
        examples = ctx.train_src.lookup(src, ex)
        qid = np.asarray(src, np.int64) * tdata.GENERATED_SIZE + np.asarray(ex)   # question identity
        edges, valid, self.edge_buffer, m = tree_batch(ctx, inputs.params, self.edge_buffer, inputs.step,
                                                       jax.random.fold_in(key, 1), examples, qid % (2**31 - 1))
        t_sample = time.perf_counter() - t0
        with ctx.sharding():
            adv, amet = advantages.edge_token_advantages(edges["advantage"], edges["completion_mask"],
                                                         edges["old_T"], valid=valid, threshold=c.spo.threshold,
                                                         whiten=c.rl.whiten_scope == "batch")
            keep = losses.spo_probability_mask(edges["old_T"], edges["completion_mask"], threshold=c.spo.threshold)
            cmask = edges["completion_mask"] & valid[:, None]
            h = {k: ctx.put(to_host(v)) for k, v in edges.items()}
            batch = Batch.create(
                prompt_tokens=h["prompt_tokens"], prompt_mask=h["prompt_mask"],
                completion_tokens=h["completion_tokens"], completion_mask=ctx.put(to_host(cmask)),
                advantages=ctx.put(to_host(adv)), old_logprobs=h["logprobs"], rewards=h["reward"],
                valid=ctx.put(to_host(valid)), loss_mask=ctx.put(to_host(keep & cmask)))
            if inputs.reference is not None:
                batch = batch.replace(ref_logprobs=ctx.programs.logprobs(
                    inputs.reference, batch.prompt_tokens, batch.prompt_mask, batch.completion_tokens,
                    batch.completion_mask))
        m.update({f"adv/{k}": float(to_host(v)) for k, v in amet.items()})
        m["time/sample"] = t_sample
        m["throughput/sample_tokens_per_s"] = m["tokens/sampled"] / max(t_sample, 1e-9)
        return Rollout(batch=batch, metrics=m)
