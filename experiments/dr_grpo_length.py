#!/usr/bin/env python3
"""Dr. GRPO vs GRPO: the length of incorrect responses over training, and accuracy.

Paper ("Understanding R1-Zero-Like Training: A Critical Perspective", Liu et al. 2025):
GRPO's per-response 1/|o| normalization penalizes a long wrong answer less per token, so
incorrect responses grow longer during training; Dr. GRPO (A = r - mean, a constant
denominator) removes that bias and keeps them short at equal accuracy (their Fig. 5).

Arms, on the quickstart task (configs/quickstart.py: a tiny model, 1-digit sums) with room
to grow (`sampler.max_new_tokens=16`; answers are 1-2 digits + EOS) and a weak warm start
(`sft.steps=30`: right about 1 time in 10, so wrong answers come in many lengths), 200 RL
steps: `grpo` — the paper's GRPO objective, each response's token sum divided by its own
length (`rl.agg=seq-mean-token-mean`, DeepSeekMath's 1/|o_i|); `dr_grpo`
(configs/dr_grpo_arith.py: A = r - mean, `seq-mean-token-sum-norm`, a constant denominator);
and `grpo_token_mean`, rlx's default GRPO config (configs/quickstart.py: the batch's
token-mean, DAPO's aggregation, which has no per-response 1/|o_i| either) — the length bias
is the aggregation's, so this arm shows whether rlx's default has it. (At the warm start
of quickstart, with a budget of 8, responses were 2-3 tokens long whatever their answer and
no arm's length moved: growth +0.07 [-0.22, 0.37] tokens, n=3 — nothing to measure.)
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
COMMON = ("sampler.max_new_tokens=16", "sft.steps=30", "train.steps=200", "train.eval_every=25")
ARMS = [study.Arm("grpo", "quickstart", (*COMMON, "rl.agg=seq-mean-token-mean")),
        study.Arm("dr_grpo", "dr_grpo_arith", COMMON),
        study.Arm("grpo_token_mean", "quickstart", COMMON)]
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
    g, d, t = (study.interval(grow[k]) for k in ("grpo", "dr_grpo", "grpo_token_mean"))
    ag, ad, at = (study.interval(acc[k]) for k in ("grpo", "dr_grpo", "grpo_token_mean"))
    summary = (f"Over {len(s.args.seeds)} seed(s), the mean length of incorrect responses changed by "
               f"{study.fmt(g)} tokens under GRPO (1/|o| per response), {study.fmt(d)} under Dr. GRPO and "
               f"{study.fmt(t)} under token-mean GRPO (last 20 steps minus the first 10, budget 16); final "
               f"greedy accuracy {study.fmt(ag)}, {study.fmt(ad)} and {study.fmt(at)}. Verdict: {verdict}.")
    panels = [("length of incorrect responses", {a.name: s.series(a.name, KEY) for a in ARMS}),
              ("length of correct responses", {a.name: s.series(a.name, "response/length_correct") for a in ARMS}),
              ("greedy accuracy (held out)", {a.name: s.series(a.name, "eval/accuracy") for a in ARMS})]
    return s.save({"incorrect_length_growth": grow, "final_accuracy": acc}, verdict, summary, panels)


if __name__ == "__main__":
    main()
