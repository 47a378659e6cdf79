#!/usr/bin/env python3
"""Nucleus (top-p) filtering without a sort vs the sorted rule, on Qwen-sized rows.

    .venv/bin/python benchmarks/top_p.py [--rows 64] [--vocab 152064] [--top-p 0.9] [--repeats 5]

Peer: the sorted rule (sort each row, cumulative mass, threshold — what HF's
TopPLogitsWarper does, and rlx did before), jitted. rlx: `rlx.sampling.filter_logits`
(a 32-step bisection on the threshold, `rlx/sampling/topk.py`). Checks both keep the same
tokens, prints median times and `ratio: X` = sorted time / rlx time. Run by hand.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=152064)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp

    from rlx.sampling import topk
    z = jax.random.normal(jax.random.key(0), (a.rows, a.vocab)) * 3
    ours = jax.jit(lambda z: topk.filter_logits(z, top_p=a.top_p))
    peer = jax.jit(lambda z: jnp.where(z < topk._top_p_threshold(jnp.sort(z, axis=-1)[..., ::-1], a.top_p),
                                       -jnp.inf, z))
    same = bool((jnp.isinf(ours(z)) == jnp.isinf(peer(z))).all())
    t_ours = median_time(lambda: ours(z).block_until_ready(), a.repeats)
    t_peer = median_time(lambda: peer(z).block_until_ready(), a.repeats)
    print(f"{a.rows} rows x {a.vocab}, top_p {a.top_p}: same tokens kept: {same}; "
          f"sorted {1e3 * t_peer:.1f} ms, bisection {1e3 * t_ours:.1f} ms")
    print(f"ratio: {t_peer / t_ours:.2f}")


if __name__ == "__main__":
    main()
