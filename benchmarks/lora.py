#!/usr/bin/env python3
"""LoRA vs full fine-tuning on the CPU benchmark model: trainable parameters, optimizer
state, update-step time, and the LoRA sampler's two modes.

    .venv/bin/python benchmarks/lora.py [--layers 4] [--width 256] [--rank 16] [--repeats 5]

Peer: full fine-tuning of the same model (rlx's own update, Adam, float32) — LoRA's claim
is what it saves against that. Model: the tiny Qwen2 of `benchmarks/rl_step.py` (4 layers,
width 256, MLP 1024, character vocabulary), rank-16 adapters on q,k,v,o,gate,up,down.
Update = one jitted PPO-clip step (forward + backward + Adam) on B sequences of
prompt + completion tokens, median of `--repeats` after compilation. Sampler = one
`sampling.generate` call (B rows, temperature 1) with `model.lora.sampler=merge` (merge
W + s·A·B once per call, then the plain fused decode) vs `adapters` (decode with the
frozen base and the low-rank delta on every token). Prints the numbers and ends with
`ratio: X` = full-FT update time / LoRA update time. A benchmark, run by hand — not a test.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def nbytes(tree) -> int:
    import jax
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--completion", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from rlx import models, sampling
    from rlx.models import lora
    from rlx.train.config import load_config
    from rlx.train.optim import make_optimizer
    from rlx.train.state import TrainState
    from rlx.train.update import UpdateSpec, make_update
    from rlx.types import Batch

    cfg = models.tiny(args.vocab, hidden_size=args.width, num_layers=args.layers, num_heads=4, num_kv_heads=2,
                      intermediate_size=4 * args.width, family="qwen2", tie_embeddings=True)
    lcfg = cfg.replace(lora_rank=args.rank, lora_alpha=2.0 * args.rank, lora_targets=lora.TARGETS)
    base = models.init_params(cfg, jax.random.key(0))
    adapted = lora.attach(base, lcfg, jax.random.key(1))
    # Trained-looking adapters (B != 0), so that the merge is not a no-op.
    tr = lora.trainable(adapted)
    adapted = lora.combine(adapted, jax.tree.map(lambda x: x + 0.01, tr))

    B, Lp, T = args.batch, args.prompt, args.completion
    ks = jax.random.split(jax.random.key(2), 3)
    batch = Batch.create(
        prompt_tokens=jax.random.randint(ks[0], (B, Lp), 0, args.vocab), prompt_mask=jnp.ones((B, Lp), bool),
        completion_tokens=jax.random.randint(ks[1], (B, T), 0, args.vocab), completion_mask=jnp.ones((B, T), bool),
        advantages=jax.random.normal(ks[2], (B, T)), old_logprobs=jnp.full((B, T), -4.0),
        rewards=jnp.zeros(B), valid=jnp.ones(B, bool))
    spec = UpdateSpec(loss="ppo_clip", agg="token-mean", group_size=8, max_len=T)
    opt = make_optimizer(load_config(os.path.join(ROOT, "configs", "quickstart.py")).optimizer, 1000)

    rows = {}
    for name, mcfg, params in (("full", cfg, base), ("lora", lcfg, adapted)):
        state = TrainState.create(params, opt, jax.random.key(0))
        step = jax.jit(make_update(mcfg, spec, opt))
        t = median_time(lambda: jax.block_until_ready(step(state, batch)), args.repeats)
        trainable = lora.trainable(params) if name == "lora" else params
        rows[name] = (sum(x.size for x in jax.tree.leaves(trainable)), nbytes(state.opt_state), t)
    total = sum(x.size for x in jax.tree.leaves(base))
    print(f"model: qwen2 {cfg.num_layers} layers, width {cfg.hidden_size}, vocab {cfg.vocab_size} "
          f"({total / 1e6:.2f}M params); LoRA rank {args.rank} on {','.join(lora.TARGETS)}; "
          f"update batch {B} x ({Lp} + {T})")
    print("| | trainable params | optimizer state | update step |")
    print("|---|---|---|---|")
    for name, (n, ob, t) in rows.items():
        print(f"| {name} | {n:,} ({100 * n / total:.2f}%) | {ob / 2**20:.2f} MiB | {1e3 * t:.1f} ms |")

    scfg = sampling.SamplerConfig(max_prompt_len=Lp, max_new_tokens=T, temperature=1.0, pad_id=0)
    times = {}
    for mode in ("merge", "adapters"):
        mc = lcfg.replace(lora_sampler=mode)
        gen = jax.jit(lambda p, s, mc=mc: sampling.generate(p, mc, scfg, s, batch.prompt_tokens,
                                                           batch.prompt_mask, 1)[0].completion_tokens)
        times[mode] = median_time(lambda gen=gen: jax.block_until_ready(gen(adapted, sampling.init_state(
            jax.random.key(3)))), args.repeats)
    gen_base = jax.jit(lambda p, s: sampling.generate(p, cfg, scfg, s, batch.prompt_tokens, batch.prompt_mask,
                                                      1)[0].completion_tokens)
    tbase = median_time(lambda: jax.block_until_ready(gen_base(base, sampling.init_state(jax.random.key(3)))),
                        args.repeats)
    print(f"sampler, {B} rows x {T} new tokens: merge {1e3 * times['merge']:.1f} ms, "
          f"adapters {1e3 * times['adapters']:.1f} ms, no LoRA {1e3 * tbase:.1f} ms "
          f"(adapters / merge = {times['adapters'] / times['merge']:.2f})")
    print(f"ratio: {rows['full'][2] / rows['lora'][2]:.2f}")


if __name__ == "__main__":
    main()
