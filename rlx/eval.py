"""`python -m rlx.eval`: pass@k, maj@k and accuracy of a policy on held-out prompts.

    python -m rlx.eval --checkpoint=runs/quickstart [--data=...] --n=16 --k=1,4,16
        [--temperature=1.0 --top_p=1.0 --max_new_tokens=N --num_prompts=64 --out=DIR]

--checkpoint  an rlx run directory (its newest checkpoint, its config: model, tokenizer,
              task, template) or an HF model directory (then --data is required; the
              tokenizer is the directory's).
--data        "" (default): the run's own held-out evaluation prompts — the ones its
              `eval/accuracy` is measured on; a built-in task name (arithmetic,
              countdown, knights_knaves): its evaluation prompts (`data.eval_seed`); a
              JSONL file: every record, scored by the `math` task (math-verify;
              --prompt_field / --answer_field name its fields), or by gsm8k when the run
              trained on gsm8k, or by the run's `data.checker` / `reward.fn` when it
              trained on `data.task=jsonl`.
Sampling is rlx's sampler on the config's mesh (`--mesh=(data, fsdp, tensor)`, default
the run's; prompts split over the data axes, the params replicated), n samples per
prompt at --temperature (0 = greedy: the n samples are one).

Metrics, per data source and overall:
  pass@k   the unbiased estimator 1 - C(n - c, k) / C(n, k) per prompt (c correct of
           n), averaged (Chen et al. 2021, "Evaluating Large Language Models Trained on
           Code"); `pass_at_k(n, c, k)`.
  maj@k    the n samples of a prompt split into n // k disjoint blocks of k in sampling
           order; a block is right when its most frequent final answer (the task
           checker's extraction, whitespace-collapsed; ties: the earliest) is a correct
           one; averaged over blocks and prompts. k = n is plain majority voting.
  accuracy the mean success over all samples; length mean / median (tokens);
           truncation rate (responses cut by the token budget).
Writes <out>/eval.json (the table, the settings) and <out>/samples.jsonl (prompt,
completion, extracted answer, reward, success, length, truncated, source) and prints the
table. Default --out: <checkpoint>/eval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import Counter

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from n samples of which c are correct:
    1 - C(n - c, k) / C(n, k) (1 when fewer than k samples are wrong)."""
    n, c, k = int(n), int(c), int(k)
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # prod_{i = n-c+1}^{n} (1 - k / i) = C(n - c, k) / C(n, k), stable for large n
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def maj_at_k(answers: list, correct: list, k: int) -> float:
    """maj@k of one prompt's n samples (`answers[i]`: the normalized final answer or None,
    `correct[i]`: its success), see the module docstring."""
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"maj_at_k: need 1 <= k <= n = {n}, got k={k}")
    blocks = n // k
    right = 0
    for b in range(blocks):
        ans, ok = answers[b * k:(b + 1) * k], correct[b * k:(b + 1) * k]
        votes = Counter(a for a in ans if a is not None)
        if not votes:
            continue
        top = max(votes.values())
        winner = next(a for a in ans if a is not None and votes[a] == top)      # ties: the earliest
        right += bool(ok[ans.index(winner)])
    return right / blocks


def _normalize(answer: str | None) -> str | None:
    return None if answer is None else " ".join(answer.split()) or None


def summarize(groups: list[dict], ks: list[int]) -> dict:
    """The metrics of prompts' sample groups (each: answers, success, lengths, truncated
    lists of n) — one table row."""
    n = len(groups[0]["success"])
    row = {"prompts": len(groups), "n": n}
    for k in ks:
        row[f"pass@{k}"] = float(np.mean([pass_at_k(n, int(np.sum(g["success"])), k) for g in groups]))
        row[f"maj@{k}"] = float(np.mean([maj_at_k(g["answers"], g["success"], k) for g in groups]))
    lengths = np.concatenate([np.asarray(g["lengths"]) for g in groups])
    row["accuracy"] = float(np.mean([np.mean(g["success"]) for g in groups]))
    row["length_mean"] = float(lengths.mean())
    row["length_median"] = float(np.median(lengths))
    row["truncation_rate"] = float(np.mean(np.concatenate([np.asarray(g["truncated"]) for g in groups])))
    return row


# ---------------------------------------------------------------------------------- policy

@dataclasses.dataclass
class Policy:
    config: object
    model_cfg: object
    tokenizer: object
    params: object
    where: str


def load_policy(path: str) -> Policy:
    """An rlx run directory's newest checkpoint, or an HF model directory."""
    from rlx import models
    from rlx.train.config import base_config
    from rlx.train.export import load_run_policy
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(os.path.join(path, "checkpoints")):
        c, model_cfg, tok, params, step = load_run_policy(path)
        return Policy(c, model_cfg, tok, params, f"{path} (step {step})")
    if os.path.exists(os.path.join(path, "config.json")) and any(n.endswith(".safetensors") for n in os.listdir(path)):
        c = base_config()
        c.model.source, c.model.hf_path = "hf", path
        params, model_cfg = models.from_hf(path)
        return Policy(c, model_cfg, models.load_tokenizer(path), params, f"{path} (HF)")
    raise FileNotFoundError(f"--checkpoint: {path!r} is neither an rlx run directory (checkpoints/) nor an HF "
                            "model directory (config.json + *.safetensors)")


