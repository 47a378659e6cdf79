"""Shared-prefix (Prefix Grouper) training step against the repeated-prefix forward.

One training step = forward + backward of a token-weighted log-prob loss over G
completions per prompt, computed two ways on the same params and data:
  repeated  `completion_logprobs` on the prompts repeated G times ([P*G, Lp + T])
  shared    `shared_prefix_logprobs` (one packed row [Lp + G*T] per prompt)
Defaults: prompt 256 : completion 64 tokens (4 : 1), G = 8, P = 2 prompts; model: a
Qwen2-layout 4 layers, width 256, 4x64 heads (2 KV heads), MLP 768, vocab 1024, float32.
Prints the median step time of each (after compiling), XLA's FLOP count of each compiled
step (`cost_analysis`), both ratios, and ends with `ratio: X` = repeated step time /
shared step time (> 1: the shared-prefix step is faster).

    .venv/bin/python benchmarks/shared_prefix.py [--prompt 256] [--completion 64] [--group 8]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--completion", type=int, default=64)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import jax.numpy as jnp

    from rlx import models

    cfg = models.tiny(1024, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=768,
                      family="qwen2", tie_embeddings=False)
    params = models.init_params(cfg, jax.random.key(0))
    P, G, Lp, T = args.prompts, args.group, args.prompt, args.completion
    rng = np.random.default_rng(0)
    prompt = jnp.asarray(rng.integers(3, 1024, size=(P, Lp)), jnp.int32)
    pmask = jnp.asarray(np.arange(Lp)[None] >= rng.integers(0, Lp // 4, size=(P, 1)))
    comp = jnp.asarray(rng.integers(3, 1024, size=(P * G, T)), jnp.int32)
    cmask = jnp.asarray(np.arange(T)[None] < rng.integers(T // 2, T + 1, size=(P * G, 1)))
    weights = jnp.asarray(rng.normal(size=(P * G, T)), jnp.float32)

    def loss_repeated(p):
        lp = models.completion_logprobs(p, cfg, jnp.repeat(prompt, G, 0), jnp.repeat(pmask, G, 0), comp, cmask)
        return jnp.sum(lp * weights)

    def loss_shared(p):
        return jnp.sum(models.shared_prefix_logprobs(p, cfg, prompt, pmask, comp, cmask) * weights)

    steps = {name: jax.jit(jax.value_and_grad(f)) for name, f in (("repeated", loss_repeated),
                                                                  ("shared", loss_shared))}
    flops, times, values = {}, {}, {}
    for name, step in steps.items():
        compiled = step.lower(params).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops[name] = float(cost.get("flops", float("nan")))
        values[name] = step(params)
        times[name] = median_time(lambda s=step: jax.block_until_ready(s(params)), args.repeats)
    (lr, gr), (ls, gs) = values["repeated"], values["shared"]
    gdiff = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                for a, b in zip(jax.tree.leaves(gs), jax.tree.leaves(gr)))
    print(f"model: qwen2 layout, 4 layers, width 256, 4x64 heads (2 kv), mlp 768, vocab 1024, float32; "
          f"P={P} prompts x G={G}, prompt {Lp}, completion {T}; jax {jax.__version__}, {jax.devices()[0].platform}")
    print(f"loss repeated {float(lr):.6f} shared {float(ls):.6f}; max relative gradient difference {gdiff:.2e}")
    for name in steps:
        print(f"{name:9s} step {times[name] * 1e3:8.1f} ms   {flops[name] / 1e9:8.2f} GFLOP")
    print(f"flops ratio (repeated / shared): {flops['repeated'] / flops['shared']:.2f}")
    print(f"ratio: {times['repeated'] / times['shared']:.2f}")


if __name__ == "__main__":
    main()
