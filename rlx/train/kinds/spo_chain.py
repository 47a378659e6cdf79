"""SPO-chain: G samples per prompt, segment advantages from Monte-Carlo values of cutpoints.

Paper: "Segment Policy Optimization: Effective Segment-Level Credit Assignment in RL for
Large Language Models" (official code: AIFrameResearch/SPO); the pure pieces are
`rlx.advantages.segment`. The rollout kind of `rl.estimator = "spo_chain"`, per step:
  1. G samples per prompt (the groups kind's sampling), rewards R from the task; a
     response cut by the length budget gets R = 0 (`spo.truncated_reward = "zero"`,
     the official episode generator's unfinished-response penalty; "task" keeps its
     task reward). Metric `spo/truncated`: the fraction of such responses.
  2. Cutpoints from the old token probabilities at the sampling temperature: tokens with
     p < 0.9, every `spo.cutpoint_interval`-th kept, at most `spo.num_cuts` per response.
  3. V(c) = mean task reward of `spo.mc_samples` (K) continuations from the state
     "prompt + response[:c+1]" (`sampling.continue_from`); a continuation cut by the
     length budget scores 0 (official). Identical states — the same prompt and the same
     prefix tokens, e.g. the prompt state shared by a group — are evaluated once.
  4. `spo_chain` token advantages (probability mask; whitening over the whole batch
     with `rl.whiten_scope = "batch"`, else in the update over each optimizer
     minibatch or each micro-batch — the official trainer whitens each training
     micro-step, all devices' rows: `configs/spo_chain.py` sets "micro_batch").
The loss counts only tokens with old probability < 0.9 (`Batch.loss_mask`; the official
trainer masks them out of the loss, so they leave the token-mean denominator too). The
cutpoints are uncapped with `spo.num_cuts = 0` (official; S = ceil(T / interval)
slots, one static shape). The batch keeps the sampler's full width (no trimming): the
continuations start from its rows.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rlx import advantages, losses, sampling
from rlx.train import estimate
from rlx.train.kinds.groups import Groups
from rlx.train.rollout import score_completions, to_host
from rlx.types import FinishReason


def num_cut_slots(spo, T: int) -> int:
    """S, the static number of cutpoint slots per response of width T: `spo.num_cuts`,
    or with 0 (no cap) ceil(T / spo.cutpoint_interval), the most T tokens can give."""
    return int(spo.num_cuts) or -(-int(T) // int(spo.cutpoint_interval))


def spo_bucket(n: int) -> int:
    """Number of SPO-chain prefixes to generate for n unique states: the next power of
    two (>= 8), so the continuation sampler compiles for a few shapes only."""
    return max(8, 1 << (max(n, 1) - 1).bit_length())


def _score(ctx, texts: list[str], examples: list[dict], finish: np.ndarray) -> np.ndarray:
    r, comps, _ = score_completions(ctx.config, ctx.reward_task, texts, examples)
    return np.where(finish == FinishReason.LENGTH, 0.0, r).astype(np.float32)   # truncated continuation: 0


def chain_advantages(ctx, params, flat: dict, examples_B: list[dict], rewards_B: np.ndarray, dev: dict, old_T):
    """(adv_BT, loss_mask_BT, metrics) for SPO-chain from the policy `params`; `old_T` are
    the old log-probs at the sampling temperature."""
    s = ctx.config.spo
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
        N = spo_bucket(n)                  # padded to a bucket: few distinct shapes
        rows += [rows[0]] * (N - n)
        bi = np.array([r[0] for r in rows])
        plen = np.array([r[1] for r in rows], np.int32)
        K = int(s.mc_samples)
        host = (flat["prompt_tokens"][bi], flat["prompt_mask"][bi], flat["completion_tokens"][bi], plen)
        # rows_per_call: the sampler chunks the host arrays and places each chunk itself.
        args = host if ctx.sampler_cfg.rows_per_call else tuple(ctx.put(x) for x in host)
        with ctx.sharding():
            out, ctx.sampler_state = sampling.continue_from(
                params, ctx.model_cfg, ctx.sampler_cfg, ctx.sampler_state, *args, K, put=ctx.put)
        new_tok, lens, fin = to_host(out.completion_tokens), to_host(out.lengths), to_host(out.finish_reason)
        tokens_total = int(lens[: n * K].sum())
        texts, exs = [], []
        for u in range(n):
            b, c = rows[u]
            for k in range(K):
                r = u * K + k
                full = np.concatenate([flat["completion_tokens"][b, :c], new_tok[r, :lens[r]]])
                texts.append(ctx.tokenizer.decode(full.tolist(), skip_special_tokens=True))
                exs.append(examples_B[b])
        v_u = _score(ctx, texts, exs, fin[: n * K]).reshape(n, K).mean(1)
        for (b, j), u in where.items():
            values[b, j] = v_u[u]
    adv, amet = advantages.spo_chain(jnp.asarray(values), cuts.valid, jnp.asarray(rewards_B), cuts.positions,
                                     mask, old_T, threshold=s.threshold,
                                     whiten=ctx.config.rl.whiten_scope == "batch")
    keep = losses.spo_probability_mask(old_T, mask, threshold=s.threshold)
    metrics = {f"spo/{k}": float(to_host(v)) for k, v in {**cmet, **amet}.items()}
    metrics.update({"spo/unique_states": float(n), "spo/mc_tokens": float(tokens_total)})
    return adv, keep, metrics


class SPOChain(Groups):
    name = "spo_chain"
    trim = False

    def advantages(self, inputs, groups, flat, dev, rewards_PG, valid_PG, old, values):
        ctx = self.ctx
        P, G = rewards_PG.shape
        B = P * G
        old_T = ctx.programs.logprobs_T(inputs.params, dev["prompt_tokens"], dev["prompt_mask"],
                                        dev["completion_tokens"], dev["completion_mask"])
        examples_B = [e for e in ctx.train_src.lookup(groups["source_ids"], groups["example_ids"])
                      for _ in range(G)]
        truncated_B = flat["finish_reason"] == FinishReason.LENGTH
        rewards_B = np.where(valid_PG, rewards_PG, 0.0).reshape(B)
        if ctx.config.spo.truncated_reward == "zero":          # official: unfinished penalty 0
            rewards_B = np.where(truncated_B, 0.0, rewards_B)
        adv_BT, loss_mask, est_metrics = chain_advantages(
            ctx, inputs.params, flat, examples_B, rewards_B.astype(np.float32), dev, old_T)
        est_metrics["spo/truncated"] = float(truncated_B.mean())
        adv_PG = estimate._sequence_view(adv_BT, dev["completion_mask"], P, G)
        return adv_BT, adv_PG, loss_mask & dev["completion_mask"], est_metrics, None