def eval_examples(c, data: str, num_prompts: int, prompt_field: str, answer_field: str) -> tuple[list[dict], str]:
    """(examples, reward task) for --data (see the module docstring); `c` is updated."""
    from rlx.train import data as tdata
    if data.endswith(".jsonl") or os.path.isfile(data):
        if not os.path.exists(data):
            raise FileNotFoundError(f"--data: no such file {data!r}")
        template = c.data.template                   # the prompts' style the run trained on
        if c.data.task == "gsm8k":
            from rlx.data import gsm8k
            exs = gsm8k.load_jsonl(data, template=template, source=os.path.basename(data))
        else:                # a jsonl run keeps its checker (data.checker); any other run: math
            from rlx.data import math_problems
            c.data.task = c.data.task if c.data.task == "jsonl" else "math"
            exs = math_problems.load_jsonl(data, template=template, prompt_field=prompt_field,
                                           answer_field=answer_field, source=os.path.basename(data),
                                           task=c.data.task)
        return (exs[:num_prompts] if num_prompts else exs), tdata.reward_task(c)
    if data:
        if data not in ("arithmetic", "countdown", "knights_knaves"):
            raise ValueError(f"--data: {data!r} is neither a JSONL file nor a built-in task "
                             "(arithmetic, countdown, knights_knaves)")
        if data != c.data.task:
            c.data.task = data
            if data == "knights_knaves" and c.data.template == "compact":
                c.data.template = "think"
    if num_prompts:
        c.data.eval_prompts = int(num_prompts)
    if not c.data.eval_prompts:
        raise ValueError("--num_prompts: the run holds out no evaluation prompts (data.eval_prompts = 0)")
    _, exs = tdata.build_sources(c.data, c.seed)
    return exs, tdata.reward_task(c)


def sampling_context(policy: Policy, task: str, *, temperature: float, top_p: float, max_new_tokens: int | None,
                     seed: int, mesh_shape=None):
    """(RunContext, params on the mesh, SamplerConfig, put) for sampling from `policy`:
    the config's mesh (or `mesh_shape`), prompts over its data axes, params replicated."""
    import jax

    from rlx import parallel, sampling
    from rlx.train.build import build_sampler_config
    from rlx.train.data import prompt_encoder
    from rlx.train.kinds.base import RunContext
    c = policy.config
    c.sampler.temperature, c.sampler.top_p = float(temperature), float(top_p)
    if max_new_tokens:
        c.sampler.max_new_tokens = int(max_new_tokens)
    c.rl.policy_temperature = 0.0
    mesh = parallel.make_mesh(tuple(mesh_shape) if mesh_shape else tuple(c.mesh.shape))
    rules = parallel.get_rules(c.mesh.rules)

    def put(x):
        sh = parallel.batch_sharding(mesh, x.ndim, x.shape[0])
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    scfg = build_sampler_config(c, policy.tokenizer, greedy=temperature == 0)
    with parallel.use_rules(mesh, rules):
        params = jax.device_put(policy.params, parallel.replicated(mesh))
    ctx = RunContext(config=c, run_dir="", tokenizer=policy.tokenizer, model_cfg=policy.model_cfg,
                     sampler_cfg=scfg, greedy_cfg=scfg, programs=None, mesh=mesh, rules=rules, train_src=None,
                     reward_task=task, sampler_state=sampling.init_state(jax.random.key(seed)), put=put,
                     sharding=lambda: parallel.use_rules(mesh, rules),
                     encode_prompt=prompt_encoder(policy.tokenizer, c.data))
    return ctx, params, scfg, put


