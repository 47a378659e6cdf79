#!/usr/bin/env python3
"""Run several configs x seeds and draw them on one figure (mean ± 95% interval over seeds).

    python experiments/compare.py --configs grpo_arith,dr_grpo_arith,bnpo_arith --seeds 0,1,2 \\
        --out runs/compare [--keys reward/mean,eval/accuracy] [--vary rl|init] [-- --config.train.steps=100]

Each run is `python -m rlx.train --config=configs/<name>.py --config.seed=<s>
--config.init_seed=<i> --config.run_dir=<out>/<name>-s<s> [extra overrides]`, in a
subprocess (one at a time, so that a CPU machine is not oversubscribed); a run whose
metrics already exist is not repeated unless --rerun. Seeds (experiments/study.py):
`--vary rl` (default) varies the RL randomness from one warm start (init_seed 0), `--vary
init` the warm start (RL seed 0). The figure goes to <out>/compare.png with the table of
final accuracies (mean, t-based 95% interval, n) beside it as compare.json / compare.md.

Ready-made comparisons:
  estimators on arithmetic (CPU, minutes):  --configs quickstart,dr_grpo_arith,bnpo_arith
  curricula over K&K levels (GPU-sized):    --configs kk_uniform,kk_dump
The reproduction studies (experiments/<study>.py) are built on the same pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # noqa: E402  (experiments/study.py)


def run_one(name: str, seed: int, out: str, extra: list[str], rerun: bool, vary: str = "rl") -> str:
    run_dir = os.path.join(out, f"{name}-s{seed}" if vary == "rl" else f"{name}-init{seed}")
    if study.finished(run_dir) and not rerun:
        print(f"[compare] {name} seed {seed}: already done ({run_dir})")
        return run_dir
    rl_seed, init = (seed, 0) if vary == "rl" else (0, seed)
    cmd = [sys.executable, "-m", "rlx.train", f"--config={os.path.join(ROOT, 'configs', name + '.py')}",
           f"--config.seed={rl_seed}", f"--config.init_seed={init}", f"--config.run_dir={run_dir}",
           "--config.log.progress=False", "--overwrite", *extra]   # an unfinished (or --rerun) run is replaced
    print("[compare] " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return run_dir


def curves(run_dirs: list[str], key: str):
    """(steps, mean, half-width of the t-based 95% interval, n) of `key` over runs, on the
    steps every run logged (NaN half-widths with one run)."""
    return study.band({i: study.series(d, key) for i, d in enumerate(run_dirs)})


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", required=True, help="comma-separated config names in configs/")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--vary", choices=("rl", "init"), default="rl")
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
    runs = {n: [run_one(n, s, a.out, a.extra, a.rerun, a.vary) for s in seeds] for n in names}
    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "compare.png")
    study.figure([(key, {n: {i: study.series(d, key) for i, d in enumerate(dirs)} for n, dirs in runs.items()})
                  for key in keys], png, n=len(seeds))
    print(f"[compare] wrote {png}")
    summary = {}
    for n, dirs in runs.items():
        finals = [study.series(d, "eval/accuracy_final")[1] for d in dirs]
        summary[n] = study.interval([v[-1] if len(v) else np.nan for v in finals])
        print(f"  {n:24s} final accuracy {study.fmt(summary[n])}")
    with open(os.path.join(a.out, "compare.json"), "w") as f:
        json.dump({"configs": names, "seeds": seeds, "vary": a.vary, "extra": a.extra, "final_accuracy": summary,
                   "runs": runs}, f, indent=1)
    with open(os.path.join(a.out, "compare.md"), "w") as f:
        f.write("| config | final accuracy | 95% CI | n |\n|---|---|---|---|\n")
        for n, ci in summary.items():
            rng = "–" if np.isnan(ci["lo"]) else f"[{ci['lo']:.3f}, {ci['hi']:.3f}]"
            f.write(f"| {n} | {ci['mean']:.3f} | {rng} | {ci['n']} |\n")
    return {"png": png, "summary": summary, "runs": runs}


if __name__ == "__main__":
    main()
