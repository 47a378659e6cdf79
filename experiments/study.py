"""What every reproduction study (experiments/<name>.py) shares: arms x seeds, intervals, figures, verdicts.

A study compares *arms* — a config of configs/ plus overrides — over seeds, at CPU scale:

    python experiments/<name>.py [--seeds 0,1,2] [--vary rl|init] [--quick] [--rerun]

Each (arm, seed) is one `python -m rlx.train` run, in this process, one after the other
(a 2-core machine is not oversubscribed), in `runs/studies/<name>/<arm>-s<seed>`; a run
whose metrics already end with `eval/accuracy_final` is reused unless --rerun.

Seeds. `--vary rl` (the default) sets `config.seed = s` and holds `config.init_seed = 0`:
every seed starts from the same warm-started policy (params init, SFT demonstrations,
generated training problems) and only the RL randomness — sampling, data order — varies,
so a difference between arms is not confounded with a different start. `--vary init`
does the reverse (the warm start varies, the RL seed is held at 0).

Intervals are t-based 95% confidence intervals of the mean over seeds (ddof 1, n shown):
mean ± t_{0.975, n-1} · s / sqrt(n) (scipy.stats.t). With one seed there is no interval.

Verdicts compare arms paired by seed (the same warm start and RL seed): the 95% interval
of the mean difference, oriented so that > 0 is the paper's claim, lying above 0 is
"reproduced", below 0 "not reproduced at this scale", straddling 0 "inconclusive".

Outputs, in `results/<name>/` (the committed ones; `--quick` writes beside its runs):
`results.json` (the arms, seeds, every run's recorded metrics per step, the measures,
the verdict and the summary), `results.md` (the table), `<name>.png` (mean ± 95% interval
per arm). `--quick` runs one short seed per arm (seconds; what the test suite calls).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# A very short run of any quickstart-sized config: what --quick adds to every arm.
QUICK = ("train.steps=2", "train.eval_every=1", "sft.steps=2", "data.eval_prompts=8", "rl.prompts_per_step=4",
         "checkpoint.interval=0")
# Recorded for every run besides the study's own keys.
STANDARD_KEYS = ("reward/mean", "accuracy", "eval/accuracy", "eval/accuracy_final", "response/length_mean",
                 "entropy", "tokens/sampled")


@dataclass(frozen=True)
class Arm:
    """One arm: `configs/<config>.py` with `overrides` ("key=value", as after --config.)."""
    name: str
    config: str
    overrides: tuple = ()
    quick: tuple = ()          # extra overrides for --quick (after QUICK)


@dataclass
class Study:
    name: str
    claim: str                 # the paper's claim, with its number
    arms: list
    keys: tuple = ()           # metrics recorded per step (besides STANDARD_KEYS)
    args: argparse.Namespace = None
    runs: dict = field(default_factory=dict)       # arm name -> {seed: run_dir}

    # ------------------------------------------------------------------ running
    def run_all(self) -> dict:
        a = self.args
        for arm in self.arms:
            self.runs[arm.name] = {s: self.run(arm, s) for s in a.seeds}
        return self.runs

    def run(self, arm: Arm, seed: int, extra: tuple = ()) -> str:
        a = self.args
        tag = f"s{seed}" if a.vary == "rl" else f"init{seed}"
        run_dir = os.path.join(a.runs, f"{arm.name}-{tag}")
        if finished(run_dir) and not a.rerun:
            print(f"[{self.name}] {arm.name} seed {seed}: done already ({run_dir})", flush=True)
            return run_dir
        rl_seed, init = (seed, 0) if a.vary == "rl" else (0, seed)
        over = [*arm.overrides, *((*QUICK, *arm.quick) if a.quick else ()), *a.set, *extra]
        argv = [f"--config={os.path.join(ROOT, 'configs', arm.config + '.py')}", f"--config.seed={rl_seed}",
                f"--config.init_seed={init}", f"--config.run_dir={run_dir}", "--config.log.progress=False",
                "--overwrite", *(f"--config.{o}" for o in over)]
        print(f"[{self.name}] {arm.name} seed {seed}: python -m rlx.train {' '.join(argv)}", flush=True)
        from rlx.train.__main__ import main
        main(argv)
        return run_dir

    # ------------------------------------------------------------------ reading
    def series(self, arm: str, key: str, **kw) -> dict[int, tuple]:
        """seed -> (steps, values) of `key` in that arm's runs."""
        return {s: series(d, key, **kw) for s, d in self.runs[arm].items()}

    def final(self, arm: str, key: str = "eval/accuracy_final") -> np.ndarray:
        """The last logged value of `key` per seed (in seed order)."""
        out = []
        for s in sorted(self.runs[arm]):
            _, v = series(self.runs[arm][s], key)
            out.append(v[-1] if len(v) else math.nan)
        return np.array(out, float)

    # ------------------------------------------------------------------ writing
    def save(self, measures: dict, verdict: str, summary: str, panels: list, xlabel: str = "RL step") -> dict:
        """Writes results.json, results.md and <name>.png; prints the summary.
        `measures`: {measure: {arm: per-seed values}}; `panels`: [(title, {arm: {seed: (x, y)}})]."""
        a = self.args
        os.makedirs(a.out, exist_ok=True)
        keys = tuple(dict.fromkeys((*STANDARD_KEYS, *self.keys)))
        record = {
            "study": self.name, "claim": self.claim, "seeds": list(a.seeds), "vary": a.vary, "quick": a.quick,
            "command": f"python experiments/{self.name}.py --seeds {','.join(map(str, a.seeds))} --vary {a.vary}"
                       + (" --quick" if a.quick else ""),
            "arms": {arm.name: {"config": arm.config, "overrides": list(arm.overrides)} for arm in self.arms},
            "measures": {m: {arm: {"values": _floats(v), **interval(v)} for arm, v in per.items()}
                         for m, per in measures.items()},
            "verdict": verdict, "summary": summary,
            "runs": {arm: {str(s): {k: _pairs(*series(d, k)) for k in keys if len(series(d, k)[0])}
                           for s, d in per.items()} for arm, per in self.runs.items() if per},
        }
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(record, f, indent=1)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(markdown(self.name, self.claim, record["measures"], verdict, record["command"]))
        png = os.path.join(a.out, f"{self.name}.png")
        figure(panels, png, xlabel, n=len(a.seeds))
        print(f"\n[{self.name}] {summary}\n[{self.name}] wrote {a.out}/results.json, results.md, {self.name}.png",
              flush=True)
        return record


