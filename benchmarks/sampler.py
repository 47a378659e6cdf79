"""Sampling throughput: rlx's KV-cache sampler against HF `generate` (torch, CPU).

Both run the same random weights (rlx `init_params`, exported with `rlx.models.to_hf`
and loaded by `transformers`): by default a Qwen2-layout model with 4 layers, width
256, 4 heads of 64 (2 KV heads), MLP 768, untied vocabulary 1024 (3.7M params);
`--width / --layers / --vocab` change it (W/64 heads, W/128 KV heads, at least 2 of
each; MLP 3x width).
Workload: batch 64
prompts of 32 tokens, 128 new tokens each, multinomial sampling at temperature 1 (no
top-k/top-p), no stop token (every row generates exactly 128 tokens, so both sides do
the same work). Each side runs once to warm up (rlx: compiles), then the median
wall time of `--repeats` runs is reported.

    .venv/bin/python benchmarks/sampler.py [--repeats 3] [--batch 64] [--new 128]

Prints tokens/s of each and ends with `ratio: X` = rlx tokens/s / HF tokens/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--group", type=int, default=1, help="samples per prompt (batch = prompts x group)")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import torch
    import transformers

    from rlx import models, sampling

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    W = args.width
    cfg = models.tiny(args.vocab, hidden_size=W, num_layers=args.layers, num_heads=max(2, W // 64),
                      num_kv_heads=max(2, W // 128), intermediate_size=3 * W, family="qwen2", tie_embeddings=False)
    params = models.init_params(cfg, jax.random.key(0))
    B, Lp, T, G = args.batch, args.prompt, args.new, args.group
    P = B // G
    rng = np.random.default_rng(0)
    prompts = rng.integers(3, cfg.vocab_size, size=(P, Lp)).astype(np.int32)
    mask = np.ones((P, Lp), bool)

    scfg = sampling.SamplerConfig(max_prompt_len=Lp, max_new_tokens=T, temperature=1.0, stop_ids=(), pad_id=0)
    state = [sampling.init_state(jax.random.key(1))]
    pj, mj = jax.device_put(prompts), jax.device_put(mask)

    def run_rlx():
        out, state[0] = sampling.generate(params, cfg, scfg, state[0], pj, mj, G)
        n = int(out.lengths.sum())
        assert n == B * T, n

    with tempfile.TemporaryDirectory() as d:
        models.to_hf(params, cfg, d)
        hf = transformers.AutoModelForCausalLM.from_pretrained(d).eval().float()
    ids = torch.tensor(prompts, dtype=torch.long)
    att = torch.ones_like(ids)

    def run_hf():
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=1.0, top_k=0,
                              top_p=1.0, max_new_tokens=T, min_new_tokens=T, num_return_sequences=G,
                              eos_token_id=None, pad_token_id=0)
        assert out.shape == (B, Lp + T), out.shape

    t_hf = median_time(run_hf, args.repeats)
    t_rlx = median_time(run_rlx, args.repeats)
    tok = B * T
    print(f"model: qwen2 layout, {cfg.num_layers} layers, width {W}, {cfg.num_heads}x{cfg.head_dim} heads "
          f"({cfg.num_kv_heads} kv), mlp {cfg.intermediate_size}, vocab {cfg.vocab_size}, "
          f"{cfg.num_params / 1e6:.2f}M params, float32")
    print(f"workload: {P} prompts x {G} samples, prompt {Lp}, {T} new tokens, temperature 1; "
          f"jax {jax.__version__} / torch {torch.__version__} threads {torch.get_num_threads()}, CPU")
    print(f"rlx: {t_rlx:.3f} s  {tok / t_rlx:,.0f} tokens/s")
    print(f"hf generate: {t_hf:.3f} s  {tok / t_hf:,.0f} tokens/s")
    print(f"ratio: {t_hf / t_rlx:.2f}")


if __name__ == "__main__":
    main()
