"""`python -m rlx.generate`: sample completions from a checkpoint, for inspection.

    python -m rlx.generate --checkpoint=runs/quickstart --prompt="12+7=" --prompt="3*4=" [--n=2]
    python -m rlx.generate --checkpoint=/path/to/hf_model --prompts=prompts.txt --temperature=0

--checkpoint is an rlx run directory (its newest checkpoint, tokenizer and sampler
settings; with `data.chat_template` its prompts are rendered by the chat template) or
an HF model directory. Prompts come from --prompt (repeatable) and/or --prompts (a text
file, one prompt per line; a JSONL file: each record's --prompt_field). Prints each
prompt and its n completions (rlx's sampler at --temperature / --top_p, at most
--max_new_tokens tokens); --json prints one JSON object per completion instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def read_prompts(args) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts:
        if not os.path.exists(args.prompts):
            raise FileNotFoundError(f"--prompts: no such file {args.prompts!r}")
        if args.prompts.endswith(".jsonl"):
            from rlx.data.jsonl import records
            for _, where, rec in records(args.prompts):
                if not isinstance(rec.get(args.prompt_field), str):
                    raise ValueError(f"{where}: no string field {args.prompt_field!r} (--prompt_field)")
                prompts.append(rec[args.prompt_field])
        else:
            with open(args.prompts, encoding="utf-8") as f:
                prompts += [line.rstrip("\n") for line in f if line.strip()]
    if not prompts:
        raise ValueError("no prompts: give --prompt=TEXT (repeatable) or --prompts=FILE")
    return prompts


def generate(policy, prompts: list[str], *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
             max_new_tokens: int | None = None, seed: int = 0) -> list[list[dict]]:
    """For each prompt, its n completions: {"completion", "length", "truncated"}."""
    from rlx import sampling
    from rlx.eval import sampling_context
    from rlx.train import data as tdata
    from rlx.train.rollout import to_host
    from rlx.types import FinishReason
    ctx, params, scfg, put = sampling_context(policy, "", temperature=temperature, top_p=top_p,
                                              max_new_tokens=max_new_tokens, seed=seed)
    toks, mask, _ = tdata.encode_prompts(policy.tokenizer, prompts, scfg.max_prompt_len, scfg.pad_id,
                                         encode=ctx.encode_prompt)
    with ctx.sharding():
        out, _ = sampling.generate(params, policy.model_cfg, scfg, ctx.sampler_state, put(toks), put(mask), n,
                                   put=put)
    tokens, lengths, finish = (to_host(getattr(out, k)) for k in ("completion_tokens", "lengths", "finish_reason"))
    texts = tdata.decode_completions(policy.tokenizer, tokens, lengths)
    return [[{"completion": texts[p * n + j], "length": int(lengths[p * n + j]),
              "truncated": bool(finish[p * n + j] == FinishReason.LENGTH)} for j in range(n)]
            for p in range(len(prompts))]


def main(argv=None) -> list[list[dict]]:
    ap = argparse.ArgumentParser(prog="python -m rlx.generate", description="sample completions from a checkpoint")
    ap.add_argument("--checkpoint", required=True, help="an rlx run directory or an HF model directory")
    ap.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    ap.add_argument("--prompts", default="", help="a file of prompts: text (one per line) or JSONL")
    ap.add_argument("--prompt_field", default="prompt", help="the prompt field of a JSONL --prompts file")
    ap.add_argument("--n", type=int, default=1, help="completions per prompt")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top_p", type=float, default=1.0)
    ap.add_argument("--max_new_tokens", type=int, default=0, help="0 = the run's sampler.max_new_tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="one JSON object per completion")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    from rlx.eval import load_policy
    try:
        if a.n < 1 or not a.temperature >= 0 or not 0 < a.top_p <= 1:
            raise ValueError(f"need --n >= 1, --temperature >= 0, --top_p in (0, 1]; got {a.n}, {a.temperature}, "
                             f"{a.top_p}")
        prompts = read_prompts(a)
        policy = load_policy(a.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    out = generate(policy, prompts, n=a.n, temperature=a.temperature, top_p=a.top_p,
                   max_new_tokens=a.max_new_tokens or None, seed=a.seed)
    for p, samples in zip(prompts, out):
        for j, s in enumerate(samples):
            if a.json:
                print(json.dumps({"prompt": p, "sample": j, **s}))
            else:
                cut = " [cut by the token budget]" if s["truncated"] else ""
                print(f"--- {p!r} #{j} ({s['length']} tokens{cut})\n{s['completion']}")
    return out


__all__ = ["generate", "main", "read_prompts"]

if __name__ == "__main__":
    main()
