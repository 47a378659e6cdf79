#!/usr/bin/env python3
"""The unlikeliness reward vs GRPO: pass@G against pass@1.

Paper ("Rewarding the Unlikely: Lifting GRPO Beyond Distribution Sharpening", He et al.
2025): GRPO sharpens the distribution — it raises pass@1 but not pass@N for large N —
because it reinforces the proofs the model already finds likely; scaling the reward of
the likelier correct samples of a group down (r' = r (1 - beta rank / G), beta = 0.25)
raises pass@N (theorem proving: pass@N gains at N up to 512, their Fig. 1 and Table 2).

Arms, on the quickstart task (configs/quickstart.py, 100 RL steps), differing only in
`rl.estimator`: `grpo` and `unlikeliness`. After training, `rlx.eval` samples G = 8
completions per held-out prompt at the sampling temperature (1.0) and reports pass@1 and
pass@8 (the unbiased estimator). Verdict: pass@8 of unlikeliness minus GRPO's, paired by
seed (> 0: the claim); the pass@1 difference is reported beside it (the trade-off).

    python experiments/unlikeliness.py [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import os

import numpy as np
import study

NAME = "unlikeliness"
CLAIM = ("The unlikeliness reward lifts pass@N above GRPO's, which sharpens pass@1 only "
         "(He et al. 2025, Fig. 1 / Table 2: higher pass@N on miniF2F at equal or slightly lower pass@1)")
COMMON = ("train.steps=100", "train.eval_every=20", "log.pass_k=(1,8)")
ARMS = [study.Arm("grpo", "quickstart", COMMON),
        study.Arm("unlikeliness", "quickstart", (*COMMON, "rl.estimator=unlikeliness"))]
G = 8


def pass_rates(run_dir: str, quick: bool) -> dict:
    """pass@1 / pass@G of the run's final policy on its held-out prompts (cached in run_dir/eval_passk)."""
    import json

    from rlx.eval import main as rlx_eval
    out = os.path.join(run_dir, "eval_passk")
    path = os.path.join(out, "eval.json")
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(os.path.join(run_dir, "metrics.jsonl")):
        rlx_eval(["--checkpoint", run_dir, f"--n={G}", f"--k=1,{G}", "--temperature=1.0", "--out", out]
                 + (["--num_prompts=8"] if quick else []))
    with open(path) as f:
        row = json.load(f)["table"]["all"]
    return {"pass@1": row["pass@1"], f"pass@{G}": row[f"pass@{G}"]}


def main(argv=None) -> dict:
    a = study.parse_args(NAME, __doc__, argv)
    s = study.Study(NAME, CLAIM, ARMS, keys=("pass@1", f"pass@{G}"), args=a)
    s.run_all()
    names = [x.name for x in ARMS]
    rates = {n: [pass_rates(d, a.quick) for _, d in sorted(s.runs[n].items())] for n in names}
    p1 = {n: np.array([r["pass@1"] for r in rates[n]]) for n in names}
    pg = {n: np.array([r[f"pass@{G}"] for r in rates[n]]) for n in names}
    verdict = study.verdict(pg["unlikeliness"] - pg["grpo"], f"pass@{G}, unlikeliness - GRPO")
    d1 = study.interval(p1["unlikeliness"] - p1["grpo"])
    f = study.fmt
    summary = (f"After 100 steps, on the held-out prompts with {G} samples at T = 1: GRPO pass@1 "
               f"{f(study.interval(p1['grpo']))}, pass@{G} {f(study.interval(pg['grpo']))}; unlikeliness pass@1 "
               f"{f(study.interval(p1['unlikeliness']))}, pass@{G} {f(study.interval(pg['unlikeliness']))} "
               f"(pass@1 difference {f(d1)}). Verdict: {verdict}.")
    panels = [("training pass@1 (the step's samples)", {n: s.series(n, "pass@1") for n in names}),
              (f"training pass@{G} (the step's samples)", {n: s.series(n, f"pass@{G}") for n in names}),
              ("greedy accuracy (held out)", {n: s.series(n, "eval/accuracy") for n in names})]
    return s.save({"eval_pass@1": p1, f"eval_pass@{G}": pg}, verdict, summary, panels)


if __name__ == "__main__":
    main()
