"""`python -m rlx.plot RUN_DIR [RUN_DIR ...] [--out PNG] [--keys k1,k2]`: learning curves.

Reads each run's `metrics.jsonl` and draws one panel per metric (default: reward,
accuracy, response length, KL, entropy, clip fraction — whichever the runs logged),
one line per run, x = RL step. Writes `RUN_DIR/curves.png` (or --out).
"""

from __future__ import annotations

import argparse
import math
import os

DEFAULT_KEYS = ("reward/mean", "eval/accuracy", "accuracy", "response/length_mean", "kl",
                "entropy", "clip/frac_high", "loss")


def load_runs(run_dirs):
    from rlx.train.metrics import read_jsonl
    runs = {}
    for d in run_dirs:
        path = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{d}: no metrics.jsonl (is this an rlx run directory?)")
        runs[os.path.basename(os.path.normpath(d))] = read_jsonl(path)
    return runs


def plot_runs(runs: dict[str, list[dict]], out: str, keys=None, title: str = "") -> list[str]:
    """Draws the curves; returns the metric keys drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k for recs in runs.values() for r in recs for k in r}
    keys = [k for k in (keys or DEFAULT_KEYS) if k in present]
    if not keys:
        raise ValueError(f"none of the metrics {list(keys or DEFAULT_KEYS)} was logged; "
                         f"available: {sorted(present - {'step'})}")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, recs in runs.items():
            pts = [(r["step"], r[key]) for r in recs if r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return keys


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--out", default="")
    ap.add_argument("--keys", default="", help="comma-separated metric names")
    a = ap.parse_args(argv)
    out = a.out or os.path.join(a.run_dirs[0], "curves.png")
    keys = [k for k in a.keys.split(",") if k] or None
    drawn = plot_runs(load_runs(a.run_dirs), out, keys)
    print(f"wrote {out} ({', '.join(drawn)})")
    return out


if __name__ == "__main__":
    main()
