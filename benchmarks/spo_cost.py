#!/usr/bin/env python3
"""Cost of a Monte-Carlo value estimate: SPO-tree (6-6-6) against SPO-chain (K = 9).

    .venv/bin/python benchmarks/spo_cost.py [--prompts 4] [--tokens 96] [--segment 24]

Same tiny random model, same prompts, same sampler (temperature 0.6, top-p 0.9), CPU.
  chain: sample one response per prompt, find its cutpoints (p < 0.9, every 5th), and
         estimate V at each with 9 continuations (`sampling.continue_from`);
         cost = sampled continuation tokens (and wall time) / number of V estimates.
  tree:  one 6-6-6 tree per prompt (`sampling.sample_tree`, segments of --segment
         tokens); every internal node's V is the mean of its children's, so the tree
         yields one V estimate per internal node; cost = all tree tokens (and wall
         time) / internal nodes.
Timings exclude compilation (each path runs once to warm up). The paper's claim is that
the tree is much cheaper per estimate, because siblings share their parent's prefix
and each sample serves every ancestor. Ends with `ratio: X` = tree cost / chain cost
(tokens per estimate; wall-time ratio printed too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--segment", type=int, default=24)
    ap.add_argument("--mc", type=int, default=9)
    a = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from rlx import advantages, models, sampling
    from rlx.data import arithmetic
    from rlx.train.data import encode_prompts

    tok = models.build_tokenizer()
    cfg = models.tiny(len(tok), hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=512)
    params = models.init_params(cfg, jax.random.key(0))
    params = jax.tree.map(lambda x: x * 4 if x.ndim >= 2 else x, params)   # sharper, more decisive tokens
    scfg = sampling.SamplerConfig(max_prompt_len=16, max_new_tokens=a.tokens, temperature=0.6, top_p=0.9,
                                  stop_ids=(tok.eos_token_id,), pad_id=tok.pad_token_id)
    exs = arithmetic.generate(a.prompts, seed=0, level=3, template="compact")
    pt, pm, _ = encode_prompts(tok, [e["prompt"] for e in exs], 16, tok.pad_token_id)
    pt, pm = jnp.asarray(pt), jnp.asarray(pm)

    def chain(state):
        out, state = sampling.generate(params, cfg, scfg, state, pt, pm, 1)
        lp = models.completion_logprobs(params, cfg, out.prompt_tokens, out.prompt_mask, out.completion_tokens,
                                        out.completion_mask, temperature=0.6)
        cuts, _ = advantages.spo_cutpoints(lp, out.completion_mask, num_cuts=64, interval=5)
        pos, valid = np.asarray(cuts.positions), np.asarray(cuts.valid)
        rows = [(b, int(pos[b, j]) + 1) for b in range(pos.shape[0]) for j in range(pos.shape[1]) if valid[b, j]]
        bi = np.array([r[0] for r in rows])
        plen = np.array([r[1] for r in rows], np.int32)
        t0 = time.perf_counter()
        cont, state = sampling.continue_from(params, cfg, scfg, state, out.prompt_tokens[bi], out.prompt_mask[bi],
                                             out.completion_tokens[bi], plen, a.mc)
        jax.block_until_ready(cont.completion_tokens)
        return time.perf_counter() - t0, int(cont.lengths.sum()), len(rows), state

    def tree(state):
        t0 = time.perf_counter()
        tr, state = sampling.sample_tree(params, cfg, scfg, state, pt, pm, branching=(6, 6, 6),
                                         segment_len=a.segment)
        jax.block_until_ready(tr.tokens)
        dt = time.perf_counter() - t0
        tokens = int((tr.mask & tr.exists[:, :, None]).sum())
        fin = np.asarray(tr.finished) | np.asarray(tr.truncated)
        internal = int((np.asarray(tr.exists) & ~fin).sum())          # nodes with children: one V each
        return dt, tokens, internal, state

    st = sampling.init_state(jax.random.key(1))
    chain(st)
    tree(st)                                                          # warm-up (compilation)
    st = sampling.init_state(jax.random.key(2))
    ct, ctok, cn, _ = chain(st)
    tt, ttok, tn, _ = tree(st)
    c_tok, t_tok = ctok / max(cn, 1), ttok / max(tn, 1)
    c_s, t_s = ct / max(cn, 1), tt / max(tn, 1)
    print(f"model {cfg.num_params / 1e6:.2f}M params; {a.prompts} prompts; T={a.tokens}")
    print(f"chain (K={a.mc}): {cn} V estimates, {ctok} tokens, {ct:.2f} s -> {c_tok:.1f} tokens, "
          f"{1e3 * c_s:.1f} ms per estimate")
    print(f"tree (6-6-6, M={a.segment}): {tn} V estimates, {ttok} tokens, {tt:.2f} s -> {t_tok:.1f} tokens, "
          f"{1e3 * t_s:.1f} ms per estimate")
    print(f"wall-time ratio (tree / chain per estimate): {t_s / c_s:.3f}")
    print(f"ratio: {t_tok / c_tok:.3f}")


if __name__ == "__main__":
    main()