def run_eval(policy: Policy, examples: list[dict], task: str, *, n: int, ks: list[int], temperature: float,
             top_p: float, max_new_tokens: int | None, seed: int, mesh_shape=None, batch_prompts: int = 0):
    """(table {source: row, "all": row}, per-sample records) — see the module docstring."""
    from rlx.rewards import final_answer
    from rlx.train.data import decode_completions
    from rlx.train.rollout import generate_round
    from rlx.types import FinishReason
    ctx, params, scfg, put = sampling_context(policy, task, temperature=temperature, top_p=top_p,
                                              max_new_tokens=max_new_tokens, seed=seed, mesh_shape=mesh_shape)
    step = batch_prompts or len(examples)
    groups, records = [], []
    for s in range(0, len(examples), step):
        chunk = examples[s:s + step]
        pad = chunk + [chunk[-1]] * (step - len(chunk))           # one shape for every chunk
        ids = np.arange(len(pad))
        with ctx.sharding():
            g, _ = generate_round(ctx, params, pad, ids * 0, ids, n, scfg, put)
        B = len(pad) * n
        toks = g["completion_tokens"].reshape(B, -1)
        texts = decode_completions(policy.tokenizer, toks, g["lengths"].reshape(B))
        for p, ex in enumerate(chunk):
            rows = range(p * n, (p + 1) * n)
            answers = [_normalize(final_answer(task, texts[i], ex)) for i in rows]
            grp = {"source": ex.get("source", task), "answers": answers,
                   "success": [bool(x) for x in g["success"][p]], "lengths": [int(x) for x in g["lengths"][p]],
                   "truncated": [bool(x == FinishReason.LENGTH) for x in g["finish_reason"][p]]}
            groups.append(grp)
            for j, i in enumerate(rows):
                records.append({"prompt": ex["prompt"], "completion": texts[i], "answer": answers[j],
                                "gold": str(ex.get("answer", "")), "reward": float(g["rewards"][p, j]),
                                "success": grp["success"][j], "length": grp["lengths"][j],
                                "truncated": grp["truncated"][j], "source": grp["source"], "sample": j})
    table = {"all": summarize(groups, ks)}
    for src in sorted({g["source"] for g in groups}):
        if len({g["source"] for g in groups}) > 1:
            table[src] = summarize([g for g in groups if g["source"] == src], ks)
    return table, records


def format_table(table: dict, ks: list[int]) -> str:
    cols = ["prompts", "n"] + [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks] + [
        "accuracy", "length_mean", "length_median", "truncation_rate"]
    width = max(len(s) for s in table) + 2
    lines = ["source".ljust(width) + "  ".join(f"{col:>13}" for col in cols)]
    for src, row in table.items():
        cells = [f"{row[col]:>13d}" if isinstance(row[col], int) else f"{row[col]:>13.4f}" for col in cols]
        lines.append(src.ljust(width) + "  ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m rlx.eval", description="pass@k / maj@k of a policy (see the "
                                 "module docstring of rlx/eval.py)")
    ap.add_argument("--checkpoint", required=True, help="an rlx run directory or an HF model directory")
    ap.add_argument("--data", default="", help="'' (the run's held-out prompts), a built-in task, or a JSONL")
    ap.add_argument("--n", type=int, default=16, help="samples per prompt")
    ap.add_argument("--k", default="1", help="comma-separated k of pass@k / maj@k (each <= n)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top_p", type=float, default=1.0)
    ap.add_argument("--max_new_tokens", type=int, default=0, help="0 = the run's sampler.max_new_tokens")
    ap.add_argument("--num_prompts", type=int, default=0, help="0 = the run's data.eval_prompts / all records")
    ap.add_argument("--prompt_field", default="problem")
    ap.add_argument("--answer_field", default="answer")
    ap.add_argument("--batch_prompts", type=int, default=0, help="prompts per sampler call (0 = all at once)")
    ap.add_argument("--mesh", default="", help="(data, fsdp, tensor), default the run's mesh.shape")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="output directory (default <checkpoint>/eval)")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        ks = sorted({int(x) for x in a.k.split(",") if x.strip()})
        if not ks or min(ks) < 1 or max(ks) > a.n:
            raise ValueError(f"--k: every k must be in [1, --n={a.n}], got {a.k!r}")
        if not a.temperature >= 0 or not 0 < a.top_p <= 1:
            raise ValueError(f"--temperature must be >= 0 and --top_p in (0, 1], got {a.temperature}, {a.top_p}")
        mesh = tuple(int(x) for x in a.mesh.strip("()").split(",")) if a.mesh else None
        policy = load_policy(a.checkpoint)
        if "(HF)" in policy.where and not a.data:
            raise ValueError("--data: required with an HF model directory (it has no held-out prompts)")
        examples, task = eval_examples(policy.config, a.data, a.num_prompts, a.prompt_field, a.answer_field)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    table, records = run_eval(policy, examples, task, n=a.n, ks=ks, temperature=a.temperature, top_p=a.top_p,
                              max_new_tokens=a.max_new_tokens or None, seed=a.seed, mesh_shape=mesh,
                              batch_prompts=a.batch_prompts)
    out = a.out or os.path.join(os.path.abspath(os.path.expanduser(a.checkpoint)), "eval")
    os.makedirs(out, exist_ok=True)
    summary = {"checkpoint": policy.where, "data": a.data or "held-out prompts of the run", "task": task,
               "n": a.n, "k": ks, "temperature": a.temperature, "top_p": a.top_p,
               "max_new_tokens": int(policy.config.sampler.max_new_tokens), "table": table}
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "samples.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    print(f"{policy.where}: {len(examples)} prompts x {a.n} samples, T={a.temperature:g}, task {task}")
    print(format_table(table, ks))
    print(f"wrote {out}/eval.json and {out}/samples.jsonl")
    return summary


__all__ = ["maj_at_k", "main", "pass_at_k", "run_eval", "summarize"]

if __name__ == "__main__":
    main()
