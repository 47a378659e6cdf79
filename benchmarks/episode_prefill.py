"""Observation tokens into the carried KV cache: chunked prefill vs one decode step each.

Runs 64 gridworld episodes (8 maps x 8, 8 turns, 25-token observations, the shapes of
configs/gigpo_gridworld.py) with a random 128x4 model through `run_episodes`, once with
`prefill_chunk=32` (`rlx.models.cache.extend_step`) and once with `prefill_chunk=0`.
Peer: the token-by-token path (the sampler's decode step fed the given tokens). Prints
the median wall time of each (after a warm-up call) and `ratio: X` = token-by-token
time / chunked time (> 1: chunked is faster). Moves come from the model's first token,
so both runs play the same episodes.

    .venv/bin/python benchmarks/episode_prefill.py [--repeats 3] [--chunk 32]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from rlx import models, sampling  # noqa: E402
from rlx.envs import EnvPool  # noqa: E402
from rlx.envs import episodes as E  # noqa: E402
from rlx.envs.gridworld import GridWorld  # noqa: E402

V = 128
MOVES = ("up", "down", "left", "right")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=32)
    a = ap.parse_args()
    cfg = models.tiny(V, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=256,
                      family="qwen2")
    params = models.init_params(cfg, jax.random.key(0))
    scfg = sampling.SamplerConfig(max_prompt_len=8, max_new_tokens=4, temperature=1.0, stop_ids=(1,), pad_id=0)
    budget = E.EpisodeBudget(max_turns=8, max_turn_tokens=6, max_prompt_tokens=28, max_total_tokens=248)
    tasks = [{"size": 4, "hole_prob": 0.0, "hint": False, "neighbors": True, "map_seed": i // 8} for i in range(64)]

    def run(chunk):
        pool = EnvPool(GridWorld, workers=2, step_timeout_s=30)
        try:
            t = time.perf_counter()
            E.run_episodes(params, cfg, scfg, sampling.init_state(jax.random.key(1)), pool, tasks, list(range(64)),
                           encode_prompt=lambda s: [3 + ord(c) % (V - 3) for c in s],
                           encode_observation=lambda s: [3 + ord(c) % (V - 3) for c in s],
                           decode=lambda ids: MOVES[ids[0] % 4] if ids else "", budget=budget,
                           prefill_chunk=chunk)
            return time.perf_counter() - t
        finally:
            pool.close()

    times = {}
    for chunk in (a.chunk, 0):
        run(chunk)                                            # compile
        times[chunk] = float(np.median([run(chunk) for _ in range(a.repeats)]))
        print(f"prefill_chunk={chunk}: {times[chunk]:.2f} s")
    print(f"ratio: {times[0] / times[a.chunk]:.2f}")


if __name__ == "__main__":
    main()
