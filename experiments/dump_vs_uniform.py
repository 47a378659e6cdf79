#!/usr/bin/env python3
"""DUMP vs uniform sampling over sources of different difficulty.

Paper ("DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM
Post-training", Wang et al. 2025): a UCB over sources, scored by the mean |advantage| of
their recent samples, shifts sampling toward the sources the policy can still learn from
and converges faster (Knights & Knaves, 3-14 people: higher reward earlier than uniform).

Arms, on three arithmetic levels as three sources (`data.levels=(1,2,3)`: 1-digit sums,
2-digit sums/differences, 2-operation 2-digit expressions), one warm start for both,
100 RL steps: `uniform` and `dump` (c = 1, tau = 0.1, window 300: configs/kk_dump.py's).
Measures: the area under the greedy held-out accuracy curve (mean of the evaluations,
every 10 steps), final accuracy, and DUMP's per-source sampling probability over time.
Verdict: DUMP's area minus uniform's, paired by seed (> 0: the claim of faster learning).

    python experiments/dump_vs_uniform.py [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import numpy as np
import study

NAME = "dump_vs_uniform"
CLAIM = ("DUMP's UCB curriculum over sources (scored by mean |advantage|) learns faster than uniform sampling "
         "over the same sources (Wang et al. 2025, Fig. 2: higher reward earlier on K&K 3-14 people)")
LEVELS = (1, 2, 3)
COMMON = (f"data.levels={LEVELS}", "sampler.max_prompt_len=12", "sampler.max_new_tokens=5", "train.steps=100",
          "train.eval_every=10", "sft.steps=120", "data.eval_prompts=192")
ARMS = [study.Arm("uniform", "quickstart", COMMON),
        study.Arm("dump", "quickstart", (*COMMON, "data.curriculum=dump", "data.dump_c=1.0", "data.dump_tau=0.1",
                                         "data.dump_window=300"))]


def main(argv=None) -> dict:
    keys = tuple(f"dump/prob/{j}" for j in range(len(LEVELS))) + tuple(f"dump/mean_abs_adv/{j}" for j in range(3))
    s = study.Study(NAME, CLAIM, ARMS, keys=keys, args=study.parse_args(NAME, __doc__, argv))
    s.run_all()
    names = [x.name for x in ARMS]
    auc = {n: np.array([float(np.mean(v)) for _, (_, v) in sorted(s.series(n, "eval/accuracy").items())])
           for n in names}
    acc = {n: s.final(n) for n in names}
    final_p = {f"level {lv}": np.array([v[-1] if len(v) else np.nan for _, (_, v) in
                                       sorted(s.series("dump", f"dump/prob/{j}").items())])
               for j, lv in enumerate(LEVELS)}
    verdict = study.verdict(auc["dump"] - auc["uniform"], "area under the accuracy curve, DUMP - uniform")
    f = study.fmt
    summary = (f"Mean greedy held-out accuracy over training (every 10 of 100 steps): uniform "
               f"{f(study.interval(auc['uniform']))}, DUMP {f(study.interval(auc['dump']))}; final: uniform "
               f"{f(study.interval(acc['uniform']))}, DUMP {f(study.interval(acc['dump']))}. DUMP's sampling "
               "probabilities at the end: " + ", ".join(f"{k} {f(study.interval(v))}" for k, v in final_p.items())
               + f". Verdict: {verdict}.")
    panels = [("greedy accuracy (held out, 3 levels)", {n: s.series(n, "eval/accuracy") for n in names}),
              ("DUMP: sampling probability per source",
               {f"level {lv}": s.series("dump", f"dump/prob/{j}") for j, lv in enumerate(LEVELS)}),
              ("DUMP: mean |advantage| per source",
               {f"level {lv}": s.series("dump", f"dump/mean_abs_adv/{j}") for j, lv in enumerate(LEVELS)})]
    return s.save({"accuracy_auc": auc, "final_accuracy": acc, "dump_final_prob": final_p}, verdict, summary, panels)


if __name__ == "__main__":
    main()
