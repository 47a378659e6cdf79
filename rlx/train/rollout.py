"""One generation round: prompts -> sampled groups -> decoded completions -> rewards.

The output is a host-side dict of numpy arrays with a leading prompt axis P (so that
dynamic sampling can keep or carry whole groups):

  prompt_tokens [P, G, Lp]  prompt_mask [P, G, Lp]
  completion_tokens [P, G, T]  completion_mask [P, G, T]
  logprobs [P, G, T]  sampling_logprobs [P, G, T]  finish_reason [P, G]
  rewards [P, G]  success [P, G]  components [P, C, G] (C = 1 when the task has one)
  cluster_ids [P, G] (same final answer)  source_ids [P]  example_ids [P]
"""

from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np

from rlx import rewards as rw
from rlx import sampling
from rlx.train import data as tdata

log = logging.getLogger(__name__)


def to_host(x) -> np.ndarray:
    """A (possibly multi-host sharded) array as a full numpy array on every process."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def bucket_width(used: int, size: int, multiple: int) -> int:
    """The smallest width multiple * 2^k >= used (at least `multiple`), capped at `size`:
    geometric buckets, so a run compiles O(log(size / multiple)) widths, not size / multiple."""
    if multiple <= 0:
        return size
    w = multiple
    while w < used:
        w *= 2
    return min(size, w)


def trim_padding(flat: dict, multiple: int) -> dict:
    """Drop the padding columns no row of the batch uses, keeping shapes on a grid.

    `flat` is the trainer's flat batch (prompt arrays [B, Lp] left-padded, completion
    arrays [B, T] right-padded). Prompt columns are cut from the left down to the longest
    prompt, completion columns from the right down to the longest completion, each width
    rounded up to a bucket `multiple * 2^k` (`bucket_width`; never above the original).
    Only columns that are padding in every row go, so log-probs, losses and gradients are
    those of the untrimmed batch (positions come from the mask; masked keys get zero
    attention weight). Each distinct (Lp', T') compiles the update once: at most
    (1 + log2(Lp / m)) x (1 + log2(T / m)) programs (4 x 7 for 512 / 4096 with m = 64).
    """
    if multiple <= 0:
        return flat
    Lp, T = flat["prompt_mask"].shape[1], flat["completion_mask"].shape[1]
    p_used = np.flatnonzero(np.asarray(flat["prompt_mask"]).any(axis=0))      # columns some row uses
    c_used = np.flatnonzero(np.asarray(flat["completion_mask"]).any(axis=0))
    lp = bucket_width(Lp - int(p_used[0]) if p_used.size else 0, Lp, multiple)
    t = bucket_width(int(c_used[-1]) + 1 if c_used.size else 0, T, multiple)
    out = dict(flat)
    for k in ("prompt_tokens", "prompt_mask"):
        out[k] = flat[k][:, Lp - lp:]
    for k in ("completion_tokens", "completion_mask", "logprobs", "sampling_logprobs"):
        if k in flat:
            out[k] = flat[k][:, :t]
    return out


def reward_workers(setting: int) -> int:
    """`data.reward_workers`: -1 = auto (one per CPU core, at most 4), 0 = in-process."""
    return min(4, os.cpu_count() or 1) if setting < 0 else int(setting)


def score_completions(config, task: str, texts, examples):
    """`rlx.rewards.score` with the config's worker processes and time limit; the first
    checker failure of the call is logged (their count is a metric)."""
    d = config.data
    r, comps, stats = rw.score(task, texts, examples, time_limit_s=float(d.reward_time_limit_s) or None,
                               workers=reward_workers(d.reward_workers),
                               weights=tuple(d.get("reward_weights", ())) or None)
    if stats.errors or stats.timeouts:
        log.warning("%d of %d completions could not be scored (%d errors, %d timeouts; scored as failures); "
                    "first: %s", stats.errors + stats.timeouts, stats.n, stats.errors, stats.timeouts,
                    stats.first_error)
    return r, comps, stats


def success_of(task: str, rewards_N: np.ndarray, comps_CN: np.ndarray | None) -> np.ndarray:
    spec = rw.get_task(task)
    if comps_CN is None:
        return rewards_N >= spec.success_value
    return comps_CN[spec.component_names.index(spec.success_component)] >= spec.success_value


def answer_clusters(texts: list[str], P: int, G: int) -> np.ndarray:
    """int32 [P, G]: samples of a group with the same final answer (whitespace- and
    case-normalized `<answer>` contents, else the first line) share the index of the
    first such sample (SEED-GRPO's meaning clusters for verifiable tasks)."""
    out = np.zeros((P, G), np.int32)
    for p in range(P):
        seen: dict[str, int] = {}
        for g in range(G):
            a = rw.extract_plain(texts[p * G + g]) or ""
            out[p, g] = seen.setdefault(" ".join(a.split()).casefold(), g)
    return out


def generate_round(ctx, params, examples: list[dict], source_ids, example_ids, group_size: int,
                   sampler_cfg, put) -> tuple[dict, dict]:
    """Samples `group_size` completions for each example and scores them.

    `ctx` is the run's `rlx.train.kinds.RunContext` (its sampler state advances);
    `put(x)` places a host array on the mesh (batch-sharded). Returns (groups, info)
    where info has timing and token counts.
    """
    P, G = len(examples), group_size
    t0 = time.perf_counter()
    toks, mask, truncated = tdata.encode_prompts(ctx.tokenizer, [e["prompt"] for e in examples],
                                                 sampler_cfg.max_prompt_len, sampler_cfg.pad_id,
                                                 encode=ctx.encode_prompt)
    if sampler_cfg.rows_per_call:      # chunked: the sampler slices the host arrays, `put` places them
        args = (toks, mask)
    else:
        args = (put(toks), put(mask))
    out, ctx.sampler_state = sampling.generate(params, ctx.model_cfg, sampler_cfg, ctx.sampler_state,
                                                  *args, G, put=put)
    host = {k: to_host(getattr(out, k)) for k in (
        "prompt_tokens", "prompt_mask", "completion_tokens", "completion_mask", "logprobs",
        "sampling_logprobs", "finish_reason", "lengths")}
    t_sample = time.perf_counter() - t0
    texts = tdata.decode_completions(ctx.tokenizer, host["completion_tokens"], host["lengths"])
    rep = [ex for ex in examples for _ in range(G)]
    r, comps, stats = score_completions(ctx.config, ctx.reward_task, texts, rep)
    succ = success_of(ctx.reward_task, r, comps)
    comps = r[None] if comps is None else comps                      # [C, B]
    groups = {k: v.reshape((P, G) + v.shape[1:]) for k, v in host.items()}
    groups["rewards"] = r.reshape(P, G).astype(np.float32)
    groups["success"] = succ.reshape(P, G)
    groups["components"] = comps.reshape(comps.shape[0], P, G).transpose(1, 0, 2).astype(np.float32)
    groups["cluster_ids"] = answer_clusters(texts, P, G)
    groups["source_ids"] = np.asarray(source_ids, np.int32)
    groups["example_ids"] = np.asarray(example_ids, np.int32)
    info = {"time/sample": t_sample, "time/reward": time.perf_counter() - t0 - t_sample,
            "tokens/sampled": float(host["lengths"].sum()), "prompts/truncated": float(truncated),
            "reward/errors": float(stats.errors + stats.timeouts)}
    return groups, info
