#!/usr/bin/env python3
"""Run several configs x seeds and draw them on one figure (mean +- std over seeds).

    python experiments/compare.py --configs grpo_arith,dr_grpo_arith,bnpo_arith --seeds 0,1,2 \\
        --out runs/compare [--keys reward/mean,eval/accuracy] [-- --config.train.steps=100]

Each run is `python -m rlx.train --config=configs/<name>.py --config.seed=<s>
--config.run_dir=<out>/<name>-s<s> [extra overrides]`, in a subprocess (one at a time,
so that a CPU machine is not oversubscribed); a run whose metrics already exist is not
repeated unless --rerun. The figure goes to <out>/compare.png and a summary table
(final accuracy per config: mean +- std over seeds) is printed.

Ready-made comparisons:
  estimators on arithmetic (CPU, minutes):  --configs quickstart,dr_grpo_arith,bnpo_arith
  curricula over K&K levels (GPU-sized):    --configs kk_uniform,kk_dump
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_one(name: str, seed: int, out: str, extra: list[str], rerun: bool) -> str:
    run_dir = os.path.join(out, f"{name}-s{seed}")
    done = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(done) and not rerun:
        with open(done) as f:
            if '"eval/accuracy_final"' in f.read():
                print(f"[compare] {name} seed {seed}: already done ({run_dir})")
                return run_dir
    cmd = [sys.executable, "-m", "rlx.train", f"--config={os.path.join(ROOT, 'configs', name + '.py')}",
           f"--config.seed={seed}", f"--config.run_dir={run_dir}", "--config.log.progress=False",
           "--overwrite", *extra]     # an unfinished (or --rerun) run of this cell is replaced
    print("[compare] " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return run_dir


def curves(run_dirs: list[str], key: str):
    """(steps, mean, std) of `key` over runs, on the steps every run logged."""
    from rlx.train.metrics import read_jsonl
    series = []
    for d in run_dirs:
        pts = {r["step"]: r[key] for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if r.get(key) is not None}
        series.append(pts)
    steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
    vals = np.array([[s[t] for t in steps] for s in series])
    return np.array(steps), vals.mean(0) if len(steps) else vals, vals.std(0) if len(steps) else vals


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", required=True, help="comma-separated config names in configs/")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "compare"))
    ap.add_argument("--keys", default="reward/mean,eval/accuracy")
    ap.add_argument("--rerun", action="store_true")
    ap.add_argument("extra", nargs="*", help="overrides for every run, after --")
    a = ap.parse_args(argv)
    names = [n for n in a.configs.split(",") if n]
    seeds = [int(s) for s in a.seeds.split(",")]
    keys = [k for k in a.keys.split(",") if k]
    for n in names:
        if not os.path.exists(os.path.join(ROOT, "configs", n + ".py")):
            raise SystemExit(f"--configs: no config file configs/{n}.py")
    runs = {n: [run_one(n, s, a.out, a.extra, a.rerun) for s in seeds] for n in names}

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    summary = {}
    for ax, key in zip(axes[0], keys):
        for n, dirs in runs.items():
            x, m, s = curves(dirs, key)
            if len(x):
                ax.plot(x, m, label=n)
                ax.fill_between(x, m - s, m + s, alpha=0.2)
        ax.set_title(f"{key} (mean ± std over {len(seeds)} seed{'s' * (len(seeds) > 1)})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "compare.png")
    fig.savefig(png, dpi=110)
    print(f"[compare] wrote {png}")
    for n, dirs in runs.items():
        _, m, s = curves(dirs, "eval/accuracy_final")
        summary[n] = (float(m[-1]), float(s[-1])) if len(m) else (float("nan"), float("nan"))
        print(f"  {n:24s} final accuracy {summary[n][0]:.3f} ± {summary[n][1]:.3f}")
    return {"png": png, "summary": summary, "runs": runs}


if __name__ == "__main__":
    main()