# ---------------------------------------------------------------------- helpers
def parse_args(name: str, doc: str, argv=None, extra=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--vary", choices=("rl", "init"), default="rl",
                    help="rl: seeds vary sampling and data order from one warm start; init: the reverse")
    ap.add_argument("--quick", action="store_true", help="one short seed per arm (a smoke test)")
    ap.add_argument("--rerun", action="store_true", help="rerun runs that exist")
    ap.add_argument("--out", default="", help="results directory (default results/<name>; --quick: beside the runs)")
    ap.add_argument("--runs", default="", help="run directories (default runs/studies/<name>[-quick])")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run (repeatable), e.g. --set mesh.shape='(1, 1, 1)'")
    if extra:
        extra(ap)
    a = ap.parse_args(argv)
    try:
        a.seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds: comma-separated integers, got {a.seeds!r}")
    if not a.seeds or min(a.seeds) < 0:
        ap.error(f"--seeds: one or more integers >= 0, got {a.seeds}")
    if a.quick:
        a.seeds = a.seeds[:1]
    a.runs = a.runs or os.path.join(ROOT, "runs", "studies", name + ("-quick" if a.quick else ""))
    a.out = a.out or (os.path.join(a.runs, "results") if a.quick else os.path.join(ROOT, "results", name))
    return a


def finished(run_dir: str) -> bool:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return '"eval/accuracy_final"' in f.read()


