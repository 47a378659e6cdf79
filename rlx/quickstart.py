"""`make demo`: the default experiment — GRPO on arithmetic with a tiny model, offline, CPU.

    python -m rlx.quickstart [--config.<key>=<value> ...]

Runs configs/quickstart.py through the RL engine (`python -m rlx.train
--config=configs/quickstart.py` is the same run): a short supervised warm start on
generated demonstrations (cached in the run directory), then GRPO with a progress bar.
Prints greedy accuracy on held-out problems before and after RL and writes the learning
curves to <run_dir>/curves.png. The demo is meant to be rerun: it replaces the previous
demo run in its run directory (`--overwrite`), unless `--resume` is given.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> dict:
    from rlx import plot
    from rlx.train.__main__ import main as train_main
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = [] if ("--resume" in argv or "--overwrite" in argv) else ["--overwrite"]
    summary = train_main([f"--config={os.path.join(ROOT, 'configs', 'quickstart.py')}"] + mode + argv)
    out = os.path.join(summary["run_dir"], "curves.png")
    plot.plot_runs(plot.load_runs([summary["run_dir"]]), out,
                   keys=["reward/mean", "eval/accuracy", "entropy", "response/length_mean"],
                   title="rlx quickstart: GRPO on arithmetic")
    print(f"learning curves: {out}")
    return summary


if __name__ == "__main__":
    main()
