"""Throughput of the jitted GRPO and BNPO estimators on 1M samples (P=62500, G=16).

Peer: a plain vectorized numpy implementation of the same formulas (float32, the same
masking and degenerate-group handling, no NaN screening). Prints the median time of
each over several runs and `ratio: X` = numpy time / rlx time (> 1: rlx is faster).

    .venv/bin/python benchmarks/advantages.py [--repeats 10] [--platform cpu]
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def numpy_grpo(r, valid, ddof=1, eps=1e-6):
    cnt = valid.sum(1).astype(np.float32)
    mean = np.where(valid, r, 0).sum(1) / np.maximum(cnt, 1)
    dev = np.where(valid, r - mean[:, None], 0)
    std = np.sqrt((dev * dev).sum(1) / np.maximum(cnt - ddof, 1))
    keep = valid & (cnt >= 2)[:, None]
    return np.where(keep, dev / (std + eps)[:, None], 0).astype(np.float32)


def numpy_bnpo(r, valid, max_weight=1e6):
    cnt = valid.sum(1)
    p = np.where(valid, r, 0).sum(1) / np.maximum(cnt, 1)
    fit = cnt >= 2
    pf = p[fit]
    m, v = pf.mean(), pf.var(ddof=1)
    if v > 0:
        k = m * (1 - m) / v - 1
        a, b = max(1 + k * m / 3, 1.0), max(1 + k * (1 - m) / 3, 1.0)
    else:
        a = b = 1.0
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    pc = np.clip(p, 0, 1)
    with np.errstate(divide="ignore"):
        logpdf = (a - 1) * np.log(pc) + (b - 1) * np.log1p(-pc) - log_beta
    logpdf = np.where(np.isnan(logpdf), -np.inf, logpdf)   # 0 * log 0
    w = np.exp(np.minimum(-logpdf, math.log(max_weight)))
    keep = valid & fit[:, None]
    return np.where(keep, w[:, None] * (r - p[:, None]), 0).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=62500)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--platform", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", args.platform)

    import jax

    import rlx.advantages as A

    P, G = args.prompts, args.group
    rng = np.random.default_rng(0)
    success = rng.random((P, 1))
    r = (rng.random((P, G)) < success).astype(np.float32)
    valid = rng.random((P, G)) < 0.95
    r_j, valid_j = jax.device_put(r), jax.device_put(valid)

    print(f"advantage estimators, {P * G:,} samples (P={P}, G={G}), jax {jax.__version__} on "
          f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} CPU cores, median of {args.repeats}")
    for name, rlx_fn, np_fn in [("grpo", A.grpo, numpy_grpo), ("bnpo", A.bnpo, numpy_bnpo)]:
        ours = np.asarray(rlx_fn(r_j, valid_j)[0])
        ref = np_fn(r, valid)
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)   # same numbers first
        t_rlx = median_time(lambda f=rlx_fn: jax.block_until_ready(f(r_j, valid_j)), args.repeats)
        t_np = median_time(lambda f=np_fn: f(r, valid), args.repeats)
        print(f"{name}: rlx (jit) {t_rlx * 1e3:8.2f} ms | numpy {t_np * 1e3:8.2f} ms | "
              f"{P * G / t_rlx / 1e6:7.1f} M samples/s | ratio: {t_np / t_rlx:.2f}")


if __name__ == "__main__":
    main()