def series(run_dir: str, key: str, cumulative: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` in a run's metrics.jsonl (the last value of a step if it is
    logged twice); `cumulative` sums it over steps (e.g. tokens/sampled -> tokens so far)."""
    from rlx.train.metrics import read_jsonl
    pts = {}
    for r in read_jsonl(os.path.join(run_dir, "metrics.jsonl")):
        if isinstance(r.get(key), (int, float)):
            pts[int(r["step"])] = float(r[key])
    steps = np.array(sorted(pts), int)
    vals = np.array([pts[s] for s in steps], float)
    return steps, (np.cumsum(vals) if cumulative else vals)


def interval(values) -> dict:
    """Mean and t-based 95% confidence interval over seeds: {mean, lo, hi, half, n}
    (half = t_{0.975, n-1} * s / sqrt(n), s with ddof 1; no interval for n < 2: NaN)."""
    v = np.asarray([x for x in np.asarray(values, float).ravel() if not math.isnan(x)])
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "half": math.nan, "n": 0}
    m = float(v.mean())
    if n < 2:
        return {"mean": m, "lo": math.nan, "hi": math.nan, "half": math.nan, "n": 1}
    from scipy import stats
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return {"mean": m, "lo": m - half, "hi": m + half, "half": half, "n": n}


def verdict(diffs, what: str) -> str:
    """The verdict on paired differences oriented so that > 0 is the paper's claim."""
    ci = interval(diffs)
    if ci["n"] < 2:
        return f"inconclusive (one seed): {what} differs by {ci['mean']:+.3g}"
    span = f"{what}: {ci['mean']:+.3g}, 95% CI [{ci['lo']:+.3g}, {ci['hi']:+.3g}], n={ci['n']}"
    if ci["lo"] > 0:
        return f"reproduced ({span})"
    if ci["hi"] < 0:
        return f"not reproduced at this scale ({span})"
    return f"inconclusive ({span})"


def band(per_seed: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """{seed: (x, y)} -> (x, mean, half-width of the 95% interval, n) on the x every seed has."""
    xs = [dict(zip(np.asarray(x).tolist(), np.asarray(y, float).tolist())) for x, y in per_seed.values()]
    common = sorted(set.intersection(*(set(d) for d in xs))) if xs else []
    vals = np.array([[d[t] for t in common] for d in xs]) if common else np.zeros((len(xs), 0))
    n = vals.shape[0]
    mean = vals.mean(0) if common else np.zeros(0)
    half = np.array([interval(vals[:, j])["half"] for j in range(len(common))]) if n else np.zeros(0)
    return np.array(common), mean, half, n


def accuracy_vs_tokens(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(sampled tokens before each evaluation, greedy accuracy there): the tokens are the
    cumulative `tokens/sampled` (+ SPO-chain's Monte-Carlo `spo/mc_tokens`) of the steps
    before the evaluation (the step-0 evaluation: 0 tokens)."""
    steps, tok = series(run_dir, "tokens/sampled")
    mc_steps, mc = series(run_dir, "spo/mc_tokens")
    per_step = dict(zip(steps.tolist(), tok.tolist()))
    for s_, v in zip(mc_steps.tolist(), mc.tolist()):
        per_step[s_] = per_step.get(s_, 0.0) + v
    e_steps, acc = series(run_dir, "eval/accuracy")
    x = np.array([sum(v for s_, v in per_step.items() if s_ <= e) for e in e_steps.tolist()], float)
    return x, acc


def on_grid(x, y, grid) -> np.ndarray:
    """y(x) linearly interpolated on `grid` (for curves against sampled tokens, whose x differ per run)."""
    return np.interp(grid, np.asarray(x, float), np.asarray(y, float))


def regrid(per_seed: dict, points: int = 16) -> dict:
    """{seed: (x, y)} -> the same curves on one grid of x from 0 to the smallest last x
    (so that `band` can average curves whose x differ per seed, e.g. sampled tokens)."""
    if not per_seed:
        return {}
    top = min(float(np.asarray(x)[-1]) for x, _ in per_seed.values())
    grid = np.linspace(0.0, top, points)
    return {sd: (grid, on_grid(x, y, grid)) for sd, (x, y) in per_seed.items()}


def figure(panels: list, path: str, xlabel: str = "RL step", n: int = 1) -> None:
    """One panel per (title, {arm: {seed: (x, y)}}): each arm's mean over seeds, shaded ± 95% interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(3, max(len(panels), 1))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        title, per_arm = panel[0], panel[1]
        px = panel[2] if len(panel) > 2 else xlabel
        for arm, per_seed in per_arm.items():
            x, m, h = band(per_seed)[:3]
            if not len(x):
                continue
            line, = ax.plot(x, m, label=arm, marker="." if len(x) < 12 else None)
            if np.isfinite(h).any():
                ax.fill_between(x, m - h, m + h, color=line.get_color(), alpha=0.2)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(px)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{os.path.splitext(os.path.basename(path))[0]}: mean ± 95% CI over {n} seed{'s' * (n > 1)}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown(name: str, claim: str, measures: dict, verdict_: str, command: str) -> str:
    lines = [f"# {name}", "", f"Claim: {claim}", "", f"Command: `{command}`", "",
             "| measure | arm | mean | 95% CI | n | per seed |", "|---|---|---|---|---|---|"]
    for m, per in measures.items():
        for arm, ci in per.items():
            rng = "–" if math.isnan(ci["lo"]) else f"[{ci['lo']:.4g}, {ci['hi']:.4g}]"
            mean = "–" if math.isnan(ci["mean"]) else f"{ci['mean']:.4g}"
            vals = ", ".join("–" if x is None else f"{x:.4g}" for x in ci["values"])
            lines.append(f"| {m} | {arm} | {mean} | {rng} | {ci['n']} | {vals} |")
    lines += ["", f"Verdict: {verdict_}", ""]
    return "\n".join(lines)


def fmt(ci: dict, digits: int = 3) -> str:
    """'0.512 [0.48, 0.54] (n=3)' for a summary sentence."""
    if math.isnan(ci["lo"]):
        return f"{ci['mean']:.{digits}g} (n={ci['n']})"
    return f"{ci['mean']:.{digits}g} [{ci['lo']:.{digits}g}, {ci['hi']:.{digits}g}] (n={ci['n']})"


def _floats(v) -> list:
    return [None if math.isnan(x) else round(float(x), 6) for x in np.asarray(v, float).ravel()]


def _pairs(steps, vals) -> list:
    return [[int(s), float(f"{v:.5g}")] for s, v in zip(steps, vals)]
