#!/usr/bin/env python3
"""Dr. GRPO vs GRPO: the length of incorrect responses over training, and accuracy.

Paper ("Understanding R1-Zero-Like Training: A Critical Perspective", Liu et al. 2025):
GRPO's per-response 1/|o| normalization penalizes a long wrong answer less per token, so
incorrect responses grow longer during training; Dr. GRPO (A = r - mean, a constant
denominator) removes that bias and keeps them short at equal accuracy (their Fig. 5).

Arms, on the quickstart task (configs/quickstart.py: a tiny model warm-started on 1-digit
sums) with room to grow (`sampler.max_new_tokens=8`, answers are 1-2 digits + EOS),
200 RL steps: `grpo` (configs/quickstart.py) and `dr_grpo` (configs/dr_grpo_arith.py).
Measures: the growth of `response/length_incorrect` (mean of the last 20 steps minus the
first 10), final greedy accuracy. Verdict: GRPO's growth minus Dr. GRPO's, paired by seed,
> 0 is the paper's claim.

    python experiments/dr_grpo_length.py [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import numpy as np
import study

NAME = "dr_grpo_length"
CLAIM = ("Dr. GRPO keeps incorrect responses from growing longer during training, where GRPO's 1/|o| "
         "normalization lets them grow (Liu et al. 2025, Fig. 5: GRPO's incorrect-response length rises "
         "steadily while Dr. GRPO's stays flat, at equal reward)")
COMMON = ("sampler.max_new_tokens=8", "train.steps=200", "train.eval_every=25")
ARMS = [study.Arm("grpo", "quickstart", COMMON), study.Arm("dr_grpo", "dr_grpo_arith", COMMON)]
KEY = "response/length_incorrect"


def growth(steps, vals) -> float:
    if len(vals) < 2:
        return float("nan")
    n = len(vals)
    head, tail = vals[: max(1, min(10, n // 2))], vals[-max(1, n // 5):]
    return float(np.mean(tail) - np.mean(head))


def main(argv=None) -> dict:
    s = study.Study(NAME, CLAIM, ARMS, keys=(KEY, "response/length_correct"),
                    args=study.parse_args(NAME, __doc__, argv))
    s.run_all()
    grow = {a.name: np.array([growth(*v) for _, v in sorted(s.series(a.name, KEY).items())]) for a in ARMS}
    acc = {a.name: s.final(a.name) for a in ARMS}
    verdict = study.verdict(grow["grpo"] - grow["dr_grpo"], "growth of the incorrect length, GRPO - Dr. GRPO")
    g, d = (study.interval(grow[k]) for k in ("grpo", "dr_grpo"))
    ag, ad = (study.interval(acc[k]) for k in ("grpo", "dr_grpo"))
    summary = (f"Over {len(s.args.seeds)} seed(s), the mean length of incorrect responses changed by "
               f"{study.fmt(g)} tokens under GRPO and {study.fmt(d)} under Dr. GRPO (last 20 steps minus the "
               f"first 10, budget 8); final greedy accuracy {study.fmt(ag)} vs {study.fmt(ad)}. Verdict: {verdict}.")
    panels = [("length of incorrect responses", {a.name: s.series(a.name, KEY) for a in ARMS}),
              ("length of correct responses", {a.name: s.series(a.name, "response/length_correct") for a in ARMS}),
              ("greedy accuracy (held out)", {a.name: s.series(a.name, "eval/accuracy") for a in ARMS})]
    return s.save({"incorrect_length_growth": grow, "final_accuracy": acc}, verdict, summary, panels)


if __name__ == "__main__":
    main()
