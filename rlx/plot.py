"""`python -m rlx.plot RUN_DIR [RUN_DIR ...] [--out PNG] [--keys k1,k2]`: learning curves.

Reads each run's `metrics.jsonl` and draws one panel per metric (default: reward,
accuracy, response length, KL, entropy, clip fraction — whichever the runs logged),
one line per run, x = RL step. The evaluation panel carries the final evaluation
(`eval/accuracy_final`) as its last point; `accuracy` is left out where it equals
`reward/mean` in every run (binary tasks: the same curve twice). One run: writes
`RUN_DIR/curves.png`; several: `compare.png` in their common parent directory (never a
run's own curves.png); --out overrides both. For mean ± interval over seeds see
experiments/compare.py.
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
        name = os.path.basename(os.path.normpath(d))
        runs[name if name not in runs else os.path.normpath(d)] = read_jsonl(path)
    return runs


def points(recs: list[dict], key: str) -> list[tuple]:
    """(step, value) of `key`; the evaluation curve ends with the final evaluation
    (`eval/accuracy_final`, the same measurement at the last step)."""
    pts = {r["step"]: r[key] for r in recs if r.get(key) is not None}
    if key == "eval/accuracy":
        pts.update({r["step"]: r["eval/accuracy_final"] for r in recs if r.get("eval/accuracy_final") is not None})
    return sorted(pts.items())


def _same_curve(runs, a: str, b: str) -> bool:
    return all(points(recs, a) == points(recs, b) for recs in runs.values())


def default_out(run_dirs) -> str:
    if len(run_dirs) == 1:
        return os.path.join(run_dirs[0], "curves.png")
    parent = os.path.commonpath([os.path.abspath(os.path.dirname(os.path.normpath(d))) for d in run_dirs])
    return os.path.join(parent, "compare.png")


def plot_runs(runs: dict[str, list[dict]], out: str, keys=None, title: str = "") -> list[str]:
    """Draws the curves; returns the metric keys drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k for recs in runs.values() for r in recs for k in r}
    if "eval/accuracy_final" in present:
        present.add("eval/accuracy")
    keys = [k for k in (keys or DEFAULT_KEYS) if k in present]
    if "accuracy" in keys and "reward/mean" in keys and _same_curve(runs, "accuracy", "reward/mean"):
        keys.remove("accuracy")
    if not keys:
        raise ValueError(f"none of the metrics {list(keys or DEFAULT_KEYS)} was logged; "
                         f"available: {sorted(present - {'step'})}")
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, recs in runs.items():
            pts = points(recs, key)
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
    out = a.out or default_out(a.run_dirs)
    keys = [k for k in a.keys.split(",") if k] or None
    drawn = plot_runs(load_runs(a.run_dirs), out, keys)
    print(f"wrote {out} ({', '.join(drawn)})")
    return out


if __name__ == "__main__":
    main()
