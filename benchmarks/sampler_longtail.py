"""Long-tailed sampling: rlx's paged, continuously batched sampler against HF `generate`.

The model of `benchmarks/sampler.py` (random weights exported to `transformers`; Qwen2
layout, 4 layers, width 256, vocabulary 1024 by default). Workload: P = 8 prompts of
128 tokens, G = 8 samples each (64 rows), temperature 1, a budget of 512 new tokens;
row r stops after exactly n_r tokens, n_r drawn once (seeded) from an exponential of
mean 128 (25% of the budget), rounded up and clipped to [1, 512] — a long tail: a few
rows run to the budget while most stop early. The lengths are forced identically on
both sides: HF through a logits processor that allows only the EOS token at row r's
step n_r (and never before), rlx through per-row length budgets (`budget_B`, finish
reason LENGTH) — same tokens generated per row, same work requested.

rlx runs continuous batching with `--slots` rows decoding at once (a finished row's slot
takes the next request) over `--kv ragged` KV (default: the XLA layout for CPU / GPU) or
`--kv paged` (the TPU layout; on CPU its XLA gather path copies every row's pages each
step); `--kv dense` runs rlx's dense sampler (every row until the slowest ends, as HF).
HF computes all 64 rows until its longest row ends.

    .venv/bin/python benchmarks/sampler_longtail.py [--slots 8] [--repeats 3] [--kv ragged|paged|dense]

Prints tokens/s of each (real generated tokens / wall time, median of `--repeats` after
a warm-up) and ends with `ratio: X` = rlx tokens/s / HF tokens/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def stop_lengths(n: int, budget: int, mean: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.ceil(rng.exponential(mean, n)), 1, budget).astype(np.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=512)
    ap.add_argument("--mean", type=float, default=128.0, help="mean stop length (tokens)")
    ap.add_argument("--slots", type=int, default=8, help="rows decoding at once (rlx paged)")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--kv", default="ragged", choices=("ragged", "paged", "dense"),
                    help="rlx's KV layout (SamplerConfig.kv_cache)")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    args = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import torch
    import transformers

    from rlx import models, sampling

    W = args.width
    cfg = models.tiny(args.vocab, hidden_size=W, num_layers=args.layers, num_heads=max(2, W // 64),
                      num_kv_heads=max(2, W // 128), intermediate_size=3 * W, family="qwen2", tie_embeddings=False)
    params = models.init_params(cfg, jax.random.key(0))
    P, G, Lp, T = args.prompts, args.group, args.prompt, args.new
    B = P * G
    EOS = 1
    rng = np.random.default_rng(0)
    prompts = rng.integers(3, cfg.vocab_size, size=(P, Lp)).astype(np.int32)
    mask = np.ones((P, Lp), bool)
    lengths = stop_lengths(B, T, args.mean)
    total = int(lengths.sum())

    kv = dict(kv_cache="dense") if args.kv == "dense" else dict(kv_cache=args.kv, slots=args.slots,
                                                                  page_size=args.page_size)
    scfg = sampling.SamplerConfig(max_prompt_len=Lp, max_new_tokens=T, temperature=1.0, stop_ids=(), pad_id=0,
                                  **kv)
    state = [sampling.init_state(jax.random.key(1))]
    pj, mj, bj = jax.device_put(prompts), jax.device_put(mask), jax.device_put(lengths)

    def run_rlx():
        out, state[0] = sampling.generate(params, cfg, scfg, state[0], pj, mj, G, budget_B=bj)
        got = np.asarray(out.lengths)
        assert np.array_equal(got, lengths), (got, lengths)

    with tempfile.TemporaryDirectory() as d:
        models.to_hf(params, cfg, d)
        hf = transformers.AutoModelForCausalLM.from_pretrained(d).eval().float()
    ids = torch.tensor(prompts, dtype=torch.long)
    att = torch.ones_like(ids)
    target = torch.tensor(lengths, dtype=torch.long)          # HF rows: prompt p repeated G times, p-major

    class ForceLengths(transformers.LogitsProcessor):
        """Row r may emit only EOS at its step n_r and never EOS before."""
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - Lp                      # tokens generated so far
            at_end = (target == step + 1)[:, None]
            only_eos = torch.full_like(scores, -float("inf"))
            only_eos[:, EOS] = 0.0
            no_eos = scores.clone()
            no_eos[:, EOS] = -float("inf")
            return torch.where(at_end, only_eos, no_eos)

    def run_hf():
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=1.0, top_k=0,
                              top_p=1.0, max_new_tokens=T, num_return_sequences=G, eos_token_id=EOS,
                              pad_token_id=0, logits_processor=transformers.LogitsProcessorList([ForceLengths()]))
        gen = out[:, Lp:]
        n = torch.where(gen == EOS, torch.arange(gen.shape[1])[None, :] + 1, gen.shape[1] + 1).min(1).values
        assert torch.equal(torch.minimum(n, torch.tensor(T)), target), (n, target)

    t_hf = median_time(run_hf, args.repeats)
    t_rlx = median_time(run_rlx, args.repeats)
    print(f"model: qwen2 layout, {cfg.num_layers} layers, width {W}, {cfg.num_heads}x{cfg.head_dim} heads "
          f"({cfg.num_kv_heads} kv), mlp {cfg.intermediate_size}, vocab {cfg.vocab_size}, "
          f"{cfg.num_params / 1e6:.2f}M params, float32")
    print(f"workload: {P} prompts x {G} samples, prompt {Lp}, budget {T}, stop lengths mean {lengths.mean():.1f} "
          f"max {lengths.max()} ({total} tokens); rlx {args.kv}"
          f"{'' if args.kv == 'dense' else f', {args.slots} slots'}; "
          f"jax {jax.__version__} / torch {torch.__version__} threads {torch.get_num_threads()}, CPU")
    print(f"rlx: {t_rlx:.3f} s  {total / t_rlx:,.0f} tokens/s")
    print(f"hf generate: {t_hf:.3f} s  {total / t_hf:,.0f} tokens/s")
    print(f"ratio: {t_hf / t_rlx:.2f}")


if __name__ == "__main__":
    main()
